"""Issue 13, item 14 (the parts outside a browser): Origin scheme, 413 for big bodies.

Seen: the socket's Origin check ignored the scheme (`https://host` was
accepted on an http site), and a body over the size limit got 403 "CSRF".
"""

from __future__ import annotations

import aiohttp

from .client import Client


async def _handshake(person: Client, origin: str, **headers: str) -> int:
    """The handshake's status: 101 when the socket opened, else the refusal."""
    url = person.base + "/ws/chat/lobby/"
    try:
        ws = await person.http.ws_connect(url, headers={"Origin": origin, **headers})
    except aiohttp.WSServerHandshakeError as error:
        return error.status
    await ws.close()
    return 101


async def test_origin_with_another_scheme_is_refused(start_server):
    base = await start_server()  # a plain-HTTP site
    host = base.split("://", 1)[1]
    async with Client(base, "ann") as ann:
        assert await _handshake(ann, f"http://{host}") == 101
        assert await _handshake(ann, f"https://{host}") == 403
        # X-Forwarded-Proto from a peer that is not a trusted proxy changes nothing.
        assert await _handshake(ann, f"https://{host}", **{"X-Forwarded-Proto": "https"}) == 403


async def test_origin_scheme_behind_a_trusted_proxy_is_the_forwarded_one(start_server):
    base = await start_server(security={"trusted_proxies": ["127.0.0.1"]})
    host = base.split("://", 1)[1]
    tls = {"X-Forwarded-Proto": "https"}  # nginx: proxy_set_header X-Forwarded-Proto $scheme
    async with Client(base, "ann") as ann:
        assert await _handshake(ann, f"https://{host}", **tls) == 101
        assert await _handshake(ann, f"http://{host}", **tls) == 403
        assert await _handshake(ann, f"http://{host}") == 101  # no header: the connection's


async def test_configured_origins_stay_exact(start_server):
    base = await start_server(security={"allowed_origins": ["https://chat.example.com"]})
    async with Client(base, "ann") as ann:
        assert await _handshake(ann, "https://chat.example.com") == 101
        assert await _handshake(ann, "http://chat.example.com") == 403
        assert await _handshake(ann, "https://chat.example.com:8443") == 403


OVER_LIMIT = "x" * (300 * 1024)  # client_max_size is 256 KiB


async def test_oversized_body_is_413(client: Client):
    # Anonymous: the login form.
    token = await client.csrf("/login/")
    response = await client.post(
        "/login/", data={"username": "ann", "password": OVER_LIMIT, "csrf_token": token}
    )
    assert response.status == 413
    assert response.content_type == "text/html"
    assert "too large" in response.text and "CSRF" not in response.text
    # Logged in: the room form.
    assert (await client.register("ben")).status == 302
    token = await client.csrf("/chat/")
    response = await client.post(
        "/chat/", data={"room": "lobby", "padding": OVER_LIMIT, "csrf_token": token}
    )
    assert response.status == 413
    assert "at most 256 KiB" in response.text
    # Just under the limit is an ordinary form post.
    response = await client.post(
        "/chat/", data={"room": "lobby", "padding": "x" * (200 * 1024), "csrf_token": token}
    )
    assert response.status == 302
