"""Why a socket is refused, in one process: /api/socket-check and the Upgrade check.

End to end through nginx (the old `$host` recipe, a proxy that strips
Upgrade) in tests/test_deploy.py.
"""

from __future__ import annotations

from urllib.parse import quote

import aiohttp
import pytest
from yarl import URL

from .client import Client


async def check(person: Client, origin: str) -> dict:
    return await person.json(f"/api/socket-check?origin={quote(origin, safe='')}")


async def test_socket_check_answers_as_the_handshake_would(start_server):
    base = await start_server()
    port = URL(base).port
    async with Client(base, "ann") as ann:
        own = await check(ann, base)
        assert own["allowed"] is True
        assert own["host"] == f"127.0.0.1:{port}"
        assert own["origins_configured"] is False
        await (await ann.join("lobby", origin=base)).next("history")
        # A proxy that dropped the port: the Host the app sees lacks it.
        dropped = await ann.get(
            f"/api/socket-check?origin={quote(base, safe='')}", headers={"Host": "127.0.0.1"}
        )
        assert dropped.json() == {
            "origin": base,
            "allowed": False,
            "host": "127.0.0.1",
            "forwarded_proto": None,
            "origins_configured": False,
        }
        foreign = await check(ann, "http://evil.example")
        assert foreign["allowed"] is False
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await ann.join("lobby", origin="http://evil.example")
        assert refused.value.status == 403


async def test_socket_check_follows_the_configured_origins(start_server):
    base = await start_server(security={"allowed_origins": ["https://chat.example.com"]})
    async with Client(base, "ann") as ann:
        assert (await check(ann, "https://chat.example.com"))["allowed"] is True
        answer = await check(ann, base)
        assert answer["allowed"] is False and answer["origins_configured"] is True


async def test_socket_check_is_for_logged_in_people_and_needs_an_origin(start_server):
    base = await start_server()
    async with Client(base) as anonymous:
        response = await anonymous.get(f"/api/socket-check?origin={quote(base, safe='')}")
        assert response.status == 403  # what room.js reads as "logged out"
    async with Client(base, "ann") as ann:
        assert (await ann.get("/api/socket-check")).status == 400


@pytest.mark.parametrize(
    ("headers", "missing"),
    [
        ({"Connection": "Upgrade"}, "no 'Upgrade: websocket' header"),
        ({"Upgrade": "websocket", "Connection": "close"}, "no 'Connection: upgrade' header"),
    ],
)
async def test_a_handshake_a_proxy_stripped_is_refused_naming_the_header(
    start_server, caplog, headers, missing
):
    base = await start_server()
    async with Client(base, "ann") as ann:
        response = await ann.get(
            "/ws/chat/lobby/",
            headers={
                "Origin": base,
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version": "13",
                **headers,
            },
        )
    assert response.status == 400
    assert missing in response.text
    lines = [r.getMessage() for r in caplog.records if "refused socket" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith(f"refused socket to 'lobby': {missing}")
    assert "proxy_set_header" in lines[0]  # and what to set
