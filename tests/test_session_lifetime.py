"""A session lives at most `session.max_age` from its login (issue 13, item 5).

Admin actions write the session (the flash message); before, every write
reset the key's TTL, so an admin session slid forever, while the per-user
index kept its login-time expiry and, once gone, let `setpassword` end
nothing. Now saves keep the lifetime left, the index outlives its sessions,
and ending every session of a user also starts a new session generation.
"""

from __future__ import annotations

import json
import time

import pytest

from chatapp.accounts.users import Accounts
from chatapp.appkeys import admin_key, store_key
from chatapp.store.keys import Keys

from .client import CSRF_RE, PASSWORD, Client
from .conftest import make_config
from .support import ROOT, app_env, run_cli

NEW_PASSWORD = "Another-Pass-77"


async def make_user(client, name: str, superuser: bool = False) -> None:
    await Accounts(client.app[store_key].raw, 4).create(name, PASSWORD, superuser=superuser)


def session_id(auth: Client) -> str:
    return auth.session_cookie().rpartition(".")[0]


async def session_data(client, sid: str) -> dict | None:
    raw = await client.app[store_key].raw.get(Keys.session("chatapp_session", sid))
    return json.loads(raw) if raw else None


async def admin_action(auth: Client, path: str) -> int:
    """POST an admin action with the admin page's token; 0 when the page is not served."""
    page = await auth.get("/admin/")
    found = CSRF_RE.search(page.body)
    if page.status != 200 or found is None:
        return 0
    response = await auth.post(path, data={"csrf_token": found.group(1)})
    return response.status


async def is_anonymous(auth: Client, path: str = "/chat/") -> bool:
    response = await auth.get(path)
    return response.status == 302 and response.headers["Location"].startswith("/login/")


async def test_admin_session_expires_at_max_age_despite_actions(app_factory, redis_url, figure):
    max_age = 3
    client = await app_factory(redis_url, session={"max_age": max_age})
    await make_user(client, "boss", superuser=True)
    await make_user(client, "ann")
    boss = client
    assert (await boss.login("boss")).status == 302
    sid = session_id(boss)
    since = (await session_data(client, sid))["session"]["since"]
    redis = client.app[store_key].raw
    actions = 0
    # Act as an admin without pause, each action writing the session (the
    # flash), until the session stops working or well past max_age.
    while time.time() < since + max_age + 3:
        action = ("grant", "revoke")[actions % 2]
        status = await admin_action(boss, f"/admin/users/ann/{action}")
        if status != 302 or await is_anonymous(boss, "/admin/"):
            break
        actions += 1
        ttl = await redis.ttl(Keys.session("chatapp_session", sid))
        assert ttl <= max_age - int(time.time() - since) + 1  # the save kept what was left
    ended_after = time.time() - since
    figure("admin actions before the session ended", actions)
    figure("session ended after (s)", round(ended_after, 2))
    assert await is_anonymous(boss, "/admin/")
    assert actions >= 3
    assert max_age <= ended_after < max_age + 1.5
    assert await redis.exists(Keys.session("chatapp_session", sid)) == 0


async def test_a_session_whose_login_is_older_than_max_age_is_anonymous(app_factory, redis_url):
    client = await app_factory(redis_url)
    await make_user(client, "boss", superuser=True)
    boss = client
    assert (await boss.login("boss")).status == 302
    assert (await boss.get("/admin/")).status == 200
    # Move time: the login happened max_age (two weeks) and a second ago.
    redis = client.app[store_key].raw
    key = Keys.session("chatapp_session", session_id(boss))
    data = json.loads(await redis.get(key))
    data["session"]["since"] = time.time() - 1_209_600 - 1
    await redis.set(key, json.dumps(data), keepttl=True)
    assert await is_anonymous(boss, "/admin/")
    assert await redis.exists(key) == 0


async def test_a_save_keeps_the_lifetime_left_and_the_index_outlives_it(app_factory, redis_url):
    client = await app_factory(redis_url)
    await make_user(client, "boss", superuser=True)
    await make_user(client, "ann")
    boss = client
    assert (await boss.login("boss")).status == 302
    redis = client.app[store_key].raw
    key = Keys.session("chatapp_session", session_id(boss))
    data = json.loads(await redis.get(key))
    data["session"]["since"] = time.time() - 1_209_600 + 100  # 100 s left
    await redis.set(key, json.dumps(data), keepttl=True)
    assert await admin_action(boss, "/admin/users/ann/grant") == 302
    assert 0 < await redis.ttl(key) <= 100
    # The page pops the flash (a write): the cookie's Max-Age is what is left.
    response = await boss.get("/admin/")
    cookie = response.headers["Set-Cookie"]
    assert "Max-Age=" in cookie and int(cookie.split("Max-Age=")[1].split(";")[0]) <= 100
    assert await redis.ttl(Keys.user_sessions("boss")) >= await redis.ttl(key)


async def test_setpassword_after_the_index_would_have_expired_still_ends_the_session(
    app_factory, redis_url
):
    client = await app_factory(redis_url)
    await make_user(client, "boss", superuser=True)
    await make_user(client, "ann")
    boss = client
    assert (await boss.login("boss")).status == 302
    assert await admin_action(boss, "/admin/users/ann/grant") == 302
    redis = client.app[store_key].raw
    # The index runs out (as it did when it kept its login-time expiry while
    # the admin's session slid on); the session itself is still alive.
    index = Keys.user_sessions("boss")
    await redis.pexpire(index, 1)
    while await redis.exists(index):
        pass  # gone within a millisecond or so
    assert (await boss.get("/admin/")).status == 200
    await client.app[admin_key].set_password("cli", "boss", NEW_PASSWORD)
    assert await is_anonymous(boss, "/admin/")  # refused: an older session generation


async def test_setpassword_counts_a_session_the_index_got_back_by_its_next_save(
    app_factory, redis_url
):
    client = await app_factory(redis_url)
    await make_user(client, "boss", superuser=True)
    await make_user(client, "ann")
    boss = client
    assert (await boss.login("boss")).status == 302
    redis = client.app[store_key].raw
    index = Keys.user_sessions("boss")
    await redis.delete(index)
    # The admin keeps working: the next write of the session puts it back.
    assert await admin_action(boss, "/admin/users/ann/grant") == 302
    assert await redis.sismember(index, session_id(boss))
    _, ended = await client.app[admin_key].set_password("cli", "boss", NEW_PASSWORD)
    assert ended == 1
    assert await is_anonymous(boss, "/admin/")


@pytest.mark.parametrize("logins", [0, 2])
async def test_setpassword_command_says_how_many_sessions_ended(
    app_factory, people, redis_url, logins
):
    client = await app_factory(redis_url)
    await make_user(client, "ann")
    people = [people(client.base) for _ in range(logins)]
    for person in people:
        assert (await person.login("ann")).status == 302
    # Expired sessions the index still names are not counted.
    await client.app[store_key].raw.sadd(Keys.user_sessions("ann"), "long-gone")
    result = run_cli(
        "--config",
        str(ROOT / "config.yaml"),
        "setpassword",
        "ann",
        "--password",
        NEW_PASSWORD,
        env=app_env(redis_url),
    )
    assert result.returncode == 0, result.stderr
    expected = "2 sessions ended" if logins else "no session was open"
    assert f"password of ann changed; {expected}" in result.stdout
    for person in people:
        assert await is_anonymous(person)


async def test_disable_reports_the_sessions_it_ended_on_the_admin_page(app_factory, redis_url):
    client = await app_factory(redis_url)
    await make_user(client, "boss", superuser=True)
    await make_user(client, "ann")
    boss = client
    assert (await boss.login("boss")).status == 302
    status = await admin_action(boss, "/admin/users/ann/disable")
    assert status == 302
    page = (await boss.get("/admin/")).body
    assert "Disabled ann: no session was open" in page


def test_a_max_age_of_a_few_seconds_is_a_valid_config(redis_url):
    assert make_config(redis_url, session={"max_age": 3}).session.max_age == 3


async def test_log_out_everywhere_from_the_admin_page_says_how_many_ended(
    app_factory, people, redis_url
):
    client = await app_factory(redis_url)
    await make_user(client, "boss", superuser=True)
    await make_user(client, "ann")
    boss = client
    ann = people(client.base)
    assert (await boss.login("boss")).status == 302
    assert (await ann.login("ann")).status == 302
    assert await admin_action(boss, "/admin/users/ann/logout") == 302
    page = (await boss.get("/admin/")).body
    assert "Logged ann out everywhere: 1 session ended" in page
    assert await is_anonymous(ann)
    assert not await is_anonymous(boss)


async def test_sessions_keep_their_lifetime_on_the_memory_store(app_factory):
    client = await app_factory("memory://")
    await make_user(client, "boss", superuser=True)
    await make_user(client, "ann")
    boss = client
    assert (await boss.login("boss")).status == 302
    assert await admin_action(boss, "/admin/users/ann/grant") == 302
    redis = client.app[store_key].raw
    key = Keys.session("chatapp_session", session_id(boss))
    assert 0 < await redis.ttl(key) <= 1_209_600
    assert await redis.ttl(Keys.user_sessions("boss")) >= await redis.ttl(key)
    _, ended = await client.app[admin_key].set_password("cli", "boss", NEW_PASSWORD)
    assert ended == 1
    assert await is_anonymous(boss, "/admin/")
