"""The chat pages: the room list with its create-or-join form, a room, a direct conversation."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable

import aiohttp_jinja2
from aiohttp import web

from chatapp.appkeys import accounts_key, chat_key, config_key, rooms_key, user_key
from chatapp.chat.conversations import Conversation, NameTaken, dm_name
from chatapp.names import ROOM_RE, ROOM_RULE, USERNAME_RE, room_problem
from chatapp.web.params import whole_number

routes = web.RouteTableDef()
AROUND = 25  # messages shown before and after the one a page opens at (`?at=ID`)


def _ago(ts: float | None) -> str:
    if not ts:
        return ""
    seconds = max(0, time.time() - ts)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"active {n} {unit}{'' if n == 1 else 's'} ago"
    return "active just now"


async def sidebar(request: web.Request, current: Conversation | None = None, title: str = ""):
    """The sidebar's entries (the data of GET /api/conversations), alphabetical per section.

    The conversation on screen is always listed (a public room is only in the
    person's list once its socket joined it) and shows no unread: the page shows it.
    """
    me = request[user_key].username
    entries = [s.as_json() for s in await request.app[chat_key].conversations.summaries(me)]
    listed = False
    if current is not None:
        for entry in entries:
            if entry["conversation"] == current.name:
                entry["unread"] = entry["mentions"] = 0
                listed = True
                break
        else:
            entries.append(
                {
                    "kind": current.kind,
                    "name": title,
                    "conversation": current.name,
                    "url": current.url_for(me, title),
                    "unread": 0,
                    "mentions": 0,
                    "last_id": 0,
                    "last_activity": None,
                }
            )
    entries.sort(key=lambda e: e["name"].lower())
    return {
        "rooms": [e for e in entries if e["kind"] != "dm"],
        "dms": [e for e in entries if e["kind"] == "dm"],
        "current": current.name if current else "",
        "listed": listed,  # the conversation on screen was in the person's list already
    }


async def _rooms_page(request: web.Request, status: int = 200, **context) -> web.Response:
    rooms = await request.app[rooms_key].list_rooms()
    context["sidebar"] = await sidebar(request)
    context.setdefault("errors", {})
    context["rooms"] = [
        {"name": r.name, "count": r.count, "last_activity_text": _ago(r.last_activity)}
        for r in rooms
    ]
    context["room_rule"] = ROOM_RULE
    return aiohttp_jinja2.render_template("rooms.html", request, context, status=status)


@routes.get("/chat/")
async def room_list(request: web.Request) -> web.Response:
    return await _rooms_page(request)


@routes.post("/chat/")
async def enter_room(request: web.Request) -> web.Response:
    form = await request.post()
    name = form.get("room", "")
    name = name.strip() if isinstance(name, str) else ""
    problem = room_problem(name)
    if problem:
        return await _rooms_page(request, status=400, errors={"room": [problem]}, room_name=name)
    directory = request.app[rooms_key]
    me = request[user_key].username
    private = form.get("private") in ("1", "on", "true")
    known = await directory.canonical(name)

    def refuse(status: int, problem: str) -> Awaitable[web.Response]:
        context = {"errors": {"room": [problem]}, "room_name": name, "private": private}
        return _rooms_page(request, status=status, **context)

    quota = request.app[config_key].chat.rooms_per_hour
    over_quota = (
        f"You have reached the limit of {quota} new rooms per hour: "
        "join an existing room, or try again later."
    )
    if known is None and not await directory.can_create(me):
        return await refuse(429, over_quota)
    conversations = request.app[chat_key].conversations
    if private:
        # Names are unique across kinds; the answer names the room as typed, so
        # it does not tell how a private room of others is spelled.
        taken = f"A room named {name} exists already: choose another name."
        if known is not None or await directory.claim(name) != name:
            return await refuse(400, taken)
        if not await directory.take_creation(me):
            return await refuse(429, over_quota)
        try:
            await conversations.create_private(name, me)
        except NameTaken:
            await directory.give_back_creation(me)
            return await refuse(400, taken)
        raise web.HTTPFound(f"/chat/{name}/")
    # To the room as first spelled, if this person may read it; a private room
    # of others gets the name as typed (its page answers 404, as for any stranger).
    readable = await conversations.find_readable(name, me) if known else None
    raise web.HTTPFound(f"/chat/{readable.name if readable else name}/")


@routes.get("/chat/{room}/")
async def room_page(request: web.Request) -> web.Response:
    name = request.match_info["room"]
    if not ROOM_RE.fullmatch(name):
        raise web.HTTPNotFound(text=f"There is no room here: room names are {ROOM_RULE}")
    me = request[user_key].username
    conversation = await request.app[chat_key].conversations.find_readable(name, me)
    if conversation is None:  # a private room of others: none to them, in any casing
        raise web.HTTPNotFound(text="There is no room here.")
    if conversation.name != name:  # names are unique regardless of case
        query = f"?{request.query_string}" if request.query_string else ""
        raise web.HTTPFound(f"/chat/{conversation.name}/{query}")
    return await conversation_page(request, conversation, title=name)


@routes.get("/dm/{username}/")
async def dm_page(request: web.Request) -> web.Response:
    peer = await dm_peer_of(request)
    me = request[user_key].username
    conversation = Conversation(dm_name(me, peer.username), "dm")
    return await conversation_page(request, conversation, title=peer.username)


async def readable_room(request: web.Request, name: str) -> Conversation:
    """The room if the person may read it; 404 for a private room of others (none to them)."""
    conversation = await request.app[chat_key].conversations.readable(
        name, request[user_key].username
    )
    if conversation is None:
        raise web.HTTPNotFound(text="There is no room here.")
    return conversation


async def dm_peer_of(request: web.Request):
    """The other person of `/dm/{username}/`: 404 unknown, 403 disabled."""
    name = request.match_info["username"]
    peer = await request.app[accounts_key].get(name) if USERNAME_RE.fullmatch(name) else None
    if peer is None:
        raise web.HTTPNotFound(text="There is no user by that name.")
    if peer.disabled:
        raise web.HTTPForbidden(text="This account is disabled: it cannot receive messages.")
    return peer


async def conversation_page(
    request: web.Request, conversation: Conversation, title: str, status: int = 200, **extra
) -> web.Response:
    chat = request.app[chat_key]
    name = conversation.name
    count = request.app[config_key].chat.page_history
    at = None
    if "at" in request.query:
        at = whole_number(request.query["at"])
        if at is None:
            raise web.HTTPBadRequest(text="at must be a message id (a whole number).")
    if at is None:
        page = await chat.broker.page(name, None, count)
    else:
        # The messages around `at` (the newest ones when it is past them); when it is
        # older than everything held, the oldest held.
        page = await chat.broker.page(name, at + AROUND + 1, 2 * AROUND + 1)
        if not page.messages and page.first_id <= page.last_id:
            page = await chat.broker.page(name, page.first_id + 2 * AROUND + 1, 2 * AROUND + 1)
    messages = [json.loads(m) for m in page.messages]
    rev = page.rev
    users = await chat.presence.users(name)
    me = request[user_key]
    side = await sidebar(request, conversation, title)
    # Where the "new messages" divider goes: the first message by someone else
    # after the person's read marker (none on a first visit to a public room).
    read_marker = await chat.conversations.read_marker(me.username, name)
    divider_before = 0
    if read_marker or side["listed"] or conversation.kind != "room":
        divider_before = next(
            (
                m["id"]
                for m in messages
                if m["id"] > read_marker and m["username"].lower() != me.username.lower()
            ),
            0,
        )
    context = {
        "room": name,
        "title": title,
        "kind": conversation.kind,
        "socket_path": (f"/ws/dm/{title}/" if conversation.kind == "dm" else f"/ws/chat/{name}/"),
        "messages": messages,
        "users": users,
        "me": me.username,
        # The newest id the page holds: the socket resumes after it (with ?at=, the
        # newer ones come in its history frame and, past it, from the history API).
        "last_id": messages[-1]["id"] if messages else 0,
        "rev": rev,
        "at": at,
        "has_more_before": page.more_before,  # older held messages: the history API
        "has_more_after": page.more_after,  # newer ones (with ?at=): the socket's frame
        # Delete others' messages: a superuser anywhere, an owner in their private room.
        "can_moderate": me.is_superuser
        or (conversation.kind == "private" and me.username.lower() == conversation.owner),
        "max_length": request.app[config_key].chat.max_message_length,
        "errors": {},
        "read_marker": read_marker,
        "divider_before": divider_before,
        "sidebar": side,
        **extra,
    }
    if conversation.kind == "private":
        members = await chat.conversations.members(name)
        context["owner"] = conversation.owner
        context["members"] = members
        context["can_manage"] = me.is_superuser or me.username.lower() == conversation.owner
    return aiohttp_jinja2.render_template("room.html", request, context, status=status)


@routes.get("/api/rooms")
async def rooms_json(request: web.Request) -> web.Response:
    """The room list as JSON, for the page to keep counts fresh without a reload."""
    rooms = await request.app[rooms_key].list_rooms()
    return web.json_response(
        {
            "rooms": [
                {"name": r.name, "count": r.count, "last_activity": r.last_activity} for r in rooms
            ]
        }
    )
