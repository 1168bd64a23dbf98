"""Anonymous visitors leave no lasting server-side state (issue 13, item 3).

The login and register forms of a visitor without a session carry the value
of a signed CSRF cookie (double submit); nothing is written to Redis until
someone logs in.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from yarl import URL

from chatapp.appkeys import store_key
from chatapp.store.keys import Keys

from .client import CSRF_RE, PASSWORD, Client

ANONYMOUS_GETS = 10_000
CSRF_COOKIE = "chatapp_session_csrf"


def cookie_header(response: aiohttp.ClientResponse, name: str) -> str:
    for header in response.headers.getall("Set-Cookie", []):
        if header.startswith(name + "="):
            return header
    raise AssertionError(f"no {name} cookie set")


def cookie_pair(response: aiohttp.ClientResponse, name: str) -> str:
    return cookie_header(response, name).split(";", 1)[0]


async def test_ten_thousand_anonymous_gets_leave_no_redis_key_and_every_form_posts(client, figure):
    redis = client.app[store_key].raw
    accounts = client
    assert (await accounts.register("uma")).status == 302
    client.http.cookie_jar.clear()
    before = set(await redis.keys("*"))
    base = URL(client.base)
    forms: dict[str, tuple[str, str]] = {}  # path -> (page or token, Cookie header)

    async def visit(http: aiohttp.ClientSession, path: str) -> None:
        async with http.get(base.join(URL(path))) as response:
            assert response.status == 200
            forms[path] = (await response.text(), cookie_pair(response, CSRF_COOKIE))

    started = time.perf_counter()
    # No cookie jar: every request is a first visit.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        paths = ["/login/", "/register/"] * (ANONYMOUS_GETS // 2)
        for i in range(0, len(paths), 50):
            await asyncio.gather(*(visit(http, p) for p in paths[i : i + 50]))
    elapsed = time.perf_counter() - started
    # Every key that exists now and did not before, but the chat service's own
    # presence sweep lease (one key, set and expiring every few seconds
    # whatever the traffic).
    new = set(await redis.keys("*")) - before - {Keys.presence_sweep_lease.encode()}
    figure("anonymous GETs", ANONYMOUS_GETS)
    figure("new Redis keys after them", len(new))
    figure("seconds for them (in process)", round(elapsed, 1))
    assert new == set()

    # The forms of those visits still post: log in, and register, with their tokens.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        forms = {p: (CSRF_RE.search(page).group(1), c) for p, (page, c) in forms.items()}
        token, cookie = forms["/login/"]
        data = {"username": "uma", "password": PASSWORD, "csrf_token": token}
        async with http.post(
            base.join(URL("/login/")),
            data=data,
            headers={"Cookie": cookie},
            allow_redirects=False,
        ) as response:
            assert response.status == 302
            assert response.headers["Location"] == "/chat/"
        token, cookie = forms["/register/"]
        data = {"username": "vic", "password": PASSWORD, "password2": PASSWORD}
        async with http.post(
            base.join(URL("/register/")),
            data={**data, "csrf_token": token},
            headers={"Cookie": cookie},
            allow_redirects=False,
        ) as response:
            assert response.status == 302


async def test_a_cookieless_form_page_sets_a_signed_csrf_cookie_and_no_session(client):
    response = await client.get("/login/")
    header = cookie_header(response, CSRF_COOKIE)
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header
    assert "Secure" not in header
    assert not any(h.startswith("chatapp_session=") for h in response.headers.getall("Set-Cookie"))
    value = header.split(";", 1)[0].split("=", 1)[1]
    token = CSRF_RE.search(response.body).group(1)
    assert value.startswith(token + ".")  # the form's token, and its signature


async def test_the_csrf_cookie_is_secure_when_sessions_are(app_factory, redis_url):
    client = await app_factory(redis_url, session={"secure": True})
    response = await client.get("/register/")
    assert "Secure" in cookie_header(response, CSRF_COOKIE)


async def test_a_second_visit_keeps_the_token(client):
    first = CSRF_RE.search((await client.get("/login/")).body).group(1)
    response = await client.get("/register/")
    assert CSRF_RE.search(response.body).group(1) == first
    assert not response.headers.getall("Set-Cookie", [])  # nothing new to set


@pytest.mark.parametrize("forge", ["signature", "token"])
async def test_a_forged_csrf_cookie_or_token_is_refused(client, forge):
    response = await client.get("/login/")
    token = CSRF_RE.search(response.body).group(1)
    value = cookie_pair(response, CSRF_COOKIE).split("=", 1)[1]
    if forge == "signature":
        # The attacker's own value, and a signature that is not the server's.
        token = "attacker-chosen"
        value = f"{token}.{'0' * 32}"
    else:
        token = token[:-1] + ("A" if token[-1] != "A" else "B")
    client.http.cookie_jar.clear()
    response = await client.post(
        "/login/",
        data={"username": "x", "password": "y", "csrf_token": token},
        headers={"Cookie": f"{CSRF_COOKIE}={value}"},
    )
    assert response.status == 403
    assert "CSRF check failed" in response.text


async def test_the_anonymous_token_is_not_accepted_once_logged_in(client: Client):
    anonymous = await client.csrf("/login/")
    assert (await client.register("wes")).status == 302
    response = await client.post("/logout/", data={"csrf_token": anonymous})
    assert response.status == 403  # logged in, only the session's token counts
