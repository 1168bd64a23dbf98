"""The admin page and its actions, in one process and across two app processes."""

from __future__ import annotations

import asyncio
import html
import json
import time

import aiohttp
import pytest
import redis.asyncio as aioredis

from chatapp.accounts.audit import AuditLog
from chatapp.accounts.users import Accounts
from chatapp.app import create_app
from chatapp.store.keys import Keys
from chatapp.web.pages import DISABLED

from .conftest import make_config
from .support import CSRF_RE, app_pair, http_session

PASSWORD = "Sturdy-Pass-42"
USER_ACTIONS = ("disable", "enable", "grant", "revoke")


# -- helpers -------------------------------------------------------------------------


async def create_user(redis_url: str, name: str, superuser: bool = False) -> None:
    """Create a user straight in Redis, as `createuser` would."""
    client = aioredis.from_url(redis_url)
    try:
        await Accounts(client, 4).create(name, PASSWORD, superuser=superuser)
    finally:
        await client.aclose()


async def redis_call(redis_url: str, method: str, *args):
    client = aioredis.from_url(redis_url)
    try:
        return await getattr(client, method)(*args)
    finally:
        await client.aclose()


async def make_room(redis_url: str, *names: str) -> None:
    """Make rooms exist (listed, with a seq key) without anyone in them."""
    client = aioredis.from_url(redis_url)
    try:
        for i, name in enumerate(names):
            await client.zadd(Keys.rooms, {name: time.time() + i})
            await client.set(Keys.room_seq(name), 0)
    finally:
        await client.aclose()


class Browser:
    """One person with their own cookie jar, on a server at `base`."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = http_session()

    async def close(self) -> None:
        await self.http.close()

    async def token(self, path: str = "/login/") -> str:
        async with self.http.get(self.base + path) as response:
            match = CSRF_RE.search(await response.text())
        assert match, f"no csrf_token on {path}"
        return match.group(1)

    async def login(self, name: str, password: str = PASSWORD) -> tuple[int, str]:
        token = await self.token("/login/")
        data = {"username": name, "password": password, "csrf_token": token}
        async with self.http.post(
            self.base + "/login/", data=data, allow_redirects=False
        ) as response:
            return response.status, html.unescape(await response.text())

    async def get(self, path: str) -> tuple[int, str, str]:
        """Status, decoded body and Location of a GET (redirects not followed)."""
        async with self.http.get(self.base + path, allow_redirects=False) as response:
            text = html.unescape(await response.text())
            return response.status, text, response.headers.get("Location", "")

    async def post(self, path: str, with_token: bool = True) -> tuple[int, str, str]:
        """POST an admin form as the page would (token from /admin/, or none)."""
        data = {"csrf_token": await self.token("/chat/")} if with_token else {}
        async with self.http.post(self.base + path, data=data, allow_redirects=False) as response:
            text = html.unescape(await response.text())
            return response.status, text, response.headers.get("Location", "")

    async def socket(self, room: str) -> aiohttp.ClientWebSocketResponse:
        """Open a chat socket and read its first frame (history) into `.history`."""
        ws = await self.http.ws_connect(
            f"{self.base}/ws/chat/{room}/", headers={"Origin": self.base}
        )
        ws.history = await frame(ws)  # type: ignore[attr-defined]
        assert ws.history["type"] == "history"  # type: ignore[attr-defined]
        return ws


async def frame(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> dict:
    msg = await asyncio.wait_for(ws.receive(), timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data)
    return json.loads(msg.data)


async def send(ws: aiohttp.ClientWebSocketResponse, text: str) -> dict:
    """Send a message and wait for it to come back stored."""
    await ws.send_json({"type": "message", "text": text})
    while True:
        got = await frame(ws)
        if got["type"] == "message" and got["text"] == text:
            return got


async def close_code(ws: aiohttp.ClientWebSocketResponse, timeout: float) -> int | None:
    """Wait up to `timeout` s for the server to close the socket; its close code."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        msg = await asyncio.wait_for(ws.receive(), max(0.001, deadline - loop.time()))
        if msg.type == aiohttp.WSMsgType.CLOSE:
            return msg.data
        if msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            return ws.close_code


@pytest.fixture
async def server(aiohttp_server, redis_url):
    """The app in this process; `.base` is its URL, `.app` the application."""
    app = create_app(make_config(redis_url, chat={"rate_limit_messages": 1_000_000}))
    srv = await aiohttp_server(app)
    srv.base = str(srv.make_url("")).rstrip("/")
    return srv


@pytest.fixture
async def browsers(server):
    """Make Browsers on the in-process server; all closed at the end."""
    made: list[Browser] = []

    def make() -> Browser:
        made.append(Browser(server.base))
        return made[-1]

    yield make
    for browser in made:
        await browser.close()


@pytest.fixture
async def boss(browsers, redis_url) -> Browser:
    """A logged-in superuser named boss."""
    await create_user(redis_url, "boss", superuser=True)
    browser = browsers()
    assert (await browser.login("boss"))[0] == 302
    return browser


@pytest.fixture
async def ann(browsers, redis_url) -> Browser:
    """A logged-in ordinary user named ann."""
    await create_user(redis_url, "ann")
    browser = browsers()
    assert (await browser.login("ann"))[0] == 302
    return browser


async def is_anonymous(browser: Browser) -> bool:
    status, _, location = await browser.get("/chat/")
    return status == 302 and location.startswith("/login/")


# -- who may see and act ---------------------------------------------------------------


async def test_anonymous_visitor_is_sent_to_login(browsers):
    status, _, location = await browsers().get("/admin/")
    assert status == 302
    assert location == "/login/?next=/admin/"


async def test_non_superuser_gets_403_on_admin_page(ann):
    status, text, _ = await ann.get("/admin/")
    assert status == 403
    assert "superusers" in text


@pytest.mark.parametrize(
    "path",
    [f"/admin/users/boss/{a}" for a in USER_ACTIONS] + ["/admin/rooms/lobby/delete"],
)
async def test_non_superuser_gets_403_on_every_action(ann, boss, redis_url, path):
    await make_room(redis_url, "lobby")
    status, _, _ = await ann.post(path)
    assert status == 403
    assert await redis_call(redis_url, "hget", Keys.user("boss"), "disabled") == b"0"
    assert await redis_call(redis_url, "zscore", Keys.rooms, "lobby") is not None


@pytest.mark.parametrize(
    "path",
    [f"/admin/users/ann/{a}" for a in USER_ACTIONS] + ["/admin/rooms/lobby/delete"],
)
async def test_action_without_csrf_token_is_forbidden(boss, ann, redis_url, path):
    await make_room(redis_url, "lobby")
    status, text, _ = await boss.post(path, with_token=False)
    assert status == 403
    assert "CSRF" in text
    assert not await is_anonymous(ann)
    assert await redis_call(redis_url, "zscore", Keys.rooms, "lobby") is not None


async def test_get_on_an_action_is_405(boss):
    status, _, _ = await boss.get("/admin/users/boss/disable")
    assert status == 405


# -- the page ----------------------------------------------------------------------------


async def test_page_lists_users_with_joined_last_login_and_flags(boss, redis_url):
    await create_user(redis_url, "zed")
    status, text, _ = await boss.get("/admin/")
    assert status == 200
    assert '<tr data-user="boss">' in text
    assert '<tr data-user="zed">' in text
    row = text.split('<tr data-user="zed">')[1].split("</tr>")[0]
    assert "never" in row  # zed never logged in
    assert "UTC" in row  # joined


async def test_page_shows_who_is_online_and_in_which_room(boss, ann):
    ws = await ann.socket("lobby")
    _, text, _ = await boss.get("/admin/")
    row = text.split('<tr data-user="ann">')[1].split("</tr>")[0]
    assert "yes: lobby" in row
    await ws.close()


async def test_page_lists_rooms_with_people_and_messages_held(boss, ann):
    ws = await ann.socket("lobby")
    await send(ws, "one")
    await send(ws, "two")
    _, text, _ = await boss.get("/admin/")
    row = text.split('<tr data-room="lobby">')[1].split("</tr>")[0]
    assert "<td>1: ann</td>" in row
    assert "<td>2</td>" in row
    await ws.close()


async def test_user_search_shows_only_matching_names(boss, redis_url):
    for name in ("alpha", "alphonse", "beta"):
        await create_user(redis_url, name)
    _, text, _ = await boss.get("/admin/?q=ALPH")
    assert 'data-user="alpha"' in text
    assert 'data-user="alphonse"' in text
    assert 'data-user="beta"' not in text


async def test_room_search_shows_only_matching_rooms(boss, redis_url):
    await make_room(redis_url, "games", "gardening", "news")
    _, text, _ = await boss.get("/admin/?rq=ga")
    assert 'data-room="games"' in text
    assert 'data-room="gardening"' in text
    assert 'data-room="news"' not in text


async def test_thousands_of_users_are_paged_fifty_at_a_time(boss, redis_url):
    client = aioredis.from_url(redis_url)
    pipe = client.pipeline()
    for i in range(2000):
        name = f"user{i:04d}"
        pipe.hset(Keys.user(name), mapping={"name": name, "pw": "x", "su": "0", "joined": i})
        pipe.zadd(Keys.users, {name: i})
    await pipe.execute()
    await client.aclose()
    _, text, _ = await boss.get("/admin/?page=3")
    assert text.count("<tr data-user=") == 50
    # By name: boss first, then user0000...; page 3 holds rows 101 to 150.
    assert 'data-user="user0098"' not in text
    assert 'data-user="user0099"' in text
    assert 'data-user="user0148"' in text
    assert "Page 3 of 41" in text
    assert 'href="/admin/?page=4"' in text
    assert 'href="/admin/?page=2"' in text


@pytest.mark.parametrize(
    "page", ["abc", "-1", "0", "99999999999999", "1e9", "%00", "%C2%B2", "%E2%91%A0", "+2", "1_0"]
)
async def test_bad_page_number_shows_a_page_not_an_error(boss, page):
    status, text, _ = await boss.get(f"/admin/?page={page}&rpage={page}")
    assert status == 200
    assert 'data-user="boss"' in text


async def test_page_asks_for_confirmation_through_admin_js(boss, ann):
    _, text, _ = await boss.get("/admin/")
    assert '<script src="/static/js/admin.js"></script>' in text
    forms = text.count('<form class="inline-form" method="post" action="/admin/')
    assert forms > 0
    assert text.count("data-confirm=") == forms
    status, script, _ = await boss.get("/static/js/admin.js")
    assert status == 200
    assert "confirm(" in script


async def test_every_post_form_on_the_page_carries_a_token(boss, ann):
    _, text, _ = await boss.get("/admin/")
    assert text.count('method="post"') == text.count('name="csrf_token"')


# -- disable and enable ------------------------------------------------------------------


async def test_disable_ends_every_session_of_the_user(boss, ann, browsers):
    second = browsers()
    await second.login("ann")
    status, _, _ = await boss.post("/admin/users/ann/disable")
    assert status == 302
    assert await is_anonymous(ann)
    assert await is_anonymous(second)


async def test_disabled_user_login_is_refused_with_the_message(boss, ann, browsers):
    await boss.post("/admin/users/ann/disable")
    status, text = await browsers().login("ann")
    assert status == 400
    assert DISABLED in text


async def test_enable_lets_a_disabled_user_log_in_again(boss, ann, browsers):
    await boss.post("/admin/users/ann/disable")
    status, _, _ = await boss.post("/admin/users/ann/enable")
    assert status == 302
    assert (await browsers().login("ann"))[0] == 302


async def test_disable_closes_the_users_socket_with_1008(boss, ann):
    ws = await ann.socket("lobby")
    await boss.post("/admin/users/ann/disable")
    assert await close_code(ws, 1.0) == 1008


async def test_action_redirects_back_keeping_search_and_page(boss, ann):
    status, _, location = await boss.post("/admin/users/ann/disable?q=an&page=1&rq=x&evil=1")
    assert status == 302
    assert location == "/admin/?q=an&rq=x"


async def test_page_after_an_action_says_what_was_done(boss, ann):
    await boss.post("/admin/users/ann/disable")
    _, text, _ = await boss.get("/admin/")
    assert "Disabled ann" in text
    _, text, _ = await boss.get("/admin/")
    assert "Disabled ann" not in text  # shown once


@pytest.mark.parametrize(
    "path",
    [
        "/admin/users/nobody/disable",
        "/admin/users/9bad/enable",
        "/admin/users/a-b/grant",
        "/admin/rooms/nowhere/delete",
        "/admin/rooms/9bad/delete",
        "/admin/users/ann/explode",
    ],
)
async def test_unknown_or_malformed_target_is_404(boss, ann, path):
    status, _, _ = await boss.post(path)
    assert status == 404


# -- superuser rights ---------------------------------------------------------------


async def test_grant_makes_a_user_superuser(boss, ann):
    status, _, _ = await boss.post("/admin/users/ann/grant")
    assert status == 302
    assert (await ann.get("/admin/"))[0] == 200


async def test_revoke_takes_superuser_rights_away(boss, ann):
    await boss.post("/admin/users/ann/grant")
    status, _, _ = await boss.post("/admin/users/ann/revoke")
    assert status == 302
    assert (await ann.get("/admin/"))[0] == 403


async def test_last_superuser_cannot_revoke_themself(boss, redis_url):
    status, text, _ = await boss.post("/admin/users/boss/revoke")
    assert status == 400
    assert "boss is the last superuser" in text
    assert (await boss.get("/admin/"))[0] == 200


async def test_last_superuser_cannot_disable_themself(boss, redis_url):
    status, text, _ = await boss.post("/admin/users/boss/disable")
    assert status == 400
    assert "cannot be disabled" in text
    assert (await boss.get("/admin/"))[0] == 200


async def test_disabled_superuser_does_not_count_as_another_superuser(boss, redis_url):
    await create_user(redis_url, "old", superuser=True)
    await boss.post("/admin/users/old/disable")
    status, _, _ = await boss.post("/admin/users/boss/revoke")
    assert status == 400


async def test_superuser_can_revoke_themself_when_another_remains(boss, ann):
    await boss.post("/admin/users/ann/grant")
    status, _, _ = await boss.post("/admin/users/boss/revoke")
    assert status == 302
    assert (await boss.get("/admin/"))[0] == 403


# -- delete a room -----------------------------------------------------------------------


async def test_delete_room_closes_its_sockets_with_1008(boss, ann):
    ws = await ann.socket("lobby")
    await send(ws, "hello")
    status, _, _ = await boss.post("/admin/rooms/lobby/delete")
    assert status == 302
    assert await close_code(ws, 1.0) == 1008


async def test_delete_room_removes_history_presence_and_listing(boss, ann, redis_url):
    ws = await ann.socket("lobby")
    await send(ws, "hello")
    await boss.post("/admin/rooms/lobby/delete")
    await close_code(ws, 1.0)
    await asyncio.sleep(0.1)  # let the closed socket's leave finish
    for key in (Keys.room_seq("lobby"), Keys.room_history("lobby"), Keys.room_members("lobby")):
        assert not await redis_call(redis_url, "exists", key), key
    assert await redis_call(redis_url, "zscore", Keys.rooms, "lobby") is None


async def test_new_socket_in_a_deleted_room_gets_empty_history(boss, ann):
    ws = await ann.socket("lobby")
    await send(ws, "hello")
    await boss.post("/admin/rooms/lobby/delete")
    await close_code(ws, 1.0)
    again = await ann.socket("lobby")
    assert again.history["messages"] == []
    assert (await send(again, "fresh"))["id"] == 1
    await again.close()


async def test_delete_room_leaves_other_rooms_alone(boss, ann):
    other = await ann.socket("other")
    await send(other, "keep me")
    await ann.socket("lobby")
    await boss.post("/admin/rooms/lobby/delete")
    assert (await send(other, "still here"))["id"] == 2
    await other.close()


# -- the audit log -----------------------------------------------------------------------


async def test_audit_log_shows_each_action_with_who_and_when(boss, ann, redis_url):
    await make_room(redis_url, "lobby")
    for path in (
        "/admin/users/ann/disable",
        "/admin/users/ann/enable",
        "/admin/users/ann/grant",
        "/admin/users/ann/revoke",
        "/admin/rooms/lobby/delete",
    ):
        assert (await boss.post(path))[0] == 302
    _, text, _ = await boss.get("/admin/")
    audit = text.split('id="audit"')[1]
    rows = [r.split("</tr>")[0] for r in audit.split("<tr data-audit=")[1:]]
    actions = [r.split("<td>")[3].split("</td>")[0] for r in rows]
    assert actions == ["deleteroom", "revoke", "grant", "enable", "disable"]
    for row in rows:
        assert "<td>boss</td>" in row
        assert "UTC" in row


async def test_audit_log_is_capped(redis_url):
    client = aioredis.from_url(redis_url)
    log = AuditLog(client, cap=3)
    for i in range(5):
        await log.record("boss", "disable", f"u{i}")
    entries = await log.recent(10)
    await client.aclose()
    assert [e.target for e in entries] == ["u4", "u3", "u2"]


async def test_refused_action_is_not_audited(boss):
    await boss.post("/admin/users/boss/revoke")
    _, text, _ = await boss.get("/admin/")
    assert "No admin actions yet." in text


# -- across two app processes -----------------------------------------------------------


@pytest.fixture(scope="module")
def workers(redis_server):
    """Two app processes on the one private Redis (flushed per test by redis_url)."""
    with app_pair(redis_server.url, CHATAPP_CHAT_RATE_LIMIT_MESSAGES="1000000") as processes:
        yield processes


@pytest.fixture
async def two(workers, redis_url):
    """(boss on worker 1, ann on worker 2, make a Browser on worker N)."""
    made: list[Browser] = []

    def make(n: int) -> Browser:
        made.append(Browser(workers[n - 1].url))
        return made[-1]

    await create_user(redis_url, "boss", superuser=True)
    await create_user(redis_url, "ann")
    boss, ann = make(1), make(2)
    assert (await boss.login("boss"))[0] == 302
    assert (await ann.login("ann"))[0] == 302
    yield boss, ann, make
    for browser in made:
        await browser.close()


@pytest.mark.multiprocess
async def test_disable_on_one_worker_closes_sockets_on_the_other_with_1008_within_1s(two):
    boss, ann, _ = two
    sockets = [await ann.socket("lobby"), await ann.socket("other")]
    started = time.monotonic()
    assert (await boss.post("/admin/users/ann/disable"))[0] == 302
    codes = await asyncio.gather(*(close_code(ws, 1.0) for ws in sockets))
    assert codes == [1008, 1008]
    assert time.monotonic() - started < 1.0


@pytest.mark.multiprocess
async def test_disable_on_one_worker_makes_the_session_anonymous_on_the_other(two):
    boss, ann, _ = two
    await boss.post("/admin/users/ann/disable")
    assert await is_anonymous(ann)


@pytest.mark.multiprocess
async def test_disabled_login_refused_then_enable_lets_back_in_on_the_other_worker(two):
    boss, _, make = two
    await boss.post("/admin/users/ann/disable")
    status, text = await make(2).login("ann")
    assert (status, DISABLED in text) == (400, True)
    await boss.post("/admin/users/ann/enable")
    assert (await make(2).login("ann"))[0] == 302


@pytest.mark.multiprocess
async def test_delete_room_closes_its_sockets_on_both_workers(two):
    boss, ann, make = two
    near = make(1)
    await near.login("ann")
    sockets = [await near.socket("lobby"), await ann.socket("lobby")]
    await send(sockets[0], "hello")
    started = time.monotonic()
    assert (await boss.post("/admin/rooms/lobby/delete"))[0] == 302
    codes = await asyncio.gather(*(close_code(ws, 2.0) for ws in sockets))
    assert codes == [1008, 1008]
    assert time.monotonic() - started < 1.0


@pytest.mark.multiprocess
async def test_deleted_room_gives_a_new_socket_empty_history_on_both_workers(two):
    boss, ann, make = two
    ws = await ann.socket("lobby")
    await send(ws, "hello")
    await boss.post("/admin/rooms/lobby/delete")
    await close_code(ws, 1.0)
    near = make(1)
    await near.login("ann")
    for browser in (near, ann):
        again = await browser.socket("lobby")
        assert again.history["messages"] == []
        await again.close()
