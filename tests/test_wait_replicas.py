"""`redis.wait_replicas` on a single Redis: with a replica a message is echoed once
the replica holds it; with none, the sender gets `unavailable` (may still be
stored) promptly instead of a hang, and start-up warns."""

from __future__ import annotations

import time

import pytest

from .client import Client
from .support import AppProcess, RedisServer, until_sync

pytestmark = pytest.mark.multiprocess

WAIT = {"CHATAPP_REDIS_WAIT_REPLICAS": "1", "CHATAPP_REDIS_WAIT_TIMEOUT": "0.5"}


async def test_wait_replicas_without_a_replica_answers_unavailable_promptly(redis_url, room):
    app = AppProcess(redis_url, **WAIT).start()
    try:
        until_sync(lambda: "redis.wait_replicas is 1" in app.log(), 10, "the start-up warning")
        async with Client(app.url, "ann") as ann:
            sock = await ann.join(room)
            await sock.next("history")
            started = time.monotonic()
            await sock.send("hello", client_id="c-1")
            error = await sock.next("error")
            took = time.monotonic() - started
            assert error["code"] == "unavailable"
            assert "may still be stored" in error["detail"]
            assert error.get("client_id") == "c-1"
            assert took < 2.0  # the WAIT timeout (0.5 s), not a hang
            # Stored on the primary, not published: no echo claims it replicated.
            with pytest.raises(AssertionError):
                await sock.next("message", timeout=0.5)
    finally:
        app.stop()


async def test_wait_replicas_with_a_replica_echoes_what_the_replica_holds(room):
    primary = RedisServer().start()
    replica = RedisServer().start()
    try:
        with replica.client() as c:
            c.replicaof("127.0.0.1", primary.port)
        with primary.client() as c:
            until_sync(
                lambda: c.info("replication")["connected_slaves"] == 1, 10, "replica attached"
            )
        app = AppProcess(primary.url, **WAIT).start()
        try:
            async with Client(app.url, "ann") as ann:
                sock = await ann.join(room)
                await sock.next("history")
                for i in range(20):
                    await sock.send(f"m{i}")
                got = await sock.messages(20)
                assert [m["id"] for m in got] == list(range(1, 21))
                with replica.client() as c:  # held by the replica when echoed
                    held = c.lrange(f"chatapp:{{room:{room}}}:history", 0, -1)
                assert len(held) == 20
            assert "redis.wait_replicas" not in app.log()
        finally:
            app.stop()
    finally:
        replica.cleanup()
        primary.cleanup()
