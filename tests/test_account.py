"""People in control of their sessions: change password, your sessions, sign-in audit.

Issue 13, "Session control for people" (and item 1 for the sockets: ending a
session closes its sockets on every worker with 1008).
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest

from chatapp.accounts.audit import AuditLog, SignInLog
from chatapp.accounts.users import Accounts
from chatapp.appkeys import store_key
from chatapp.store.keys import Keys
from chatapp.web.useragent import summary

from .client import CSRF_RE, PASSWORD, Client
from .support import app_pair

NEW_PASSWORD = "Another-Pass-77"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
HANDLE_RE = re.compile(r'action="/account/sessions/([0-9a-f]{32})/end"')


async def make_user(client, name: str, superuser: bool = False) -> None:
    await Accounts(client.app[store_key].raw, 4).create(name, PASSWORD, superuser=superuser)


async def token(auth: Client, path: str = "/account/sessions/") -> str:
    return CSRF_RE.search((await auth.get(path)).body).group(1)


async def post(auth: Client, path: str, **data: str):
    data.setdefault("csrf_token", await token(auth))
    return await auth.post(path, data=data)


async def change_password(auth: Client, current=PASSWORD, new=NEW_PASSWORD, again=None):
    return await post(
        auth,
        "/account/password/",
        current_password=current,
        password=new,
        password2=new if again is None else again,
    )


async def is_anonymous(auth: Client) -> bool:
    response = await auth.get("/chat/")
    return response.status == 302 and response.headers["Location"].startswith("/login/")


async def signins(client) -> list:
    return await SignInLog(client.app[store_key].raw).recent(100)


@pytest.fixture
async def ann_twice(app_factory, people, redis_url):
    """ann logged in from two browsers (two cookie jars) on one app."""
    client = await app_factory(redis_url)
    await make_user(client, "ann")
    here = client
    there = people(client.base)
    client.http.headers["User-Agent"] = FIREFOX
    assert (await here.login("ann")).status == 302
    assert (await there.login("ann")).status == 302
    return here, there


# -- change password ---------------------------------------------------------------------


async def test_change_password_ends_the_other_sessions_and_renews_this_one(ann_twice):
    here, there = ann_twice
    before = here.session_cookie()
    response = await change_password(here)
    assert response.status == 302
    assert response.headers["Location"] == "/account/sessions/"
    assert here.session_cookie() != before  # a new id
    assert not await is_anonymous(here)
    assert await is_anonymous(there)
    here.use_cookie(before)
    assert await is_anonymous(here)  # the old id is gone
    page = (await there.get("/login/")).text
    assert "Log in" in page
    assert (await there.login("ann", PASSWORD)).status == 400
    assert (await there.login("ann", NEW_PASSWORD)).status == 302


async def test_change_password_says_how_many_other_sessions_ended(ann_twice):
    here, _ = ann_twice
    await change_password(here)
    text = (await here.get("/account/sessions/")).text
    assert "Your password was changed. 1 other session was signed out." in text


@pytest.mark.parametrize(
    ("current", "new", "again", "field", "message"),
    [
        ("wrong-pass-9", NEW_PASSWORD, None, "current_password", "not correct"),
        (PASSWORD, "short", None, "password", "too short"),
        (PASSWORD, "12345678901", None, "password", "entirely numeric"),
        (PASSWORD, "password123", None, "password", "too common"),
        (PASSWORD, NEW_PASSWORD, "Other-Pass-88", "password2", "didn't match"),
        (PASSWORD, PASSWORD, None, "password", "must differ"),
        ("", NEW_PASSWORD, None, "current_password", "Enter your current password"),
    ],
)
async def test_change_password_refuses_bad_input_with_the_reason(
    ann_twice, current, new, again, field, message
):
    here, there = ann_twice
    response = await change_password(here, current, new, again)
    assert response.status == 400
    text = response.text
    assert f'id="{field}-errors"' in text and message in text
    assert not await is_anonymous(there)  # nothing ended


async def test_change_password_needs_the_form_token(ann_twice):
    here, there = ann_twice
    response = await here.post(
        "/account/password/",
        data={"current_password": PASSWORD, "password": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert response.status == 403
    assert not await is_anonymous(there)


async def test_wrong_current_passwords_are_throttled_like_logins(app_factory, redis_url):
    client = await app_factory(redis_url, accounts={"login_failures_per_user": 2})
    await make_user(client, "ann")
    ann = client
    assert (await ann.login("ann")).status == 302
    for _ in range(2):
        assert (await change_password(ann, current="wrong-pass-9")).status == 400
    response = await change_password(ann)  # even the right one waits
    assert response.status == 429
    assert "Too many failed login attempts" in response.text


async def test_account_pages_need_a_login(client):
    for path in ("/account/password/", "/account/sessions/"):
        response = await client.get(path)
        assert response.status == 302
        assert response.headers["Location"] == f"/login/?next={path}"


# -- your sessions -----------------------------------------------------------------------


async def test_sessions_page_lists_each_session_with_browser_address_and_times(ann_twice):
    here, _ = ann_twice
    response = await here.get("/account/sessions/")
    assert response.status == 200
    text = response.text
    assert len(HANDLE_RE.findall(text)) == 2
    assert "Firefox 128 on Linux" in text
    assert text.count('class="session-address">127.0.0.1<') == 2
    assert text.count("This session") == 1
    assert "signed in" in text and "last seen" in text
    assert "Sign out everywhere else" in text
    # The handles are not the session ids (the ids are the cookies' secrets).
    for sid in (here.session_cookie().rpartition(".")[0],):
        assert sid not in text


async def test_signing_one_session_out_ends_it_and_leaves_this_one(ann_twice):
    here, there = ann_twice
    text = (await here.get("/account/sessions/")).body
    current = re.search(r'data-handle="([0-9a-f]{32})"\s+aria-current', text).group(1)
    other = next(h for h in HANDLE_RE.findall(text) if h != current)
    response = await post(here, f"/account/sessions/{other}/end")
    assert response.status == 302
    assert await is_anonymous(there)
    assert not await is_anonymous(here)
    page = (await here.get("/account/sessions/")).text
    assert "Signed out" in page
    assert len(HANDLE_RE.findall(page)) == 1
    # Once ended, the same handle is unknown.
    assert (await post(here, f"/account/sessions/{other}/end")).status == 404


async def test_signing_out_this_session_from_the_list_logs_out(ann_twice):
    here, there = ann_twice
    text = (await here.get("/account/sessions/")).body
    current = re.search(r'data-handle="([0-9a-f]{32})"\s+aria-current', text).group(1)
    response = await post(here, f"/account/sessions/{current}/end")
    assert response.status == 302 and response.headers["Location"] == "/login/"
    assert await is_anonymous(here)
    assert not await is_anonymous(there)


async def test_sign_out_everywhere_else_keeps_only_this_session(app_factory, people, redis_url):
    client = await app_factory(redis_url)
    await make_user(client, "ann")
    people = [client] + [people(client.base) for _ in range(3)]
    for person in people:
        assert (await person.login("ann")).status == 302
    me = people[0]
    response = await post(me, "/account/sessions/end-others")
    assert response.status == 302
    assert "3 other sessions were signed out." in (await me.get("/account/sessions/")).text
    assert not await is_anonymous(me)
    for other in people[1:]:
        assert await is_anonymous(other)


@pytest.mark.parametrize("handle", ["0" * 32, "not-a-handle", "../../admin"])
async def test_a_handle_that_is_not_ones_own_session_is_404(ann_twice, handle):
    here, there = ann_twice
    response = await post(here, f"/account/sessions/{handle}/end")
    assert response.status == 404
    assert not await is_anonymous(there)


async def test_other_peoples_sessions_are_never_shown_nor_ended(app_factory, people, redis_url):
    client = await app_factory(redis_url)
    await make_user(client, "ann")
    await make_user(client, "bob")
    ann = client
    bob = people(client.base)
    assert (await ann.login("ann")).status == 302
    assert (await bob.login("bob")).status == 302
    bobs = HANDLE_RE.findall((await bob.get("/account/sessions/")).body)
    anns = HANDLE_RE.findall((await ann.get("/account/sessions/")).body)
    assert len(bobs) == len(anns) == 1 and bobs != anns
    assert (await post(ann, f"/account/sessions/{bobs[0]}/end")).status == 404
    assert not await is_anonymous(bob)


async def test_last_seen_is_written_at_most_once_a_minute(ann_twice):
    here, _ = ann_twice
    redis = here.app[store_key].raw
    key = Keys.session("chatapp_session", here.session_cookie().rpartition(".")[0])
    stored = await redis.get(key)
    await here.get("/chat/")
    assert await redis.get(key) == stored  # seen less than a minute ago: no write
    data = json.loads(stored)
    data["session"]["seen"] = time.time() - 61
    await redis.set(key, json.dumps(data), keepttl=True)
    started = time.time()
    await here.get("/chat/")
    assert json.loads(await redis.get(key))["session"]["seen"] >= started


def test_browser_summaries_are_short_and_made_of_known_words():
    chrome = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
    )
    safari = (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
    )
    assert summary(chrome) == "Chrome 126 on Windows"
    assert summary(chrome.replace("Safari/537.36", "Safari/537.36 Edg/126.0")) == (
        "Edge 126 on Windows"
    )
    assert summary(safari) == "Safari 17 on iOS"
    assert summary(FIREFOX) == "Firefox 128 on Linux"
    assert summary("<script>alert(1)</script>") == "Unknown browser"
    assert summary(None) == "Unknown browser"
    assert summary("Firefox/" + "9" * 10_000) == "Firefox 99999"


# -- the header ------------------------------------------------------------------------


async def test_the_header_links_the_account_pages_for_logged_in_people_only(ann_twice, client):
    here, _ = ann_twice
    page = (await here.get("/chat/")).body
    assert 'href="/account/sessions/"' in page and 'href="/account/password/"' in page
    anonymous = (await client.get("/login/")).body
    assert "/account/" not in anonymous


# -- sign-in audit ---------------------------------------------------------------------


async def test_sign_ins_failures_lockouts_and_logouts_are_audited_with_the_address(
    app_factory, redis_url
):
    client = await app_factory(redis_url, accounts={"login_failures_per_user": 1})
    await make_user(client, "ann")
    ann = client
    assert (await ann.login("ann", "wrong-pass-9")).status == 400
    assert (await ann.login("ann", "wrong-pass-9")).status == 429
    assert (await ann.login("zed")).status == 400
    entries = await signins(client)
    actions = [(e.action, e.target) for e in entries]
    assert ("login failed", "ann") in actions
    assert ("login throttled", "ann") in actions
    assert ("login failed", "zed") in actions
    assert all(e.address == "127.0.0.1" and e.ts > 0 for e in entries)


async def test_login_logout_password_change_and_revocations_are_audited(ann_twice):
    here, there = ann_twice
    client = here
    await change_password(here, current="wrong-pass-9")
    await change_password(here)
    assert (await there.login("ann", NEW_PASSWORD)).status == 302
    text = (await here.get("/account/sessions/")).body
    current = re.search(r'data-handle="([0-9a-f]{32})"\s+aria-current', text).group(1)
    other = next(h for h in HANDLE_RE.findall(text) if h != current)
    await post(here, f"/account/sessions/{other}/end")
    assert (await there.login("ann", NEW_PASSWORD)).status == 302
    await post(here, "/account/sessions/end-others")
    await here.logout()
    actions = [e.action for e in reversed(await signins(client))]
    assert actions == [
        "login",
        "login",
        "password change failed",
        "password changed",
        "login",
        "session ended",
        "login",
        "other sessions ended",
        "logout",
    ]
    # Kept apart from the admin actions, which a flood of failures cannot push out.
    assert await AuditLog(client.app[store_key].raw).recent() == []


async def test_long_or_strange_usernames_are_cut_and_cleaned_in_the_audit(client):
    auth = client
    name = "<b>x</b>\r\nforged" + "y" * 500
    assert (await auth.login(name, "wrong-pass-9")).status == 400
    (entry,) = await signins(client)
    assert len(entry.target) <= 41 and entry.target.endswith("…")
    assert "\n" not in entry.target and "\r" not in entry.target


async def test_the_admin_page_shows_the_sign_ins_escaped(app_factory, redis_url):
    client = await app_factory(redis_url)
    await make_user(client, "boss", superuser=True)
    auth = client
    assert (await auth.login("<img src=x>", "wrong-pass-9")).status == 400
    assert (await auth.login("boss")).status == 302
    page = (await client.get("/admin/")).body
    section = page[page.index('id="signins"') :]
    assert 'data-signin="login failed"' in section
    assert "&lt;img src=x&gt;" in section and "<img src=x>" not in page
    assert "127.0.0.1" in section


# -- every worker -----------------------------------------------------------------------


async def end_from_sessions_page(person: Client, base: str, path: str) -> int:
    page = (await person.get(base + "/account/sessions/")).body
    token = CSRF_RE.search(page).group(1)
    if path == "other":
        current = re.search(r'data-handle="([0-9a-f]{32})"\s+aria-current', page).group(1)
        handle = next(h for h in HANDLE_RE.findall(page) if h != current)
        path = f"/account/sessions/{handle}/end"
    response = await person.post(base + path, data={"csrf_token": token})
    return response.status


@pytest.mark.multiprocess
@pytest.mark.parametrize("how", ["one session", "everywhere else", "password change"])
async def test_ending_a_session_closes_its_socket_on_the_other_worker(redis_url, how):
    with app_pair(redis_url) as (one, two):
        async with Client(one.url, "ann") as laptop, Client(one.url, "ann") as phone:
            doomed = await phone.join("lobby", base=two.url)
            await doomed.next("history")
            loop = asyncio.get_running_loop()
            started = loop.time()
            if how == "one session":
                assert await end_from_sessions_page(laptop, one.url, "other") == 302
            elif how == "everywhere else":
                path = "/account/sessions/end-others"
                assert await end_from_sessions_page(laptop, one.url, path) == 302
            else:
                page = (await laptop.get(one.url + "/account/password/")).body
                data = {
                    "csrf_token": CSRF_RE.search(page).group(1),
                    "current_password": PASSWORD,
                    "password": NEW_PASSWORD,
                    "password2": NEW_PASSWORD,
                }
                response = await laptop.post(one.url + "/account/password/", data=data)
                assert response.status == 302
            assert await doomed.closed(timeout=1.0) == 1008
            assert loop.time() - started < 1.0
            # The laptop stays signed in on both workers.
            for base in (one.url, two.url):
                response = await laptop.get(base + "/chat/")
                assert response.status == 200
