"""Rooms across real processes sharing one Redis: two app processes, gunicorn, kill -9, SIGTERM."""

from __future__ import annotations

import signal
import time

import pytest

from .client import Client, Socket
from .support import (
    AppProcess,
    GunicornProcess,
    app_pair,
    socket_owner,
    start_apps,
    until,
    until_sync,
)

pytestmark = pytest.mark.multiprocess

FAST = {"CHATAPP_CHAT_RATE_LIMIT_MESSAGES": "1000000"}
PRESENCE_TTL = 2.0  # chat.presence_ttl where a test waits for a killed worker's records


@pytest.fixture(scope="module")
def processes(redis_server):
    """Two `python -m chatapp` processes on different ports, one private Redis."""
    with app_pair(redis_server.url, **FAST) as processes:
        yield processes


@pytest.fixture
def pair(processes, redis_url, room):
    """The two processes' base URLs, with Redis emptied for this test, and a fresh room."""
    return processes[0].url, processes[1].url, room


async def room_counts(person: Client, base: str) -> dict[str, int]:
    rooms = (await person.json(base + "/api/rooms"))["rooms"]
    return {r["name"]: r["count"] for r in rooms}


async def test_message_sent_on_one_process_reaches_the_other_with_every_field(pair):
    one, two, room = pair
    async with Client(one, "ann") as ann, Client(two, "ben") as ben:
        a, b = await ann.join(room), await ben.join(room)
        await a.presence(["ann", "ben"])
        await a.send("hello from one", client_id="c-42")
        got = await b.next("message")
        echo = await a.next("message")
        assert got == echo  # one path, one frame
        assert got["id"] == 1
        assert got["room"] == room
        assert got["username"] == "ann"
        assert got["text"] == "hello from one"
        assert echo["client_id"] == "c-42"
        assert abs(got["ts"] - time.time()) < 5


async def test_seed_message_frame_crosses_processes(pair):
    one, two, room = pair
    async with Client(one, "ann") as ann, Client(two, "ben") as ben:
        a, b = await ann.join(room), await ben.join(room)
        await a.presence(["ann", "ben"])
        await b.ws.send_json({"message": "the seed's frame"})
        got = await a.next("message")
        assert (got["username"], got["text"], got["id"]) == ("ben", "the seed's frame", 1)


async def test_hundred_messages_arrive_in_order_with_consecutive_ids_on_both(pair):
    one, two, room = pair
    async with (
        Client(one, "ann") as ann,
        Client(two, "ben") as ben,
        Client(one, "cat") as cat,
    ):
        a, b, c = await ann.join(room), await ben.join(room), await cat.join(room)
        await a.presence(["ann", "ben", "cat"])
        for i in range(100):
            await a.send(f"m{i}")
        for sock in (a, b, c):
            got = await sock.messages(100)
            assert [m["text"] for m in got] == [f"m{i}" for i in range(100)]
            assert [m["id"] for m in got] == list(range(1, 101))


async def test_late_joiner_on_the_other_process_gets_history_and_resumes_after(pair):
    one, two, room = pair
    async with Client(one, "ann") as ann, Client(two, "dan") as dan:
        a = await ann.join(room)
        for i in range(10):
            await a.send(f"m{i}")
        await a.messages(10)
        late = await dan.join(room)
        history = await late.next("history")
        assert [m["id"] for m in history["messages"]] == list(range(1, 11))
        assert history["truncated"] is False
        resumed = await dan.join(room, after=7)
        assert [m["id"] for m in (await resumed.next("history"))["messages"]] == [8, 9, 10]


async def test_presence_and_room_counts_agree_across_processes(pair):
    one, two, room = pair
    async with Client(one, "ann") as ann, Client(two, "ben") as ben:
        a = await ann.join(room)
        await ann.join(room, base=two)  # a second tab, on the other process
        b = await ben.join(room)
        for sock in (a, b):
            frame = await sock.presence(["ann", "ben"])
            assert frame["count"] == 2
        for base in (one, two):
            assert await room_counts(ann, base) == {room: 2}
            page = (await ann.get(base + "/chat/")).body
            assert '<span class="count" data-count>2</span>' in page
        await b.close()
        await a.presence(["ann"])
        assert await room_counts(ann, two) == {room: 1}


async def test_members_of_a_process_killed_with_sigkill_disappear_within_the_presence_ttl(
    redis_url,
):
    """kill -9 one of two processes: its people leave presence and counts once their
    records expire: chat.presence_ttl after their last refresh (every quarter of it),
    seen by the survivor's next sweep (also every quarter of it)."""
    env = {**FAST, "CHATAPP_CHAT_PRESENCE_TTL": str(PRESENCE_TTL)}
    survivor, victim = start_apps(AppProcess(redis_url, **env), AppProcess(redis_url, **env))
    try:
        async with Client(survivor.url, "ann") as ann, Client(victim.url, "ben") as ben:
            a = await ann.join("doomed")
            await ben.join("doomed")
            await a.presence(["ann", "ben"])
            assert await room_counts(ann, survivor.url) == {"doomed": 2}
            victim.signal(signal.SIGKILL)
            killed = time.monotonic()

            async def ben_gone() -> bool:
                return await room_counts(ann, survivor.url) == {"doomed": 1}

            # Polled, not the next presence frame: two workers' announcements of
            # the joins may arrive in either order, so a stale ["ann"] may be queued.
            await until(ben_gone, 2 * PRESENCE_TTL + 5, "ben's record to expire", 0.02)
            gone_after = time.monotonic() - killed
            await a.presence(["ann"], timeout=PRESENCE_TTL * 1.25 + 1.0)  # the room is told
            # Refreshed at most a quarter of the ttl before the kill (half: scheduling
            # slack), swept at most a quarter of it after the expiry (+1 s of slack).
            assert PRESENCE_TTL / 2 <= gone_after <= PRESENCE_TTL * 1.25 + 1.0
    finally:
        victim.stop()
        survivor.stop()


async def test_sigterm_closes_sockets_with_1001_and_exits_0(redis_url):
    app = AppProcess(redis_url).start()
    try:
        async with Client(app.url, "ann") as ann:
            sockets = [await ann.join("lobby"), await ann.join("other")]
            for sock in sockets:
                await sock.next("presence")
            app.signal(signal.SIGTERM)
            assert [await sock.closed(timeout=10) for sock in sockets] == [1001, 1001]
        assert app.wait(15) == 0
    finally:
        app.stop()
    assert "Traceback" not in app.log()


async def _sockets_on_two_workers(server: GunicornProcess, people: list[Client]):
    """Open sockets until both gunicorn workers hold at least one; return (socket, pid)."""
    pids = until_sync(
        lambda: len(server.worker_pids()) == 2 and server.worker_pids(), 15, "2 gunicorn workers"
    )
    placed: list[tuple[Socket, int]] = []
    for attempt in range(60):
        person = people[attempt % len(people)]
        sock = await person.join("lobby")
        await sock.next("history")
        client_port = sock.port
        owner = socket_owner(server.port, client_port, pids)
        assert owner in pids, f"no worker holds the socket from port {client_port}"
        placed.append((sock, owner))
        if len({pid for _, pid in placed}) == 2:
            return placed
    raise AssertionError("60 sockets all landed on one worker")


async def test_gunicorn_two_workers_carry_messages_across_workers_and_stop_on_sigterm(redis_url):
    server = GunicornProcess(redis_url, workers=2, **FAST).start()
    try:
        async with Client(server.url, "ann") as ann, Client(server.url, "ben") as ben:
            placed = await _sockets_on_two_workers(server, [ann, ben])
            sender = placed[0][0]
            await sender.send("across workers", client_id="g-1")
            for sock, _ in placed:
                got = await sock.next("message")
                assert (got["text"], got["username"], got["id"]) == ("across workers", "ann", 1)
            server.signal(signal.SIGTERM)
            codes = [await sock.closed(timeout=15) for sock, _ in placed]
            assert set(codes) == {1001}
        assert server.wait(20) == 0
    finally:
        server.stop()
    log = server.log()
    assert "2 workers" in log  # the start-up line counts gunicorn's workers
    assert "Traceback" not in log


def test_memory_store_under_two_gunicorn_workers_is_refused_with_the_reason():
    server = GunicornProcess("memory://", workers=2)
    server.launch()
    try:
        # gunicorn binds before its workers boot; they refuse with "failed to boot" (3),
        # on which the master stops instead of respawning them (gunicorn 27 exits 1
        # when both workers fail at once: it halts twice).
        assert server.wait(30) in (1, 3)
    finally:
        server.stop()
    log = server.log()
    assert "memory:// is private to one process" in log
    assert "use a real Redis" in log


def test_unreachable_redis_under_gunicorn_stops_the_master_with_one_line():
    server = GunicornProcess(
        "redis://127.0.0.1:1/0", workers=1, CHATAPP_REDIS_CONNECT_TIMEOUT="1"
    ).launch()
    try:
        assert server.wait(30) == 3  # the worker failed to boot, so the master stops
    finally:
        server.stop()
    log = server.log()
    assert "chatapp: cannot reach Redis at redis://127.0.0.1:1/0" in log
    assert "Traceback" not in log
