"""Ending a session closes every socket opened with it, on every worker (1008).

Explicit ends (logout) travel as a control event and close at once; a session
that ends by itself (expired, or gone from Redis) is noticed by each worker's
session check within one heartbeat interval.
"""

from __future__ import annotations

import asyncio

import pytest

from .client import Client
from .support import app_pair

pytestmark = pytest.mark.multiprocess


async def test_logout_on_one_worker_closes_the_sessions_socket_on_the_other(redis_url):
    with app_pair(redis_url) as (one, two):
        async with Client(one.url, "ann") as ann, Client(one.url, "bob") as bob:
            on_two = await ann.join("lobby", base=two.url)
            await on_two.next("history")
            watcher = await bob.join("lobby", base=two.url)
            await watcher.next("history")
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert (await ann.logout()).status == 302
            assert await on_two.closed(timeout=1.0) == 1008
            assert loop.time() - started < 1.0
            # Nothing it might still send is stored: bob's own message is the first.
            await watcher.send("after the logout")
            assert (await watcher.next("message"))["id"] == 1


async def test_session_that_expires_in_redis_closes_its_socket_within_a_heartbeat(
    redis_url, redis_server
):
    heartbeat = 1.0
    with app_pair(redis_url, CHATAPP_CHAT_HEARTBEAT_SECONDS=str(heartbeat)) as (one, two):
        async with Client(one.url, "ann") as ann, Client(one.url, "bob") as bob:
            doomed = await ann.join("lobby", base=two.url)
            await doomed.next("history")
            kept = await bob.join("lobby", base=two.url)
            await kept.next("history")
            client = redis_server.client()
            ann_sessions = [k for k in client.smembers("chatapp:user:ann:sessions")]
            assert len(ann_sessions) == 1
            loop = asyncio.get_running_loop()
            started = loop.time()
            client.delete(b"chatapp_session_" + ann_sessions[0])  # as when its TTL runs out
            assert await doomed.closed(timeout=3 * heartbeat) == 1008
            assert loop.time() - started <= heartbeat + 0.5
            await kept.send("still here")  # bob's session is untouched
            assert (await kept.next("message"))["text"] == "still here"
