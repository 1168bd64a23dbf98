"""The chat pages: the room list with its create-or-join form, and a room."""

from __future__ import annotations

import time

import aiohttp_jinja2
from aiohttp import web

from .keys import rooms_key
from .rooms import ROOM_RULE, room_problem

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
    raise web.HTTPFound(f"/chat/{name}/")
