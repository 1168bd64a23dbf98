"""A chat client for tests: log in through the forms, then speak the socket protocol."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from .support import CSRF_RE

PASSWORD = "Sturdy-Pass-42"


async def login(http: aiohttp.ClientSession, base: str, username: str, register: bool = True):
    """Register (or, if taken, log in) `username` on the server at `base`."""
    path = "/register/" if register else "/login/"
    page = await (await http.get(base + path)).text()
    token = CSRF_RE.search(page).group(1)
    data = {"username": username, "password": PASSWORD, "password2": PASSWORD, "csrf_token": token}
    response = await http.post(base + path, data=data, allow_redirects=False)
    if response.status == 400 and register:
        return await login(http, base, username, register=False)
    assert response.status == 302, f"{path} for {username}: {response.status}"


class Socket:
    """A chat socket with helpers to read frames of a given type."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []

    async def send(self, text: str, client_id: str | None = None) -> None:
        frame = {"type": "message", "text": text}
        if client_id is not None:
            frame["client_id"] = client_id
        await self.ws.send_str(json.dumps(frame))

    async def frame(self, timeout: float = 5.0) -> dict[str, Any]:
        msg = await asyncio.wait_for(self.ws.receive(), timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise AssertionError(f"expected a text frame, got {msg.type} {msg.data!r}")
        frame = json.loads(msg.data)
        self.seen.append(frame)
        return frame

    async def next(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next frame of type `kind`, skipping others."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            frame = await self.frame(max(0.01, deadline - loop.time()))
            if frame["type"] == kind:
                return frame

    async def messages(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        out = []
        while len(out) < count:
            out.append(await self.next("message", max(0.01, deadline - loop.time())))
        return out

    async def closed(self, timeout: float = 5.0) -> int:
        """Wait for the server to close the socket; return the close code."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            msg = await asyncio.wait_for(self.ws.receive(), max(0.01, deadline - loop.time()))
            if msg.type == aiohttp.WSMsgType.CLOSE:
                # The code the server sent. ws.close_code may read 1006 instead when
                # the server is gone before aiohttp's automatic close reply is written.
                return msg.data
            if msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                return self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()


async def connect(
    http: aiohttp.ClientSession,
    base: str,
    room: str,
    after: int | None = None,
    origin: str | None = None,
    **kwargs,
) -> Socket:
    url = f"{base}/ws/chat/{room}/" + (f"?after={after}" if after is not None else "")
    ws = await http.ws_connect(url, headers={"Origin": origin or base}, **kwargs)
    return Socket(ws)


class Person:
    """One logged-in person (own cookie jar) on a server."""

    def __init__(self, base: str, username: str) -> None:
        self.base = base
        self.username = username
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.sockets: list[Socket] = []

    async def __aenter__(self) -> Person:
        await login(self.http, self.base, self.username)
        return self

    async def __aexit__(self, *exc) -> None:
        # The session does not own its WebSockets: close them, or their connections leak.
        for sock in self.sockets:
            await sock.ws.close()
        await self.http.close()

    async def join(
        self, room: str, after: int | None = None, base: str | None = None, **kwargs
    ) -> Socket:
        sock = await connect(self.http, base or self.base, room, after, **kwargs)
        self.sockets.append(sock)
        return sock
