"""The chat pages: the room list with its create-or-join form, and a room."""

from __future__ import annotations

import json
import time

import aiohttp_jinja2
from aiohttp import web

from chatapp.appkeys import chat_key, config_key, rooms_key, user_key
from chatapp.names import ROOM_RE, ROOM_RULE, room_problem

routes = web.RouteTableDef()


def _ago(ts: float | None) -> str:
    if not ts:
        return ""
    seconds = max(0, time.time() - ts)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"active {n} {unit}{'' if n == 1 else 's'} ago"
    return "active just now"


async def _rooms_page(request: web.Request, status: int = 200, **context) -> web.Response:
    rooms = await request.app[rooms_key].list_rooms()
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
    known = await directory.canonical(name)
    if known is None and not await directory.can_create(request[user_key].username):
        quota = request.app[config_key].chat.rooms_per_hour
        problem = (
            f"You have reached the limit of {quota} new rooms per hour: "
            "join an existing room, or try again later."
        )
        return await _rooms_page(request, status=429, errors={"room": [problem]}, room_name=name)
    raise web.HTTPFound(f"/chat/{known or name}/")


@routes.get("/chat/{room}/")
async def room_page(request: web.Request) -> web.Response:
    name = request.match_info["room"]
    if not ROOM_RE.fullmatch(name):
        raise web.HTTPNotFound(text=f"There is no room here: room names are {ROOM_RULE}")
    known = await request.app[rooms_key].canonical(name)
    if known is not None and known != name:  # names are unique regardless of case
        raise web.HTTPFound(
            f"/chat/{known}/" + (f"?{request.query_string}" if request.query_string else "")
        )
    chat = request.app[chat_key]
    count = request.app[config_key].chat.page_history
    messages = [json.loads(m) for m in await chat.broker.recent(name, count)]
    users = await chat.presence.users(name)
    me = request[user_key].username
    context = {
        "room": name,
        "messages": messages,
        "users": users,
        "me": me,
        "last_id": messages[-1]["id"] if messages else 0,
        "max_length": request.app[config_key].chat.max_message_length,
    }
    return aiohttp_jinja2.render_template("room.html", request, context)


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
