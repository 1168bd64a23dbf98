"""The chat socket in one process against a real Redis: frames, history, resume, limits."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from chatapp.app import create_app

from .client import Client
from .conftest import make_config
from .support import RawSocket, RedisServer, until


@pytest.fixture
async def base(start_server) -> str:
    return await start_server()


async def test_first_frame_is_history_then_presence(base):
    async with Client(base, "ann") as ann:
        sock = await ann.join("lobby")
        assert await sock.frame() == {
            "type": "history",
            "messages": [],
            "truncated": False,
            "more": False,
            "rev": 0,
        }
        assert await sock.frame() == {"type": "presence", "users": ["ann"], "count": 1}


async def test_message_reaches_everyone_with_all_fields(base):
    async with Client(base, "ann") as ann, Client(base, "ben") as ben:
        a, b = await ann.join("lobby"), await ben.join("lobby")
        await a.send("hello", client_id="c-1")
        got = await b.next("message")
        echo = await a.next("message")
        assert got == echo
        assert got["id"] == 1
        assert got["room"] == "lobby"
        assert got["username"] == "ann"
        assert got["text"] == "hello"
        assert got["client_id"] == "c-1"
        assert isinstance(got["ts"], float)


async def test_seed_message_frame_is_accepted(base):
    async with Client(base, "ann") as ann:
        sock = await ann.join("lobby")
        await sock.ws.send_json({"message": "from the seed"})
        got = await sock.next("message")
        assert got["text"] == "from the seed"
        assert got["client_id"] is None


async def test_hundred_messages_arrive_in_order_with_consecutive_ids(base):
    async with Client(base, "ann") as ann, Client(base, "ben") as ben:
        a, b = await ann.join("lobby"), await ben.join("lobby")
        for i in range(100):
            await a.send(f"m{i}")
        got = await b.messages(100)
        assert [m["text"] for m in got] == [f"m{i}" for i in range(100)]
        assert [m["id"] for m in got] == list(range(1, 101))


async def test_late_joiner_gets_whole_history_in_order(base):
    async with Client(base, "ann") as ann, Client(base, "cat") as cat:
        a = await ann.join("lobby")
        for i in range(5):
            await a.send(f"m{i}")
        await a.messages(5)
        c = await cat.join("lobby")
        history = await c.next("history")
        assert [m["text"] for m in history["messages"]] == [f"m{i}" for i in range(5)]
        assert [m["id"] for m in history["messages"]] == [1, 2, 3, 4, 5]
        assert history["truncated"] is False


async def test_after_sends_exactly_the_missed_messages(base):
    async with Client(base, "ann") as ann:
        a = await ann.join("lobby")
        for i in range(6):
            await a.send(f"m{i}")
        await a.messages(6)
        again = await ann.join("lobby", after=4)
        history = await again.next("history")
        assert [m["id"] for m in history["messages"]] == [5, 6]
        assert history["truncated"] is False
        up_to_date = await ann.join("lobby", after=6)
        assert (await up_to_date.next("history"))["messages"] == []


async def test_after_older_than_held_history_is_truncated(start_server):
    base = await start_server(chat={"history_limit": 3})
    async with Client(base, "ann") as ann:
        a = await ann.join("lobby")
        for i in range(6):
            await a.send(f"m{i}")
        await a.messages(6)
        full = await ann.join("lobby")
        assert [m["id"] for m in (await full.next("history"))["messages"]] == [4, 5, 6]
        late = await ann.join("lobby", after=1)
        history = await late.next("history")
        assert [m["id"] for m in history["messages"]] == [4, 5, 6]
        assert history["truncated"] is True
        exact = await ann.join("lobby", after=3)
        history = await exact.next("history")
        assert [m["id"] for m in history["messages"]] == [4, 5, 6]
        assert history["truncated"] is False


# "²" and "①" pass str.isdigit() but are no number int() reads: 400, never 500.
@pytest.mark.parametrize("after", ["-3", "²", "①", "1e3", "+1", "1_000", "9" * 19])
async def test_bad_after_is_refused(base, after):
    async with Client(base, "ann") as ann:
        with pytest.raises(aiohttp.WSServerHandshakeError) as error:
            await ann.join("lobby", after=after)
        assert error.value.status == 400


@pytest.mark.parametrize("room", ["lobby", "no-such!room"])
async def test_handshake_without_session_is_forbidden(base, room):
    async with Client(base) as anonymous:
        with pytest.raises(aiohttp.WSServerHandshakeError) as error:
            await anonymous.join(room)
        assert error.value.status == 403


async def test_handshake_of_a_disabled_user_is_forbidden(base, redis_server):
    async with Client(base, "ann") as ann:
        await (await ann.join("lobby")).frame()  # the cookie works ...
        redis_server.client().hset("chatapp:{users}:ann", "disabled", "1")
        with pytest.raises(aiohttp.WSServerHandshakeError) as error:
            await ann.join("lobby")  # ... until the user is disabled
        assert error.value.status == 403


async def test_handshake_while_redis_is_down_is_503_with_one_log_line(aiohttp_server, caplog):
    """The session cannot be read: "come back later", not a 500 and a traceback."""
    server = RedisServer().start()
    try:
        app = await aiohttp_server(create_app(make_config(server.url)))
        base = str(app.make_url("")).rstrip("/")
        async with Client(base, "ann") as ann:
            await (await ann.join("lobby")).frame()
            server.kill()
            with pytest.raises(aiohttp.WSServerHandshakeError) as error:
                await ann.join("lobby")
            assert error.value.status == 503
        refused = [r for r in caplog.records if "refused socket" in r.getMessage()]
        assert refused and "Redis unavailable" in refused[0].getMessage()
        assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    finally:
        server.cleanup()


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:1", None])
async def test_handshake_from_foreign_or_missing_origin_is_forbidden(base, origin):
    async with Client(base, "ann") as ann:
        with pytest.raises(aiohttp.WSServerHandshakeError) as error:
            await ann.join("lobby", origin=origin or "")  # "": no Origin header
        assert error.value.status == 403


async def test_configured_origin_is_accepted(start_server):
    base = await start_server(security={"allowed_origins": ["https://chat.example.com"]})
    async with Client(base, "ann") as ann:
        sock = await ann.join("lobby", origin="https://chat.example.com")
        assert (await sock.frame())["type"] == "history"
        with pytest.raises(aiohttp.WSServerHandshakeError) as error:
            await ann.join("lobby")  # its own host is no longer enough
        assert error.value.status == 403


@pytest.mark.parametrize("room", ["9lives", "a-b", "x" * 65])
async def test_handshake_for_bad_room_name_is_404(base, room):
    async with Client(base, "ann") as ann:
        with pytest.raises(aiohttp.WSServerHandshakeError) as error:
            await ann.join(room)
        assert error.value.status == 404


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_frame"),
        ('"text"', "bad_frame"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "message"}', "bad_frame"),
        ('{"type": "message", "text": 42}', "bad_frame"),
        ('{"type": "message", "text": "   "}', "empty_message"),
        ('{"type": "message", "text": "hi", "client_id": 7}', "bad_frame"),
        ('{"type": "message", "text": "\\ud800"}', "bad_frame"),
        ("[" * 5000 + "]" * 5000, "bad_json"),
    ],
)
async def test_bad_frame_gets_error_and_socket_keeps_working(base, raw, code):
    async with Client(base, "ann") as ann:
        sock = await ann.join("lobby")
        await sock.ws.send_str(raw)
        error = await sock.next("error")
        assert error["code"] == code
        assert error["detail"]
        await sock.send("still here")
        assert (await sock.next("message"))["text"] == "still here"


async def test_binary_frame_gets_error(base):
    async with Client(base, "ann") as ann:
        sock = await ann.join("lobby")
        await sock.ws.send_bytes(b"\x00\x01")
        assert (await sock.next("error"))["code"] == "bad_frame"


async def test_too_long_message_is_refused_and_not_stored(start_server):
    base = await start_server(chat={"max_message_length": 10})
    async with Client(base, "ann") as ann:
        sock = await ann.join("lobby")
        await sock.send("x" * 11, client_id="long")
        error = await sock.next("error")
        assert error["code"] == "message_too_long"
        await sock.send("x" * 10)
        assert (await sock.next("message"))["id"] == 1  # nothing was stored before


async def test_flood_meets_rate_limit_and_nothing_is_stored(start_server):
    base = await start_server(chat={"rate_limit_messages": 5, "rate_limit_seconds": 60})
    async with Client(base, "ann") as ann:
        sock = await ann.join("lobby")
        for i in range(8):
            await sock.send(f"m{i}", client_id=f"c{i}")
        frames = [await sock.frame() for _ in range(8 + 2)]
        stored = [f for f in frames if f["type"] == "message"]
        limited = [f for f in frames if f["type"] == "error"]
        assert [m["id"] for m in stored] == [1, 2, 3, 4, 5]
        assert [e["code"] for e in limited] == ["rate_limited"] * 3
        assert [e["client_id"] for e in limited] == ["c5", "c6", "c7"]
        late = await ann.join("lobby")
        assert len((await late.next("history"))["messages"]) == 5


async def test_oversized_frame_closes_with_1009(start_server):
    base = await start_server(chat={"max_frame_bytes": 1024})
    async with Client(base, "ann") as ann:
        sock = await ann.join("lobby")
        await sock.ws.send_str('{"type": "message", "text": "' + "x" * 2000 + '"}')
        assert await sock.closed() == 1009


async def test_presence_counts_a_person_with_two_sockets_once(base):
    async with Client(base, "ann") as ann, Client(base, "ben") as ben:
        a1 = await ann.join("lobby")
        await ann.join("lobby")
        b = await ben.join("lobby")
        presence = await b.presence(["ann", "ben"])
        assert presence == {"type": "presence", "users": ["ann", "ben"], "count": 2}
        await a1.presence(["ann", "ben"])
        await b.close()
        await a1.presence(["ann"])


async def test_presence_never_counts_a_second_socket_as_a_second_person(base):
    async with Client(base, "ann") as ann, Client(base, "ben") as ben:
        first = await ann.join("lobby")
        for _ in range(3):
            more = await ann.join("lobby")
            await more.next("presence")  # this socket's join has been announced
        # A marker: every presence frame about ann's sockets comes before ben's.
        await ben.join("lobby")
        marker = await first.presence(["ann", "ben"])
        assert marker["count"] == 2
        frames = [f for f in first.seen if f["type"] == "presence"][:-1]
        assert len(frames) >= 4  # one per socket of ann's
        assert all(f["users"] == ["ann"] and f["count"] == 1 for f in frames)


async def test_a_burst_of_joins_gets_no_server_error(start_server):
    """Hundreds of sockets joining at once queue for Redis; none gets a 500 or a close."""
    base = await start_server(chat={"max_sockets_per_user": 1000})
    async with Client(base, "ann") as ann:
        socks = await asyncio.gather(*(ann.join("lobby") for _ in range(250)))
        firsts = await asyncio.gather(*(s.frame(timeout=30) for s in socks))
        assert {f["type"] for f in firsts} == {"history"}
        presence = await asyncio.gather(*(s.next("presence", timeout=30) for s in socks))
        assert {p["count"] for p in presence} == {1}


async def test_room_list_shows_live_counts(base):
    async with Client(base, "ann") as ann, Client(base, "ben") as ben:
        a = await ann.join("lobby")
        b = await ben.join("lobby")
        q = await ann.join("quiet")
        await a.presence(["ann", "ben"])
        await q.presence(["ann"])
        data = await ann.json("/api/rooms")
        counts = {r["name"]: r["count"] for r in data["rooms"]}
        assert counts == {"lobby": 2, "quiet": 1}
        assert next(r["name"] for r in data["rooms"]) in ("lobby", "quiet")
        page = (await ann.get("/chat/")).body
        assert 'data-room="lobby"' in page
        assert '<span class="count" data-count>2</span>' in page
        await b.close()


async def test_room_page_renders_history_escaped(base):
    async with Client(base, "ann") as ann:
        sock = await ann.join("lobby")
        await sock.send("<img src=x onerror=alert(1)>")
        await sock.next("message")
        page = (await ann.get("/chat/lobby/")).body
        assert "&lt;img src=x onerror=alert(1)&gt;" in page
        assert "<img src=x" not in page


async def test_room_page_for_bad_name_is_404(base):
    async with Client(base, "ann") as ann:
        assert (await ann.get("/chat/9bad/")).status == 404


async def test_empty_room_keeps_history_for_the_configured_ttl(start_server, redis_server):
    base = await start_server(chat={"empty_room_ttl": 3600})
    async with Client(base, "ann") as ann:
        sock = await ann.join("lobby")
        await sock.send("kept")
        await sock.next("message")
        await sock.close()
        r = redis_server.client()
        await until(lambda: r.ttl("chatapp:{room:lobby}:history") > 0, 5, "the history's expiry")
        assert 3500 < r.ttl("chatapp:{room:lobby}:history") <= 3600
        again = await ann.join("lobby")
        assert [m["text"] for m in (await again.next("history"))["messages"]] == ["kept"]
        assert r.ttl("chatapp:{room:lobby}:history") == -1  # occupied again: no expiry


async def test_empty_room_ttl_zero_deletes_the_room(start_server, redis_server):
    base = await start_server(chat={"empty_room_ttl": 0})
    async with Client(base, "ann") as ann:
        sock = await ann.join("lobby")
        await sock.send("gone soon")
        await sock.next("message")
        await sock.close()
        r = redis_server.client()
        await until(lambda: not r.exists("chatapp:{room:lobby}:history"), 5, "the room deleted")
        data = await ann.json("/api/rooms")
        assert data["rooms"] == []
        again = await ann.join("lobby")
        assert (await again.next("history"))["messages"] == []


async def test_reader_that_stops_reading_is_closed_and_the_others_get_everything(start_server):
    """A socket that never reads is closed once too much is unsent; the others get every
    message in order. (That they stay fast meanwhile is measured, as a latency ratio, in
    test_failure_clients.py, and in the benchmarks: not by a wall-clock bound here.)"""
    base = await start_server(chat={"send_buffer_bytes": 256 * 1024})
    async with Client(base, "ann") as ann, Client(base, "ben") as ben:
        a, b = await ann.join("lobby"), await ben.join("lobby")
        stuck = await RawSocket.open(ben, "lobby")
        try:
            await until(lambda: sockets_open(ann, 3), 5, "the stuck socket in the room")
            # 2,000 frames of 3 kB overflow the kernel buffers (up to 4 MiB on loopback),
            # so the stuck socket's queue must fill.
            text = "y" * 3000
            echoes = asyncio.create_task(a.messages(2000, timeout=60))  # the sender reads too
            sender = asyncio.create_task(_send_many(a, text, 2000))
            received = await b.messages(2000, timeout=60)
            await sender
            await echoes
            assert [m["id"] for m in received] == list(range(1, 2001))
            assert await stuck.closed_by_server(timeout=10)
        finally:
            stuck.close()


async def _send_many(sock, text: str, count: int) -> None:
    for i in range(count):
        await sock.send(text)
        if i % 100 == 0:
            await asyncio.sleep(0)  # let the readers run (a yield, not a wait)


async def sockets_open(client: Client, count: int) -> bool:
    """True when the worker's /metrics counts `count` open chat sockets."""
    return f"chatapp_sockets {count}\n" in (await client.get("/metrics")).body
