"""Private rooms' members, and each person's conversations (the sidebar's API).

Every handler applies the conversation access rule first: a private room
that is not the person's answers 404, as if it did not exist. Managing
members is for the owner and superusers (403 for anyone else).
"""

from __future__ import annotations

from aiohttp import web

from chatapp.accounts.users import User
from chatapp.appkeys import accounts_key, chat_key, store_key, user_key
from chatapp.chat import control, frames
from chatapp.chat.control import REMOVED, CloseMember, ToPerson
from chatapp.chat.conversations import Conversation
from chatapp.i18n import _
from chatapp.names import ROOM_RE, USERNAME_RE
from chatapp.web.chat_pages import conversation_page, readable_room

routes = web.RouteTableDef()


async def _private_room(request: web.Request) -> Conversation:
    name = request.match_info["room"]
    if not ROOM_RE.fullmatch(name):
        raise web.HTTPNotFound(text=_("There is no room here."))
    conversation = await readable_room(request, name)
    if conversation.kind != "private":
        raise web.HTTPNotFound(text=_("Only private rooms have members to manage."))
    return conversation


def _require_manager(request: web.Request, conversation: Conversation) -> User:
    me = request[user_key]
    if not (me.is_superuser or me.username.lower() == conversation.owner):
        raise web.HTTPForbidden(text=_("Only the room's owner or a superuser manages its members."))
    return me


async def _form_error(request: web.Request, conversation: Conversation, message: str):
    return await conversation_page(
        request, conversation, conversation.name, status=400, members_error=message
    )


async def _tell(request: web.Request, event) -> None:
    await control.publish(request.app[store_key].raw, event)


def _changed(username: str, room: str) -> ToPerson:
    """Tell a person's open pages their list of conversations changed."""
    frame = frames.conversations_frame(room)
    return ToPerson(username.lower(), room, frame, watch=True)


@routes.post("/chat/{room}/members/")
async def add_member(request: web.Request) -> web.Response:
    conversation = await _private_room(request)
    _require_manager(request, conversation)
    form = await request.post()
    name = form.get("username", "")
    name = name.strip() if isinstance(name, str) else ""
    user = await request.app[accounts_key].get(name) if USERNAME_RE.fullmatch(name) else None
    if user is None:
        return await _form_error(
            request, conversation, _("There is no user named {name}.").format(name=repr(name))
        )
    if user.disabled:
        return await _form_error(
            request, conversation, _("{name}'s account is disabled.").format(name=user.username)
        )
    chat = request.app[chat_key]
    if not await chat.conversations.add_member(conversation.name, user.username):
        return await _form_error(
            request, conversation, _("{name} is a member already.").format(name=user.username)
        )
    await _tell(request, _changed(user.username, conversation.name))
    raise web.HTTPFound(f"/chat/{conversation.name}/")


@routes.post("/chat/{room}/members/{name}/remove")
async def remove_member(request: web.Request) -> web.Response:
    conversation = await _private_room(request)
    _require_manager(request, conversation)
    name = request.match_info["name"].lower()
    if name == conversation.owner:
        return await _form_error(
            request, conversation, _("The owner cannot be removed: delete the room instead.")
        )
    chat = request.app[chat_key]
    if not await chat.conversations.remove_member(conversation.name, name):
        raise web.HTTPNotFound(text=_("{name} is not a member of this room.").format(name=name))
    # Their sockets on the room close everywhere, and their sidebars stop following it.
    await _tell(request, CloseMember(conversation.name, name, REMOVED))
    raise web.HTTPFound(f"/chat/{conversation.name}/")


@routes.post("/chat/{room}/leave")
async def leave_room(request: web.Request) -> web.Response:
    conversation = await _private_room(request)
    me = request[user_key].username
    if me.lower() == conversation.owner:
        return await _form_error(
            request, conversation, _("You own this room: the owner cannot leave it.")
        )
    await request.app[chat_key].conversations.remove_member(conversation.name, me)
    await _tell(request, CloseMember(conversation.name, me.lower(), "left the room"))
    raise web.HTTPFound("/chat/")


@routes.get("/api/chat/{room}/members")
async def members_json(request: web.Request) -> web.Response:
    name = request.match_info["room"]
    if not ROOM_RE.fullmatch(name):
        raise web.HTTPNotFound(text=_("There is no room here."))
    conversation = await readable_room(request, name)
    chat = request.app[chat_key]
    if conversation.kind != "private":
        return web.json_response({"owner": None, "members": await chat.presence.users(name)})
    lower = await chat.conversations.members(name)
    shown = await chat.conversations.display_names(lower)
    return web.json_response(
        {
            "owner": shown.get(conversation.owner or "", conversation.owner),
            "members": sorted(shown.values(), key=str.lower),
        }
    )


@routes.get("/api/conversations")
async def conversations_json(request: web.Request) -> web.Response:
    summaries = await request.app[chat_key].conversations.summaries(request[user_key].username)
    return web.json_response({"conversations": [s.as_json() for s in summaries]})
