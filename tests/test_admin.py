"""The admin page and its actions, in one process and across two app processes."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from chatapp.accounts.audit import AuditLog
from chatapp.accounts.users import Accounts
from chatapp.app import create_app
from chatapp.store.keys import Keys
from chatapp.web.pages import DISABLED

from .client import PASSWORD, Client
from .conftest import make_config
from .support import app_pair, until

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


@pytest.fixture
async def server(aiohttp_server, redis_url):
    """The app in this process; `.base` is its URL, `.app` the application."""
    app = create_app(make_config(redis_url, chat={"rate_limit_messages": 1_000_000}))
    srv = await aiohttp_server(app)
    srv.base = str(srv.make_url("")).rstrip("/")
    return srv


@pytest.fixture
def browsers(people, server):
    """browsers(name=None): another person (own cookie jar) on the in-process server."""
    return lambda name=None: people(server.base, name)


async def logged_in(client: Client, redis_url: str, superuser: bool = False) -> Client:
    """Create `client.name` straight in Redis, then log in through the form."""
    await create_user(redis_url, client.name, superuser=superuser)
    assert (await client.login()).status == 302
    return client


@pytest.fixture
async def boss(browsers, redis_url) -> Client:
    """A logged-in superuser named boss."""
    return await logged_in(browsers("boss"), redis_url, superuser=True)


@pytest.fixture
async def ann(browsers, redis_url) -> Client:
    """A logged-in ordinary user named ann."""
    return await logged_in(browsers("ann"), redis_url)


# -- who may see and act ---------------------------------------------------------------


async def test_anonymous_visitor_is_sent_to_login(browsers):
    page = await browsers().get("/admin/")
    assert page.status == 302
    assert page.location == "/login/?next=/admin/"


async def test_non_superuser_gets_403_on_admin_page(ann):
    page = await ann.get("/admin/")
    assert page.status == 403
    assert "superusers" in page.text


@pytest.mark.parametrize(
    "path",
    [f"/admin/users/boss/{a}" for a in USER_ACTIONS] + ["/admin/rooms/lobby/delete"],
)
async def test_non_superuser_gets_403_on_every_action(ann, boss, redis_url, path):
    await make_room(redis_url, "lobby")
    page = await ann.action(path)
    assert page.status == 403
    assert await redis_call(redis_url, "hget", Keys.user("boss"), "disabled") == b"0"
    assert await redis_call(redis_url, "zscore", Keys.rooms, "lobby") is not None


@pytest.mark.parametrize(
    "path",
    [f"/admin/users/ann/{a}" for a in USER_ACTIONS] + ["/admin/rooms/lobby/delete"],
)
async def test_action_without_csrf_token_is_forbidden(boss, ann, redis_url, path):
    await make_room(redis_url, "lobby")
    page = await boss.post(path, data={})
    assert page.status == 403
    assert "CSRF" in page.text
    assert not await ann.is_anonymous()
    assert await redis_call(redis_url, "zscore", Keys.rooms, "lobby") is not None


async def test_get_on_an_action_is_405(boss):
    page = await boss.get("/admin/users/boss/disable")
    assert page.status == 405


# -- the page ----------------------------------------------------------------------------


async def test_page_lists_users_with_joined_last_login_and_flags(boss, redis_url):
    await create_user(redis_url, "zed")
    page = await boss.get("/admin/")
    assert page.status == 200
    assert '<tr data-user="boss">' in page.text
    assert '<tr data-user="zed">' in page.text
    row = page.text.split('<tr data-user="zed">')[1].split("</tr>")[0]
    assert "never" in row  # zed never logged in
    assert "UTC" in row  # joined


async def test_page_shows_who_is_online_and_in_which_room(boss, ann):
    ws = await ann.enter("lobby")
    page = await boss.get("/admin/")
    row = page.text.split('<tr data-user="ann">')[1].split("</tr>")[0]
    assert "yes: lobby" in row
    await ws.close()


async def test_page_lists_rooms_with_people_and_messages_held(boss, ann):
    ws = await ann.enter("lobby")
    await ws.say("one")
    await ws.say("two")
    page = await boss.get("/admin/")
    row = page.text.split('<tr data-room="lobby">')[1].split("</tr>")[0]
    assert "<td>1: ann</td>" in row
    assert "<td>2</td>" in row
    await ws.close()


async def test_user_search_shows_only_matching_names(boss, redis_url):
    for name in ("alpha", "alphonse", "beta"):
        await create_user(redis_url, name)
    page = await boss.get("/admin/?q=ALPH")
    assert 'data-user="alpha"' in page.text
    assert 'data-user="alphonse"' in page.text
    assert 'data-user="beta"' not in page.text


async def test_room_search_shows_only_matching_rooms(boss, redis_url):
    await make_room(redis_url, "games", "gardening", "news")
    page = await boss.get("/admin/?rq=ga")
    assert 'data-room="games"' in page.text
    assert 'data-room="gardening"' in page.text
    assert 'data-room="news"' not in page.text


async def test_thousands_of_users_are_paged_fifty_at_a_time(boss, redis_url):
    client = aioredis.from_url(redis_url)
    pipe = client.pipeline()
    for i in range(2000):
        name = f"user{i:04d}"
        pipe.hset(Keys.user(name), mapping={"name": name, "pw": "x", "su": "0", "joined": i})
        pipe.zadd(Keys.users, {name: i})
    await pipe.execute()
    await client.aclose()
    page = await boss.get("/admin/?page=3")
    assert page.text.count("<tr data-user=") == 50
    # By name: boss first, then user0000...; page 3 holds rows 101 to 150.
    assert 'data-user="user0098"' not in page.text
    assert 'data-user="user0099"' in page.text
    assert 'data-user="user0148"' in page.text
    assert "Page 3 of 41" in page.text
    assert 'href="/admin/?page=4"' in page.text
    assert 'href="/admin/?page=2"' in page.text


@pytest.mark.parametrize(
    "page", ["abc", "-1", "0", "99999999999999", "1e9", "%00", "%C2%B2", "%E2%91%A0", "+2", "1_0"]
)
async def test_bad_page_number_shows_a_page_not_an_error(boss, page):
    shown = await boss.get(f"/admin/?page={page}&rpage={page}")
    assert shown.status == 200
    assert 'data-user="boss"' in shown.text


async def test_page_asks_for_confirmation_through_admin_js(boss, ann):
    page = await boss.get("/admin/")
    assert '<script src="/static/js/admin.js"></script>' in page.text
    forms = page.text.count('<form class="inline-form" method="post" action="/admin/')
    assert forms > 0
    assert page.text.count("data-confirm=") == forms
    script = await boss.get("/static/js/admin.js")
    assert script.status == 200
    assert "confirm(" in script.body


async def test_every_post_form_on_the_page_carries_a_token(boss, ann):
    page = await boss.get("/admin/")
    assert page.text.count('method="post"') == page.text.count('name="csrf_token"')


# -- disable and enable ------------------------------------------------------------------


async def test_disable_ends_every_session_of_the_user(boss, ann, browsers):
    second = browsers("ann")
    await second.login()
    page = await boss.action("/admin/users/ann/disable")
    assert page.status == 302
    assert await ann.is_anonymous()
    assert await second.is_anonymous()


async def test_disabled_user_login_is_refused_with_the_message(boss, ann, browsers):
    await boss.action("/admin/users/ann/disable")
    page = await browsers("ann").login()
    assert page.status == 400
    assert DISABLED in page.text


async def test_enable_lets_a_disabled_user_log_in_again(boss, ann, browsers):
    await boss.action("/admin/users/ann/disable")
    page = await boss.action("/admin/users/ann/enable")
    assert page.status == 302
    assert (await browsers("ann").login()).status == 302


async def test_disable_closes_the_users_socket_with_1008(boss, ann):
    ws = await ann.enter("lobby")
    await boss.action("/admin/users/ann/disable")
    assert await ws.closed(1.0) == 1008


async def test_action_redirects_back_keeping_search_and_page(boss, ann):
    page = await boss.action("/admin/users/ann/disable?q=an&page=1&rq=x&evil=1")
    assert page.status == 302
    assert page.location == "/admin/?q=an&rq=x"


async def test_page_after_an_action_says_what_was_done(boss, ann):
    await boss.action("/admin/users/ann/disable")
    page = await boss.get("/admin/")
    assert "Disabled ann" in page.text
    page = await boss.get("/admin/")
    assert "Disabled ann" not in page.text  # shown once


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
    page = await boss.action(path)
    assert page.status == 404


# -- superuser rights ---------------------------------------------------------------


async def test_grant_makes_a_user_superuser(boss, ann):
    page = await boss.action("/admin/users/ann/grant")
    assert page.status == 302
    assert (await ann.get("/admin/")).status == 200


async def test_revoke_takes_superuser_rights_away(boss, ann):
    await boss.action("/admin/users/ann/grant")
    page = await boss.action("/admin/users/ann/revoke")
    assert page.status == 302
    assert (await ann.get("/admin/")).status == 403


async def test_last_superuser_cannot_revoke_themself(boss, redis_url):
    page = await boss.action("/admin/users/boss/revoke")
    assert page.status == 400
    assert "boss is the last superuser" in page.text
    assert (await boss.get("/admin/")).status == 200


async def test_last_superuser_cannot_disable_themself(boss, redis_url):
    page = await boss.action("/admin/users/boss/disable")
    assert page.status == 400
    assert "cannot be disabled" in page.text
    assert (await boss.get("/admin/")).status == 200


async def test_disabled_superuser_does_not_count_as_another_superuser(boss, redis_url):
    await create_user(redis_url, "old", superuser=True)
    await boss.action("/admin/users/old/disable")
    page = await boss.action("/admin/users/boss/revoke")
    assert page.status == 400


async def test_superuser_can_revoke_themself_when_another_remains(boss, ann):
    await boss.action("/admin/users/ann/grant")
    page = await boss.action("/admin/users/boss/revoke")
    assert page.status == 302
    assert (await boss.get("/admin/")).status == 403


# -- delete a room -----------------------------------------------------------------------


async def test_delete_room_closes_its_sockets_with_1008(boss, ann):
    ws = await ann.enter("lobby")
    await ws.say("hello")
    page = await boss.action("/admin/rooms/lobby/delete")
    assert page.status == 302
    assert await ws.closed(1.0) == 1008


async def test_delete_room_removes_history_presence_and_listing(boss, ann, redis_url):
    ws = await ann.enter("lobby")
    await ws.say("hello")
    await boss.action("/admin/rooms/lobby/delete")
    await ws.closed(1.0)
    keys = (Keys.room_seq("lobby"), Keys.room_history("lobby"), Keys.room_members("lobby"))

    async def nothing_left() -> bool:
        held = [key for key in keys if await redis_call(redis_url, "exists", key)]
        listed = await redis_call(redis_url, "zscore", Keys.rooms, "lobby") is not None
        return not held and not listed

    # Until the closed socket's leave is done, its presence refresh may write a record.
    await until(nothing_left, 5, "the room's keys and its listing to be gone")


async def test_new_socket_in_a_deleted_room_gets_empty_history(boss, ann):
    ws = await ann.enter("lobby")
    await ws.say("hello")
    await boss.action("/admin/rooms/lobby/delete")
    await ws.closed(1.0)
    again = await ann.enter("lobby")
    assert again.history["messages"] == []
    assert (await again.say("fresh"))["id"] == 1
    await again.close()


async def test_delete_room_leaves_other_rooms_alone(boss, ann):
    other = await ann.enter("other")
    await other.say("keep me")
    await ann.enter("lobby")
    await boss.action("/admin/rooms/lobby/delete")
    assert (await other.say("still here"))["id"] == 2
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
        assert (await boss.action(path)).status == 302
    page = await boss.get("/admin/")
    audit = page.text.split('id="audit"')[1]
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
    await boss.action("/admin/users/boss/revoke")
    page = await boss.get("/admin/")
    assert "No admin actions yet." in page.text


# -- across two app processes -----------------------------------------------------------


@pytest.fixture(scope="module")
def workers(redis_server):
    """Two app processes on the one private Redis (flushed per test by redis_url)."""
    with app_pair(redis_server.url, CHATAPP_CHAT_RATE_LIMIT_MESSAGES="1000000") as processes:
        yield processes


@pytest.fixture
async def two(workers, redis_url, people, room):
    """(boss on worker 1, ann on worker 2, make(n, name): a person on worker n, room)."""

    def make(n: int, name: str) -> Client:
        return people(workers[n - 1].url, name)

    boss = await logged_in(make(1, "boss"), redis_url, superuser=True)
    ann = await logged_in(make(2, "ann"), redis_url)
    return boss, ann, make, room


@pytest.mark.multiprocess
async def test_disable_on_one_worker_closes_sockets_on_the_other_with_1008_within_1s(two):
    boss, ann, _, room = two
    sockets = [await ann.enter(room), await ann.enter(room + "_b")]
    started = time.monotonic()
    assert (await boss.action("/admin/users/ann/disable")).status == 302
    codes = await asyncio.gather(*(sock.closed(1.0) for sock in sockets))
    assert codes == [1008, 1008]
    assert time.monotonic() - started < 1.0


@pytest.mark.multiprocess
async def test_disable_on_one_worker_makes_the_session_anonymous_on_the_other(two):
    boss, ann, _, _ = two
    await boss.action("/admin/users/ann/disable")
    assert await ann.is_anonymous()


@pytest.mark.multiprocess
async def test_disabled_login_refused_then_enable_lets_back_in_on_the_other_worker(two):
    boss, _, make, _ = two
    await boss.action("/admin/users/ann/disable")
    page = await make(2, "ann").login()
    assert (page.status, DISABLED in page.text) == (400, True)
    await boss.action("/admin/users/ann/enable")
    assert (await make(2, "ann").login()).status == 302


@pytest.mark.multiprocess
async def test_delete_room_closes_its_sockets_on_both_workers(two):
    boss, ann, make, room = two
    near = make(1, "ann")
    await near.login()
    sockets = [await near.enter(room), await ann.enter(room)]
    await sockets[0].say("hello")
    started = time.monotonic()
    assert (await boss.action(f"/admin/rooms/{room}/delete")).status == 302
    codes = await asyncio.gather(*(sock.closed(2.0) for sock in sockets))
    assert codes == [1008, 1008]
    assert time.monotonic() - started < 1.0


@pytest.mark.multiprocess
async def test_deleted_room_gives_a_new_socket_empty_history_on_both_workers(two):
    boss, ann, make, room = two
    ws = await ann.enter(room)
    await ws.say("hello")
    await boss.action(f"/admin/rooms/{room}/delete")
    await ws.closed(1.0)
    near = make(1, "ann")
    await near.login()
    for person in (near, ann):
        again = await person.enter(room)
        assert again.history["messages"] == []
