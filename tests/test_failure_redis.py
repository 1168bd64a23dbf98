"""Redis breaks under a running chat: killed, restarted, subscriber connections dropped.

Real processes and real signals: each test starts its own redis-server (so it
may kill it) and two `python -m chatapp` processes on it, and talks to them
through the forms and sockets as browsers do.
"""

from __future__ import annotations

import asyncio
import signal

import pytest
import redis.asyncio as aioredis

from chatapp.chat.subscriber import SUBSCRIBER_PING_AFTER, SUBSCRIBER_PONG_TIMEOUT
from chatapp.store.keys import Keys

from .client import Client
from .failure_support import (
    Follower,
    TcpProxy,
    acked_union,
    check_nothing_lost_or_doubled,
    cross_delivery,
    held_before,
    http_status,
    loop_time,
    settle,
    status_is,
)
from .support import AppProcess, RedisServer, start_apps, until

pytestmark = [pytest.mark.failure, pytest.mark.multiprocess]

# Tests send faster than people do.
ENV = {"CHATAPP_CHAT_RATE_LIMIT_MESSAGES": "1000000"}
RESUME_WITHIN = 5.0  # the bound: delivery flows again within 5 s


async def healthz_until(app: AppProcess, status: int, timeout: float) -> float:
    """Poll the app's /healthz until it answers `status`; the loop time it did."""
    await until(lambda: status_is(app.url, "/healthz", status), timeout, f"healthz {status}")
    return loop_time()


def assert_clean_log(*apps: AppProcess) -> None:
    """Failures are logged as one-line warnings, never as tracebacks."""
    for app in apps:
        log = app.log()
        assert "Traceback" not in log, log[-4000:]
        assert "Error handling request" not in log, log[-4000:]


@pytest.mark.parametrize("persistence", ["none", "aof"])
async def test_redis_killed_mid_chat_and_restarted_two_seconds_later(persistence, figure):
    """Break: SIGKILL redis-server while two app processes hold sockets in a room and
    people keep talking; start it again on the same port 2 s later (empty without
    persistence; with AOF, as it was).

    Must hold: no app process exits; /healthz answers 503 on both while Redis is down
    and 200 after; a message sent while it is down gets an `error` frame `unavailable`
    naming its client_id; within 5 s of Redis answering again, messages flow across both
    processes (each resubscribed by itself); the sockets stay open, and no message that
    was acknowledged (echoed to its sender) is missing or doubled for anyone.
    """
    redis = RedisServer(appendonly=persistence == "aof", appendfsync="everysec").start()
    a, b = AppProcess(redis.url, **ENV), AppProcess(redis.url, **ENV)
    try:
        await asyncio.to_thread(start_apps, a, b)
        async with (
            Client(a.url, "ann") as ann,
            Client(b.url, "ben") as ben,
            Client(a.url, "cat") as cat,
            Client(b.url, "dan") as dan,
        ):
            followers = [await Follower(p, "lobby").start() for p in (ann, ben, cat, dan)]
            stop = asyncio.Event()
            talk = [asyncio.create_task(f.chatter(0.05, stop)) for f in followers]
            await until(lambda: len(acked_union(followers)) >= 40, 10, "some messages")

            killed_at = loop_time()
            redis.kill()
            for app in (a, b):
                await until(lambda app=app: status_is(app.url, "/healthz", 503), 2, "healthz 503")
            # A page needs Redis (the session): 503 "try again", not a 500.
            assert await http_status(a.url, "/chat/", ann) == 503
            # The sender is told its message was not kept (the talkers get the same).
            client_id = await followers[0].send("while Redis is down")
            await until(lambda: client_id in followers[0].refused, 5, "the error frame")
            assert followers[0].refused[client_id] == "unavailable"
            assert "not stored" in followers[0].refusals[client_id]

            # The scenario: Redis stays down 2 s while people keep talking.
            await asyncio.sleep(max(0.0, killed_at + 2.0 - loop_time()))
            await asyncio.to_thread(redis.start)  # same port; returns once it answers PING
            back_at = loop_time()
            for app in (a, b):
                await until(lambda app=app: status_is(app.url, "/healthz", 200), 5, "healthz 200")
            healthy_after = loop_time() - back_at

            def both_ways() -> dict | None:
                flows = cross_delivery(followers, back_at)
                return flows if len(flows) == 2 else None

            flows = await until(both_ways, RESUME_WITHIN + 5, "delivery across both processes")
            await asyncio.sleep(1.0)  # the scenario: keep talking a little after recovery
            stop.set()
            await asyncio.gather(*talk)
            await settle(followers, redis.url, "lobby")

            assert a.running() and b.running(), "an app process exited"
            assert all(f.connects == 1 for f in followers), "a socket was dropped"
            down = [
                code
                for f in followers
                for cid, code in f.refused.items()
                if killed_at + 0.5 < f.sent[cid] < back_at - 0.5
            ]
            assert down and set(down) == {"unavailable"}
            checked = check_nothing_lost_or_doubled(followers)
            resets = [f.name for f in followers if any(h["truncated"] for h in f.histories[1:])]
            if persistence == "none":
                # Redis came back empty, ids start over: every socket was told so by a
                # `truncated` history frame and started over from what Redis holds.
                assert len(resets) == len(followers)
            else:
                assert not resets
            resumed = max(flows.values())
            assert resumed < RESUME_WITHIN, f"delivery resumed {resumed:.2f} s after Redis"
            for f in followers:
                await f.stop()
        assert_clean_log(a, b)
        for app in (a, b):
            assert "subscriber reconnected; resubscribed 1 room(s)" in app.log()
            assert ("Redis lost its history" in app.log()) == (persistence == "none")
        figure("acknowledged messages x followers checked", checked)
        figure("messages refused 'unavailable' while Redis was down", len(down))
        figure("seconds from Redis back to /healthz 200 on both", healthy_after)
        figure("seconds from Redis back to delivery across both processes", resumed)
    finally:
        a.stop()
        b.stop()
        redis.cleanup()


async def test_redis_frozen_with_sigstop_then_resumed(figure):
    """Break: freeze redis-server with SIGSTOP for 8 s while two app processes hold
    sockets in a room and people keep talking (a hung Redis: connections stay open,
    nothing answers), then SIGCONT it.

    Must hold: no app process exits; /healthz answers 503 within its 2 s ping timeout
    while Redis is frozen, and 200 after; a message sent meanwhile gets an `error` frame
    `unavailable` within the Redis client's 5 s socket timeout; within 5 s of Redis
    answering again, messages flow across both processes; no acknowledged message is
    missing or doubled for anyone, and a message refused while frozen that Redis still
    ran when it woke reached everyone or no one.
    """
    redis = RedisServer().start()
    a, b = AppProcess(redis.url, **ENV), AppProcess(redis.url, **ENV)
    try:
        await asyncio.to_thread(start_apps, a, b)
        async with Client(a.url, "ann") as ann, Client(b.url, "ben") as ben:
            followers = [await Follower(p, "lobby").start() for p in (ann, ben)]
            stop = asyncio.Event()
            talk = [asyncio.create_task(f.chatter(0.05, stop)) for f in followers]
            await until(lambda: len(acked_union(followers)) >= 20, 10, "some messages")
            # A socket's frames are handled one by one, each send waiting up to the
            # 5 s socket timeout while Redis hangs: stop talking to time one message.
            stop.set()
            await asyncio.gather(*talk)
            await settle(followers, redis.url, "lobby")

            redis.proc.send_signal(signal.SIGSTOP)
            frozen_at = loop_time()
            answered = await asyncio.gather(
                *(healthz_until(app, 503, 8) for app in (a, b)),
                followers[0].send("while Redis is frozen"),
            )
            healthz_503_after = max(answered[:2]) - frozen_at
            client_id = answered[2]
            await until(lambda: client_id in followers[0].refused, 8, "the error frame")
            refused_after = followers[0].refused_at[client_id] - followers[0].sent[client_id]
            assert followers[0].refused[client_id] == "unavailable"
            # A hung Redis may still run the command when it wakes: the sender is told so.
            assert "may still be stored" in followers[0].refusals[client_id]

            # The scenario: Redis stays frozen 8 s.
            await asyncio.sleep(max(0.0, frozen_at + 8.0 - loop_time()))
            redis.proc.send_signal(signal.SIGCONT)
            back_at = loop_time()
            stop = asyncio.Event()
            talk = [asyncio.create_task(f.chatter(0.05, stop)) for f in followers]
            for app in (a, b):
                await until(lambda app=app: status_is(app.url, "/healthz", 200), 5, "healthz 200")

            def both_ways() -> dict | None:
                flows = cross_delivery(followers, back_at)
                return flows if len(flows) == 2 else None

            flows = await until(both_ways, RESUME_WITHIN + 5, "delivery across both processes")
            await asyncio.sleep(1.0)  # the scenario: keep talking a little after recovery
            stop.set()
            await asyncio.gather(*talk)
            await settle(followers, redis.url, "lobby")
            assert a.running() and b.running(), "an app process exited"
            checked = check_nothing_lost_or_doubled(followers)
            refused = {cid for f in followers for cid in f.refused}
            late = {cid for cid in refused if any(cid in f.got for f in followers)}
            assert all(late <= f.got.keys() for f in followers), "a late message reached some only"
            for f in followers:
                await f.stop()
        resumed = max(flows.values())
        assert resumed < RESUME_WITHIN, f"delivery resumed {resumed:.2f} s after SIGCONT"
        assert healthz_503_after < 2.0 + 2.0  # its ping timeout, and a margin
        assert refused_after < 5.0 + 2.0  # the Redis client's socket timeout, and a margin
        assert_clean_log(a, b)
        figure("seconds from SIGSTOP to /healthz 503 on both", healthz_503_after)
        figure("seconds from sending to the `unavailable` error while frozen", refused_after)
        figure(
            "messages refused while frozen / of them stored when Redis woke",
            f"{len(refused)} / {len(late)}",
        )
        figure("seconds from SIGCONT to delivery across both processes", resumed)
        figure("acknowledged messages x followers checked", checked)
    finally:
        if redis.proc and redis.proc.poll() is None:
            redis.proc.send_signal(signal.SIGCONT)
        a.stop()
        b.stop()
        redis.cleanup()


async def test_history_survives_a_redis_restart_with_aof(figure):
    """Break: SIGKILL a Redis configured as the README recommends (appendonly yes,
    appendfsync everysec) in the middle of a stream of messages, and start it again.

    Must hold: a late joiner after the restart gets every acknowledged message in its
    history, in order with consecutive ids; sessions survive (the same cookie is still
    logged in); the open sockets go on without a gap or a duplicate.
    """
    redis = RedisServer(appendonly=True, appendfsync="everysec").start()
    app = AppProcess(redis.url, **ENV)
    try:
        await asyncio.to_thread(app.start)
        async with Client(app.url, "ann") as ann, Client(app.url, "ben") as ben:
            followers = [await Follower(p, "lobby").start() for p in (ann, ben)]
            stop = asyncio.Event()
            talk = [asyncio.create_task(f.chatter(0.01, stop)) for f in followers]
            await until(lambda: len(acked_union(followers)) >= 100, 10, "some messages")
            redis.kill()  # mid-stream: the last acknowledged messages are milliseconds old
            acked_before = dict(acked_union(followers))
            await asyncio.sleep(0.5)  # the scenario: they keep talking while Redis is down
            stop.set()
            await asyncio.gather(*talk)
            await asyncio.to_thread(redis.start)
            await until(lambda: status_is(app.url, "/healthz", 200), 5, "healthz 200")

            assert await http_status(app.url, "/chat/", ann) == 200  # still logged in
            async with Client(app.url, "late") as late:
                sock = await late.join("lobby")
                frame = await sock.next("history")
                # The frame holds the newest few; the rest comes from the history API.
                history = await held_before(late, "lobby", frame, 0) + frame["messages"]
            ids = [m["id"] for m in history]
            assert ids == list(range(1, len(ids) + 1))
            kept = {m["client_id"] for m in history}
            lost = sorted(acked_before.keys() - kept)
            assert not lost, f"acknowledged but gone after the restart: {lost[:10]}"

            stop = asyncio.Event()
            talk = [asyncio.create_task(f.chatter(0.05, stop)) for f in followers]
            await until(lambda: len(acked_union(followers)) >= len(acked_before) + 20, 10, "more")
            stop.set()
            await asyncio.gather(*talk)
            await settle(followers, redis.url, "lobby")
            check_nothing_lost_or_doubled(followers)
            for f in followers:
                await f.stop()
        assert_clean_log(app)
        figure("acknowledged before the kill, all in the late joiner's history", len(acked_before))
        figure("history length after the restart", len(history))
    finally:
        app.stop()
        redis.cleanup()


async def test_pubsub_connections_killed_by_redis_are_resubscribed(figure):
    """Break: `CLIENT KILL TYPE pubsub` while two app processes serve three rooms and
    people talk in all of them: Redis drops every subscriber connection.

    Must hold: each worker notices, reconnects, resubscribes every room it serves and
    logs it; within 5 s messages flow across the processes again in every room, and
    messages published in between reach everyone (the subscriber fills the gap from
    history): no socket is left deaf, nothing acknowledged is missing or doubled.
    """
    redis = RedisServer().start()
    a, b = AppProcess(redis.url, **ENV), AppProcess(redis.url, **ENV)
    rooms = ["lobby", "dev", "ops"]
    try:
        await asyncio.to_thread(start_apps, a, b)
        async with Client(a.url, "ann") as ann, Client(b.url, "ben") as ben:
            by_room = {
                room: [await Follower(p, room).start() for p in (ann, ben)] for room in rooms
            }
            followers = [f for pair in by_room.values() for f in pair]
            stop = asyncio.Event()
            talk = [asyncio.create_task(f.chatter(0.05, stop)) for f in followers]
            await until(lambda: len(acked_union(followers)) >= 60, 10, "some messages")

            client = aioredis.from_url(redis.url)
            try:
                killed = await client.client_kill_filter(_type="pubsub")
                killed_at = loop_time()
                assert killed >= 2  # one subscriber per worker

                def all_rooms_flow() -> dict | None:
                    out = {room: cross_delivery(pair, killed_at) for room, pair in by_room.items()}
                    return out if all(len(f) == 2 for f in out.values()) else None

                flows = await until(all_rooms_flow, RESUME_WITHIN + 5, "delivery in every room")
                await asyncio.sleep(1.0)  # the scenario: keep talking a little after recovery
                stop.set()
                await asyncio.gather(*talk)
                checked = 0
                for room, pair in by_room.items():
                    await settle(pair, redis.url, room)
                    checked += check_nothing_lost_or_doubled(pair)
                numsub = await client.pubsub_numsub(*(Keys.room_channel(r) for r in rooms))
                assert [n for _, n in numsub] == [2, 2, 2]
            finally:
                await client.aclose()
            for f in followers:
                await f.stop()
        resumed = max(d for room_flows in flows.values() for d in room_flows.values())
        assert resumed < RESUME_WITHIN, f"delivery resumed {resumed:.2f} s after the kill"
        for app in (a, b):
            assert "subscriber connection lost" in app.log()
            assert "subscriber reconnected; resubscribed 3 room(s)" in app.log()
        assert_clean_log(a, b)
        figure("subscriber connections killed", killed)
        figure("seconds from the kill to delivery across processes in all 3 rooms", resumed)
        figure("acknowledged messages x followers checked", checked)
    finally:
        a.stop()
        b.stop()
        redis.cleanup()


async def test_silently_dead_subscriber_connection_is_noticed_by_ping(figure):
    """Break: one worker's subscriber connection dies silently: a TCP proxy between the
    worker and Redis stops forwarding it, no FIN and no RST (a NAT, a firewall or a
    failover dropping a long-lived flow), while new connections get through.

    Must hold: the worker's own liveness check (a PING after SUBSCRIBER_PING_AFTER s of
    silence, an answer due within SUBSCRIBER_PONG_TIMEOUT s) notices, reconnects and
    resubscribes, and its socket gets every message again, the missed ones included
    (redis-py's health_check_interval sends PINGs but never waits for the answer,
    so it would leave the worker deaf for good).
    """
    redis = RedisServer().start()
    proxy = TcpProxy(redis.port).start()
    a, b = AppProcess(proxy.url, **ENV), AppProcess(redis.url, **ENV)
    bound = SUBSCRIBER_PING_AFTER + SUBSCRIBER_PONG_TIMEOUT + 3.0
    try:
        await asyncio.to_thread(start_apps, a, b)
        async with Client(a.url, "ann") as ann, Client(b.url, "ben") as ben:
            deaf, talker = (
                await Follower(ann, "lobby").start(),
                await Follower(ben, "lobby").start(),
            )
            stop = asyncio.Event()
            talk = asyncio.create_task(talker.chatter(0.1, stop))
            await until(lambda: len(deaf.got) >= 10, 10, "some messages")
            assert proxy.blackhole() == 1
            silenced_at = loop_time()

            def heard_again() -> float | None:
                late = [
                    deaf.arrived[cid] - silenced_at
                    for cid, sent in talker.sent.items()
                    if sent > silenced_at and cid in deaf.arrived
                ]
                return min(late) if late else None

            resumed = await until(heard_again, bound + 5, "the silenced worker to hear again")
            await asyncio.sleep(1.0)  # the scenario: keep talking a little after recovery
            stop.set()
            await talk
            await settle([deaf, talker], redis.url, "lobby")
            checked = check_nothing_lost_or_doubled([deaf, talker])
            for f in (deaf, talker):
                await f.stop()
        assert resumed < bound, f"heard again {resumed:.2f} s after the connection died"
        assert "no answer from the subscriber connection" in a.log()
        assert "subscriber reconnected; resubscribed 1 room(s)" in a.log()
        assert_clean_log(a, b)
        figure("seconds from silent death to delivery again", resumed)
        figure("acknowledged messages x followers checked", checked)
    finally:
        a.stop()
        b.stop()
        proxy.stop()
        redis.cleanup()
