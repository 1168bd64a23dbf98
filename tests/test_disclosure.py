"""What the app tells strangers (issue 13, items 10 and 11): /healthz, /metrics, headers.

Each test reproduces what the red team saw: the Redis URL and error in
/healthz, `Server: Python/3.x aiohttp/3.y` on every response, logged-in pages
without `no-store`, no HSTS, and /metrics open to every visitor behind a
proxy on the same machine.
"""

from __future__ import annotations

import asyncio
import base64
import os

import pytest
from yarl import URL

from chatapp.app import create_app

from .conftest import make_config
from .support import RedisServer

# -- item 11: /healthz --------------------------------------------------------------


async def test_healthz_names_the_failing_part_only(aiohttp_client, caplog):
    server = RedisServer().start()
    try:
        client = await aiohttp_client(create_app(make_config(server.url)))
        server.kill()
        response = await client.get("/healthz")
        assert response.status == 503
        body = await response.text()
        assert await response.json() == {"status": "unavailable", "redis": "unavailable"}
        assert str(server.port) not in body and "redis://" not in body
        # The operator still learns what failed, from the log.
        logged = [r.getMessage() for r in caplog.records if "/healthz" in r.getMessage()]
        assert logged and server.url in logged[0]
    finally:
        server.cleanup()


# -- item 11: headers ------------------------------------------------------------------


async def _handshake_headers(client, path: str, cookie: str) -> tuple[str, dict[str, str]]:
    """Open a WebSocket by hand and return its status line and response headers."""
    url = URL(client.base)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: http://{url.host}:{url.port}\r\nCookie: chatapp_session={cookie}\r\n\r\n"
        ).encode()
    )
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode()
    writer.close()
    status, *lines = head.strip().split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


async def test_no_server_version_header_anywhere(app_factory, redis_url):
    client = await app_factory(redis_url)
    anonymous = ["/login/", "/static/css/app.css", "/static/js/room.js", "/nowhere", "/healthz"]
    for path in anonymous:
        response = await client.get(path)
        assert "Server" not in response.headers, path
    assert (await client.register("nina")).status == 302
    token = await client.csrf("/chat/")
    answers = [
        await client.get("/chat/"),
        await client.get("/chat/lobby/"),
        await client.get("/api/rooms"),
        await client.get("/admin/"),  # 403 page
        await client.get("/metrics"),
        await client.post("/chat/", data={"room": "bad name!", "csrf_token": token}),  # 400
        await client.post("/chat/", data={"room": "lobby"}),  # 403 CSRF
    ]
    for response in answers:
        assert "Server" not in response.headers, (response.status, response.body[:200])
    status, headers = await _handshake_headers(client, "/ws/chat/lobby/", client.session_cookie())
    assert status.startswith("HTTP/1.1 101"), status
    assert "server" not in headers


async def test_pages_behind_login_are_not_cached(app_factory, redis_url, redis_server):
    client = await app_factory(redis_url)
    # Anonymous visitors of a page behind login get a redirect, not cached either.
    response = await client.get("/chat/")
    assert response.status == 302
    assert response.headers.get("Cache-Control") == "no-store"
    assert (await client.register("olga")).status == 302
    redis_server.client().hset("chatapp:{users}:olga", "su", "1")
    token = await client.csrf("/chat/")
    for response in (
        await client.get("/chat/"),
        await client.get("/chat/lobby/"),
        await client.get("/api/rooms"),
        await client.get("/admin/"),
        await client.get("/nowhere"),  # a logged-in person's error page names them
        await client.post("/chat/", data={"room": "lobby", "csrf_token": token}),
    ):
        assert response.headers.get("Cache-Control") == "no-store", response.status
    # Static files are the same for everyone: cacheable.
    static = await client.get("/static/css/app.css")
    assert "no-store" not in static.headers.get("Cache-Control", "")


@pytest.mark.parametrize("secure", [True, False])
async def test_hsts_only_when_secure(app_factory, redis_url, secure):
    client = await app_factory(redis_url, session={"secure": secure})
    for path in ("/login/", "/static/css/app.css", "/nowhere", "/healthz"):
        hsts = (await client.get(path)).headers.get("Strict-Transport-Security")
        if secure:
            assert hsts == "max-age=31536000; includeSubDomains", path
        else:
            assert hsts is None, path


# -- item 10: /metrics behind a proxy -----------------------------------------------------

VISITOR = "203.0.113.7"  # a visitor on the internet (TEST-NET-3)


async def test_metrics_behind_a_trusted_proxy_judges_the_forwarded_client(app_factory, redis_url):
    # The test client connects from 127.0.0.1: the proxy on the same machine.
    client = await app_factory(redis_url, security={"trusted_proxies": ["127.0.0.1"]})
    forwarded = await client.get("/metrics", headers={"X-Forwarded-For": VISITOR})
    assert forwarded.status == 403
    # A visitor who forges a loopback hop is still the visitor.
    forged = await client.get("/metrics", headers={"X-Forwarded-For": f"127.0.0.1, {VISITOR}"})
    assert forged.status == 403
    # Loopback counts only for a request that did not come through the proxy.
    through = await client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"})
    assert through.status == 403
    assert (await client.get("/metrics")).status == 200  # Prometheus on this machine


async def test_metrics_behind_a_trusted_proxy_serve_configured_networks(app_factory, redis_url):
    client = await app_factory(
        redis_url,
        security={"trusted_proxies": ["127.0.0.1"], "metrics_networks": ["203.0.113.0/24"]},
    )
    assert (await client.get("/metrics", headers={"X-Forwarded-For": VISITOR})).status == 200
    other = await client.get("/metrics", headers={"X-Forwarded-For": "198.51.100.9"})
    assert other.status == 403


async def test_metrics_behind_an_unconfigured_proxy_are_not_loopback(app_factory, redis_url):
    """The README's nginx before `trusted_proxies` is set: forwarded is not local."""
    client = await app_factory(redis_url)
    response = await client.get("/metrics", headers={"X-Forwarded-For": VISITOR})
    assert response.status == 403
    assert (await client.get("/metrics")).status == 200
