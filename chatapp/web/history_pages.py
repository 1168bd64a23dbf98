"""History and search (PROTOCOL.md, "History and search"): the JSON APIs.

- GET /api/chat/{room}/history?before=ID&limit=N and /api/dm/{username}/history:
  a page of held messages, oldest first, and whether older ones are held.
- GET /api/search?q=TEXT[&room=NAME][&limit=N]: matching messages, newest first,
  from the conversations the person can read.

Access is the pages' rule: a private room of others answers 404, as a room
that does not exist would. Bad input answers 400 with `{"error": "..."}`;
nothing in a query string can make a 500.
"""

from __future__ import annotations

from aiohttp import web

from chatapp.appkeys import chat_key, user_key
from chatapp.chat.conversations import DM_RE, Conversation, dm_name, dm_people
from chatapp.chat.search import DEFAULT_RESULTS, MAX_RESULTS, BadQuery, query_words
from chatapp.names import ROOM_RE
from chatapp.web.chat_pages import dm_peer_of
from chatapp.web.params import whole_number

routes = web.RouteTableDef()

DEFAULT_PAGE = 50
MAX_PAGE = 100
NO_ROOM = "There is no room here."
NO_CONVERSATION = "There is no conversation by that name."


def json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class BadParam(Exception):
    """A query parameter breaks its rule; becomes a 400 JSON answer."""


def _limit(request: web.Request, default: int, most: int) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return default
    limit = whole_number(raw)
    if limit is None or not 1 <= limit <= most:
        raise BadParam(f"limit must be a whole number from 1 to {most}.")
    return limit


def _before(request: web.Request) -> int | None:
    raw = request.query.get("before")
    if raw is None:
        return None
    before = whole_number(raw)
    if before is None:
        raise BadParam("before must be a message id (a whole number).")
    return before


async def _history(request: web.Request, conversation: Conversation) -> web.Response:
    try:
        before, limit = _before(request), _limit(request, DEFAULT_PAGE, MAX_PAGE)
    except BadParam as exc:
        return json_error(400, str(exc))
    page = await request.app[chat_key].broker.page(conversation.name, before, limit)
    # The stored messages are JSON already: joined, not parsed and written again.
    body = (
        b'{"messages":['
        + b",".join(page.messages)
        + b'],"more":'
        + (b"true" if page.more_before else b"false")
        + b"}"
    )
    return web.Response(body=body, content_type="application/json")


@routes.get("/api/chat/{room}/history")
async def room_history(request: web.Request) -> web.Response:
    name = request.match_info["room"]
    me = request[user_key].username
    conversation = None
    if ROOM_RE.fullmatch(name):
        conversation = await request.app[chat_key].conversations.find_readable(name, me)
    if conversation is None:  # a private room of others: none to them
        return json_error(404, NO_ROOM)
    return await _history(request, conversation)


@routes.get("/api/dm/{username}/history")
async def dm_history(request: web.Request) -> web.Response:
    try:
        peer = await dm_peer_of(request)
    except web.HTTPException as exc:  # 404 unknown, 403 disabled: as the page says
        return json_error(exc.status, exc.text or exc.reason)
    me = request[user_key].username
    return await _history(request, Conversation(dm_name(me, peer.username), "dm"))


async def _one_conversation(request: web.Request, name: str) -> Conversation | None:
    """The conversation `room=` names, if it exists and the person may read it."""
    me = request[user_key].username
    chat = request.app[chat_key]
    conversation = None
    if DM_RE.fullmatch(name):
        if me.lower() in dm_people(name):
            conversation = Conversation(name, "dm")
    elif ROOM_RE.fullmatch(name):
        conversation = await chat.conversations.find_readable(name, me)
    if conversation is None:
        return None
    # A room that was never created (or expired) answers as a private one of others.
    if not await chat.search.exists(conversation.name):
        return None
    return conversation


@routes.get("/api/search")
async def search(request: web.Request) -> web.Response:
    try:
        words = query_words(request.query.get("q", ""))
        limit = _limit(request, DEFAULT_RESULTS, MAX_RESULTS)
    except (BadQuery, BadParam) as exc:
        return json_error(400, str(exc))
    me = request[user_key].username
    finder = request.app[chat_key].search
    room = request.query.get("room")
    if room is not None:
        conversation = await _one_conversation(request, room)
        if conversation is None:
            return json_error(404, NO_CONVERSATION)
        conversations = [conversation]
    else:
        conversations = await finder.readable(me)
    found = await finder.search(me, words, conversations, limit)
    return web.json_response({"results": [f.as_json() for f in found]})
