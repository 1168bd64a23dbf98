"""The one test client: a person with a cookie jar, the site's forms and chat sockets.

`Client` works the same against the app in this process (a pytest-aiohttp
`TestClient` or `TestServer`) and against real app processes (a base URL):

    async with Client(app.url, "ann") as ann:       # registered (or logged in)
        sock = await ann.join(room)                  # Origin sent, cookie sent
        await sock.next("history")
        stored = await sock.say("hello")             # waits for the stored echo
        await sock.presence(["ann", "ben"])          # waits for that presence frame
        page = await ann.get("/chat/")               # Response: status, body, text

Forms go through the real pages: the CSRF token is read from the form first.
Sockets are closed with the client. The Playwright-driven browser is another
kind of client (a page): `tests/browser.py:BrowserPerson`.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDictProxy
from yarl import URL

PASSWORD = "Sturdy-Pass-42"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
SESSION_COOKIE = "chatapp_session"
CLOSED_TYPES = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED)
_client_ids = itertools.count(1)


@dataclass(frozen=True)
class Response:
    """An HTTP answer, read in full. Redirects are never followed unless asked."""

    status: int
    headers: CIMultiDictProxy
    body: str  # as served

    @property
    def text(self) -> str:
        """The body with HTML entities decoded, for assertions on what a page says."""
        return html.unescape(self.body)

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").partition(";")[0]


class Client:
    """One person: an own cookie jar on one app, its forms, and its chat sockets.

    `target` is a base URL ("http://127.0.0.1:8080"), a `TestServer` or a
    `TestClient` (then its session, and so its cookie jar, is used). With a
    `name`, entering `async with` signs in: register, or log in if the name is
    taken.
    """

    def __init__(
        self,
        target: str | TestClient | TestServer,
        name: str | None = None,
        password=PASSWORD,
        *,
        ssl: bool = True,
    ) -> None:
        self.name = name
        self.password = password
        self.sockets: list[Socket] = []
        self._own_session = not isinstance(target, TestClient)
        # The app itself when it runs in this process (to look at its Redis).
        self.app = target.app if isinstance(target, TestClient) else None
        if isinstance(target, TestClient):
            self.base = str(target.make_url("")).rstrip("/")
            self.http = target.session
        else:
            if isinstance(target, TestServer):
                target = str(target.make_url(""))
            self.base = target.rstrip("/")
            # An unsafe jar: aiohttp's default one refuses cookies for IP hosts. No
            # connection limit: each open socket holds a connection (tabs, bursts).
            # ssl=False: accept any certificate (a self-signed one made by a test).
            self.http = aiohttp.ClientSession(
                cookie_jar=aiohttp.CookieJar(unsafe=True),
                connector=aiohttp.TCPConnector(limit=0, ssl=ssl),
            )

    def another(self, name: str | None = None) -> Client:
        """A second person (own cookie jar) on the same app."""
        return Client(self.base, name, self.password)

    async def __aenter__(self) -> Client:
        if self.name is not None:
            await self.sign_in()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        # The HTTP session does not own its WebSockets: close them, or they leak.
        for sock in self.sockets:
            await sock.ws.close()
        self.sockets.clear()
        if self._own_session:
            await self.http.close()

    # -- HTTP ------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return self.base + path if path.startswith("/") else path

    async def request(self, method: str, path: str, **kwargs) -> Response:
        kwargs.setdefault("allow_redirects", False)
        async with self.http.request(method, self.url(path), **kwargs) as response:
            body = await response.text(errors="replace")
            return Response(response.status, response.headers, body)

    async def get(self, path: str, **kwargs) -> Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, data: Any = None, **kwargs) -> Response:
        return await self.request("POST", path, data=data, **kwargs)

    async def json(self, path: str) -> Any:
        async with self.http.get(self.url(path)) as response:
            assert response.status == 200, (path, response.status)
            return await response.json()

    async def csrf(self, path: str = "/login/") -> str:
        """The CSRF token of the form on `path` (a GET of the page, as a browser does)."""
        page = await self.get(path)
        match = CSRF_RE.search(page.body)
        assert match, f"no csrf_token on {path} ({page.status})"
        return match.group(1)

    async def submit(self, path: str, fields: dict | None = None, token_from: str | None = None):
        """POST a form with the session's CSRF token (read from `token_from`, else `path`)."""
        data = dict(fields or {})
        data["csrf_token"] = await self.csrf(token_from or path.split("?")[0])
        return await self.post(path, data=data)

    async def register(
        self, username: str | None = None, password: str | None = None, password2=None, **extra
    ) -> Response:
        username = self.name if username is None else username
        password = self.password if password is None else password
        fields = {
            "username": username,
            "password": password,
            "password2": password if password2 is None else password2,
            **extra,
        }
        return await self.submit("/register/", fields)

    async def login(
        self, username: str | None = None, password: str | None = None, next_url=None
    ) -> Response:
        fields = {
            "username": self.name if username is None else username,
            "password": self.password if password is None else password,
        }
        path = "/login/" if next_url is None else f"/login/?next={next_url}"
        return await self.submit(path, fields, token_from="/login/")

    async def action(self, path: str) -> Response:
        """POST a form that is only a button (logout, admin actions); token from /chat/."""
        return await self.submit(path, token_from="/chat/")

    async def logout(self) -> Response:
        return await self.action("/logout/")

    async def sign_in(self) -> Client:
        """Register as `name`, or log in if the name is taken; fail on anything else."""
        response = await self.register()
        if response.status == 400 and "already exists" in response.text:
            response = await self.login()
        assert response.status == 302, f"signing in {self.name}: {response.status}"
        return self

    async def is_anonymous(self) -> bool:
        page = await self.get("/chat/")
        return page.status == 302 and page.location.startswith("/login/")

    def session_cookie(self, name: str = SESSION_COOKIE) -> str | None:
        for cookie in self.http.cookie_jar:
            if cookie.key == name:
                return cookie.value
        return None

    def use_cookie(self, value: str) -> None:
        """Replace the cookies with one session cookie (to replay an old one)."""
        jar = self.http.cookie_jar
        jar.clear()
        jar.update_cookies({SESSION_COOKIE: value}, URL(self.base))

    def cookie_header(self) -> str:
        """The Cookie header this client sends (for hand-made connections)."""
        cookies = self.http.cookie_jar.filter_cookies(URL(self.base))
        return "; ".join(f"{k}={v.value}" for k, v in cookies.items())

    # -- sockets -----------------------------------------------------------------------

    async def join(
        self,
        room: str,
        after: int | str | None = None,
        *,
        rev: int | str | None = None,
        origin: str | None = None,
        base: str | None = None,
        **ws_kwargs,
    ) -> Socket:
        """Open a chat socket; no frame is read yet.

        The Origin header is the page's (`base`), or `origin`; `origin=""` sends none.
        """
        return await self.join_path(
            f"/ws/chat/{room}/", after, rev=rev, origin=origin, base=base, **ws_kwargs
        )

    async def join_path(
        self,
        path: str,
        after: int | str | None = None,
        *,
        rev: int | str | None = None,
        origin: str | None = None,
        base: str | None = None,
        **ws_kwargs,
    ) -> Socket:
        """Open the socket at `path` (`/ws/chat/{room}/`, `/ws/dm/{username}/`)."""
        base = (base or self.base).rstrip("/")
        params = {"after": after, "rev": rev}
        query = "&".join(f"{k}={v}" for k, v in params.items() if v is not None)
        query = f"?{query}" if query else ""
        headers = {} if origin == "" else {"Origin": origin or base}
        ws = await self.http.ws_connect(f"{base}{path}{query}", headers=headers, **ws_kwargs)
        sock = Socket(ws, self.name)
        self.sockets.append(sock)
        return sock

    async def enter(self, room: str, after: int | None = None, **kwargs) -> Socket:
        """Join and read the history frame (kept as `sock.history`)."""
        sock = await self.join(room, after, **kwargs)
        await sock.next("history")
        return sock


class Socket:
    """A chat socket: frames are read in order; every frame read is kept in `seen`."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, name: str | None = None) -> None:
        self.ws = ws
        self.name = name
        self.seen: list[dict[str, Any]] = []
        self.history: dict[str, Any] | None = None

    @property
    def port(self) -> int:
        """The client's local TCP port (to find the server's end of the connection)."""
        return self.ws.get_extra_info("sockname")[1]

    async def send(self, text: str, client_id: str | None = None) -> None:
        frame = {"type": "message", "text": text}
        if client_id is not None:
            frame["client_id"] = client_id
        await self.ws.send_str(json.dumps(frame))

    async def send_frame(self, **frame: Any) -> None:
        """Any frame: `send_frame(type="edit", id=3, text="fixed")`."""
        await self.ws.send_str(json.dumps(frame))

    async def say(self, text: str, timeout: float = 5.0, **extra: Any) -> dict[str, Any]:
        """Send with a fresh client_id (and `extra` fields, such as reply_to); return
        the stored message when it comes back."""
        client_id = f"{self.name or 'anon'}-{next(_client_ids)}"
        await self.send_frame(type="message", text=text, client_id=client_id, **extra)
        return await self.until(
            lambda f: f["type"] == "message" and f.get("client_id") == client_id,
            timeout,
            f"the echo of {client_id}",
        )

    async def frame(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next text frame, decoded; a close or a binary frame fails."""
        # wait_for: ws.receive(timeout=) does not time out while the server pings.
        msg = await asyncio.wait_for(self.ws.receive(), timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise AssertionError(f"expected a text frame, got {msg.type} {msg.data!r}")
        frame = json.loads(msg.data)
        if frame.get("type") == "history":
            self.history = frame
        self.seen.append(frame)
        return frame

    async def frames(self):
        """Every text frame, decoded, until the socket closes (for background readers)."""
        while True:
            msg = await self.ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                return
            frame = json.loads(msg.data)
            self.seen.append(frame)
            yield frame

    async def until(
        self, predicate: Callable[[dict], object], timeout: float = 5.0, what: str = "a frame"
    ) -> dict[str, Any]:
        """Read frames until one satisfies `predicate`; return it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            try:
                frame = await self.frame(max(0.001, left))
            except TimeoutError:
                last = self.seen[-3:]
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}; last frames {last}"
                ) from None
            if predicate(frame):
                return frame

    async def next(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next frame of type `kind`, skipping others."""
        return await self.until(lambda f: f["type"] == kind, timeout, f"a {kind} frame")

    async def update(self, message_id: int, timeout: float = 5.0) -> dict[str, Any]:
        """The next `update` frame about message `message_id`."""
        return await self.until(
            lambda f: f["type"] == "update" and f["message"]["id"] == message_id,
            timeout,
            f"an update of message {message_id}",
        )

    async def error(self, timeout: float = 5.0) -> dict[str, Any]:
        return await self.next("error", timeout)

    async def presence(self, users: list[str], timeout: float = 5.0) -> dict[str, Any]:
        """Presence frames are a stream of states: wait for the one naming `users`."""
        return await self.until(
            lambda f: f["type"] == "presence" and f["users"] == users,
            timeout,
            f"presence {users}",
        )

    async def messages(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The next `count` message frames."""
        out: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(out) < count:
            left = max(0.001, deadline - loop.time())
            out.append(await self.until(lambda f: f["type"] == "message", left, f"{count} msgs"))
        return out

    async def closed(self, timeout: float = 5.0) -> int | None:
        """Wait for the server to close the socket (frames before are skipped); its code."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = max(0.001, deadline - loop.time())
            msg = await asyncio.wait_for(self.ws.receive(), left)
            if msg.type == aiohttp.WSMsgType.CLOSE:
                # The code the server sent. ws.close_code may read 1006 instead when
                # the server is gone before aiohttp's automatic close reply is written.
                return msg.data
            if msg.type in CLOSED_TYPES or msg.type == aiohttp.WSMsgType.ERROR:
                return self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()
