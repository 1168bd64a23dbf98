"""Minimal aiohttp broadcast server: the baseline chatapp is measured against.

Same URLs and frame shapes as shared/PROTOCOL.md and nothing more: no Redis,
no real accounts (the register/login forms are stubs that set a cookie), no
presence, history always empty. Each message is serialised once and written
straight to every socket of the room; a socket whose unsent bytes pass a
bound is closed with 1013 instead of stalling the room (a per-socket queue
task would cost a task switch per frame per socket).

    python -m bench.baseline_server --host 127.0.0.1 --port 8081
"""

import argparse
import asyncio
import json
import re
import secrets
import time

from aiohttp import WSCloseCode, WSMsgType, web

ROOM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
SLOW_BYTES = 1 << 20  # unsent bytes past which a socket counts as too slow
MAX_TEXT = 4000
HISTORY = json.dumps({"type": "history", "messages": [], "truncated": False}).encode()
FORM = """<!doctype html><form method="post">
<input type="hidden" name="csrf_token" value="{token}">
<input name="username"><input name="password" type="password">
</form>"""


class Room:
    __slots__ = ("members", "next_id")

    def __init__(self) -> None:
        self.members: dict[web.WebSocketResponse, asyncio.Transport] = {}
        self.next_id = 0


ROOMS = web.AppKey("rooms", dict)
CLOSERS = web.AppKey("closers", set)


async def form_page(request: web.Request) -> web.Response:
    return web.Response(text=FORM.format(token=secrets.token_hex(8)), content_type="text/html")


async def form_post(request: web.Request) -> web.Response:
    form = await request.post()
    resp = web.HTTPFound("/chat/")
    resp.set_cookie("bench_user", str(form.get("username") or "anon"), httponly=True)
    return resp


async def chat_page(request: web.Request) -> web.Response:
    return web.Response(text="chat")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "redis": "absent"})


def error_frame(code: str) -> bytes:
    return json.dumps({"type": "error", "code": code, "detail": code}).encode()


async def broadcast(app: web.Application, room: Room, data: bytes) -> None:
    for peer, transport in list(room.members.items()):
        if transport.get_write_buffer_size() > SLOW_BYTES:
            del room.members[peer]
            task = asyncio.create_task(peer.close(code=WSCloseCode.TRY_AGAIN_LATER))
            app[CLOSERS].add(task)
            task.add_done_callback(app[CLOSERS].discard)
            continue
        try:
            # Never suspends: the transport's high-water mark sits above SLOW_BYTES.
            await peer.send_frame(data, WSMsgType.TEXT)
        except ConnectionResetError:
            room.members.pop(peer, None)


async def chat_socket(request: web.Request) -> web.WebSocketResponse:
    name = request.match_info["room"]
    if not ROOM_NAME.fullmatch(name):
        raise web.HTTPNotFound()
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=65536, compress=False)
    await ws.prepare(request)
    transport = request.transport
    transport.set_write_buffer_limits(high=2 * SLOW_BYTES)
    await ws.send_frame(HISTORY, WSMsgType.TEXT)
    room = request.app[ROOMS].setdefault(name, Room())
    room.members[ws] = transport
    username = request.cookies.get("bench_user", "anon")
    try:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            try:
                frame = json.loads(msg.data)
                text = frame.get("text", frame.get("message"))
            except (ValueError, AttributeError):
                await ws.send_frame(error_frame("bad_frame"), WSMsgType.TEXT)
                continue
            if not isinstance(text, str) or not text or len(text) > MAX_TEXT:
                await ws.send_frame(error_frame("bad_message"), WSMsgType.TEXT)
                continue
            room.next_id += 1
            message = {
                "type": "message",
                "id": room.next_id,
                "room": name,
                "username": username,
                "text": text,
                "ts": time.time(),
                "client_id": frame.get("client_id"),
            }
            await broadcast(request.app, room, json.dumps(message).encode())
    finally:
        room.members.pop(ws, None)
    return ws


async def close_sockets(app: web.Application) -> None:
    for room in app[ROOMS].values():
        for peer in list(room.members):
            await peer.close(code=WSCloseCode.GOING_AWAY)


def create_app() -> web.Application:
    app = web.Application()
    app[ROOMS] = {}
    app[CLOSERS] = set()
    app.router.add_get("/healthz", healthz)
    for path in ("/register/", "/login/"):
        app.router.add_get(path, form_page)
        app.router.add_post(path, form_post)
    app.router.add_get("/chat/", chat_page)
    app.router.add_get("/ws/chat/{room}/", chat_socket)
    app.on_shutdown.append(close_sockets)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    # No access log: a line per request would be measured, not the broadcast.
    web.run_app(create_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
