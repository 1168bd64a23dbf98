"""Login, logout, session rotation, the login guard and `next` redirects."""

import pytest

from chatapp.accounts import passwords
from chatapp.appkeys import store_key
from chatapp.store.keys import Keys

from .client import PASSWORD, Client


@pytest.fixture
async def bob(client: Client) -> Client:
    assert (await client.register("bob")).status == 302
    assert (await client.logout()).status == 302
    return client


async def test_login_succeeds_and_redirects_to_rooms(bob: Client):
    response = await bob.login("bob")
    assert response.status == 302
    assert response.headers["Location"] == "/chat/"


async def test_login_is_case_insensitive_for_the_name(bob: Client):
    assert (await bob.login("BOB")).status == 302
    page = await bob.get("/chat/")
    assert "<strong>bob</strong>" in page.body


@pytest.mark.parametrize(("username", "password"), [("bob", "wrong-pass-1"), ("nobody", PASSWORD)])
async def test_login_failure_shows_one_message(bob: Client, username, password):
    response = await bob.login(username, password)
    assert response.status == 400
    assert "Please enter a correct username and password" in response.text


async def test_unknown_user_costs_a_bcrypt_check_like_a_wrong_password(bob, monkeypatch):
    calls = []
    real = passwords.check_password

    def counting(password, hashed):
        calls.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(passwords, "check_password", counting)
    await bob.login("bob", "wrong-pass-1")
    await bob.login("nobody", "wrong-pass-1")
    assert len(calls) == 2
    # Same algorithm and cost for both, so both take one bcrypt run.
    assert calls[0][:7] == calls[1][:7] == "$2b$04$"


async def test_anonymous_chat_page_redirects_to_login_with_next(client):
    response = await client.get("/chat/lobby/")
    assert response.status == 302
    assert response.headers["Location"] == "/login/?next=/chat/lobby/"


@pytest.mark.parametrize("path", ["/chat/", "/admin/"])
async def test_anonymous_protected_pages_redirect(client, path):
    response = await client.get(path)
    assert response.status == 302
    assert response.headers["Location"] == f"/login/?next={path}"


async def test_login_honours_same_site_next(bob: Client):
    response = await bob.login("bob", next_url="/chat/lobby/")
    assert response.headers["Location"] == "/chat/lobby/"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example/",
        "http:/evil.example",
        "javascript:alert(1)",
        "%2F%2Fevil.example",
        "evil.example",
    ],
)
async def test_login_ignores_offsite_next(bob: Client, target):
    response = await bob.login("bob", next_url=target)
    assert response.status == 302
    assert response.headers["Location"] == "/chat/"


async def test_login_rotates_the_session(bob: Client):
    await bob.get("/login/")
    assert bob.session_cookie() is None  # viewing the form starts no session
    await bob.login("bob")
    before = bob.session_cookie()
    assert before
    # Logging in again while logged in (the form's token is the session's now).
    again = {"username": "bob", "password": bob.password}
    assert (await bob.submit("/login/", again, token_from="/chat/")).status == 302
    after = bob.session_cookie()
    assert after and after != before
    # The session logged in before is gone from Redis: replaying it is anonymous.
    bob.use_cookie(before)
    response = await bob.get("/chat/")
    assert response.status == 302
    # Control: the same way of sending a cookie works with the live one.
    bob.use_cookie(after)
    assert (await bob.get("/chat/")).status == 200


async def test_logout_ends_the_server_side_session(bob: Client):
    await bob.login("bob")
    cookie = bob.session_cookie()
    response = await bob.logout()
    assert response.status == 302
    assert response.headers["Location"] == "/login/"
    assert (await bob.get("/chat/")).status == 302
    bob.use_cookie(cookie)
    replay = await bob.get("/chat/")
    assert replay.status == 302
    assert replay.headers["Location"].startswith("/login/")


async def test_logout_needs_post(bob: Client):
    await bob.login("bob")
    response = await bob.get("/logout/")
    assert response.status == 405
    assert (await bob.get("/chat/")).status == 200


async def test_forged_session_cookie_is_anonymous(client):
    client.use_cookie("abc.def")
    response = await client.get("/chat/")
    assert response.status == 302


async def test_session_cookie_flags(client: Client):
    response = await client.register("gina")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie


async def test_secure_cookie_when_configured(app_factory, redis_url):
    client = await app_factory(redis_url, session={"secure": True})
    response = await client.get("/login/")
    assert "Secure" in response.headers["Set-Cookie"]


@pytest.mark.parametrize("cookie_name", ["chatapp_session", "other_cookie"])
async def test_a_session_lives_under_the_key_keys_session_names(
    app_factory, redis_url, cookie_name
):
    client = await app_factory(redis_url, session={"cookie_name": cookie_name})
    assert (await client.register("hana")).status == 302
    cookie = client.session_cookie(cookie_name)
    session_id = cookie.rpartition(".")[0]
    redis = client.app[store_key].raw
    assert await redis.exists(Keys.session(cookie_name, session_id)) == 1
    assert await redis.sismember(Keys.user_sessions("hana"), session_id)


async def test_session_cookie_holds_only_an_opaque_id(bob: Client):
    await bob.login("bob")
    assert "bob" not in bob.session_cookie()


async def test_login_page_when_logged_in_goes_to_rooms(bob: Client):
    await bob.login("bob")
    response = await bob.get("/login/")
    assert response.status == 302


async def test_bcrypt_runs_off_the_event_loop(app_factory, redis_url):
    """At cost 13 one hash takes ~0.5 s; the loop the server runs on must keep ticking."""
    import asyncio

    client = await app_factory(redis_url, accounts={"bcrypt_rounds": 13})
    loop = asyncio.get_running_loop()
    gaps: list[float] = []

    async def ticker():
        last = loop.time()
        while True:
            await asyncio.sleep(0.01)  # the measurement: a tick every 10 ms
            now = loop.time()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    started = loop.time()
    response = await client.register("carol")  # one hash at cost 13
    elapsed = loop.time() - started
    ticking.cancel()
    assert response.status == 302
    assert elapsed > 0.25, "cost 13 should be slow enough to show a blocked loop"
    assert max(gaps) < elapsed / 2, f"the loop stalled {max(gaps):.2f}s of {elapsed:.2f}s"


def test_session_cookie_is_read_from_among_other_cookies():
    from chatapp.accounts.sessions import cookie_value

    header = "theme=dark; xsession=1;session=abc.def ; other=1=2"
    assert cookie_value(header, "session") == "abc.def"
    assert cookie_value(header, "other") == "1=2"
    assert cookie_value(header, "missing") is None
    assert cookie_value("", "session") is None
    assert cookie_value("session=old; session=new", "session") == "new"
