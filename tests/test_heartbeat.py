"""The worker's heartbeat: silent sockets are pinged, and one that does not answer
is dropped and leaves the room; any frame from a peer counts as a sign of life."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from chatapp.app import create_app

from .client import Client
from .conftest import make_config

INTERVAL = 1.0  # chat.heartbeat_seconds for these tests: a ping after 0.8-1.2 s of silence


@pytest.fixture
async def base(aiohttp_server, redis_url) -> str:
    config = make_config(
        redis_url, chat={"heartbeat_seconds": INTERVAL, "rate_limit_messages": 1_000_000}
    )
    server = await aiohttp_server(create_app(config))
    return str(server.make_url("")).rstrip("/")


async def next_of(ws: aiohttp.ClientWebSocketResponse, types: set, timeout: float):
    """The next message of one of `types`, skipping text frames."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        msg = await asyncio.wait_for(ws.receive(), max(0.01, deadline - loop.time()))
        if msg.type in types:
            return msg


async def test_silent_peer_that_does_not_answer_pings_is_dropped_and_leaves(base):
    async with Client(base, "ann") as ann, Client(base, "bob") as bob:
        live = await bob.join("lobby")
        await live.next("presence")
        # aiohttp's client answers pings only while it is being read: read bob always.
        frames: asyncio.Queue = asyncio.Queue()

        async def read_bob():
            while True:
                await frames.put(await live.frame(timeout=60))

        reader = asyncio.create_task(read_bob())
        try:
            mute = await ann.join("lobby", autoping=False)  # will not answer pings
            loop = asyncio.get_running_loop()
            start = loop.time()
            ping = await next_of(mute.ws, {aiohttp.WSMsgType.PING}, 1.2 * INTERVAL + 1.0)
            pinged_after = loop.time() - start
            gone = await next_of(
                mute.ws,
                {aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR},
                INTERVAL / 2 + 1.0,  # the pong timeout, two heartbeat ticks and a margin
            )
            assert ping.type == aiohttp.WSMsgType.PING and gone is not None
            assert pinged_after <= 1.2 * INTERVAL + INTERVAL / 8 + 0.5
            # ann has left the room for everyone else ...
            seen = []
            while seen[-1:] != [["bob"]]:
                frame = await asyncio.wait_for(frames.get(), 3)
                if frame["type"] == "presence":
                    seen.append(frame["users"])
            assert ["ann", "bob"] in seen
            # ... and bob, who answers, is still there after several heartbeats.
            await asyncio.sleep(3 * INTERVAL)  # the scenario: several heartbeats pass
            await live.send("still here")
            while (frame := await asyncio.wait_for(frames.get(), 3))["type"] != "message":
                pass
            assert frame["text"] == "still here"
        finally:
            reader.cancel()


async def test_peer_that_keeps_sending_is_never_pinged(base):
    async with Client(base, "ann") as ann:
        sock = await ann.join("lobby", autoping=False)
        types = []
        for i in range(12):  # 3.6 s of messages every 0.3 s: never 0.8 s of silence
            await sock.send(f"m{i}")
            await asyncio.sleep(0.3)  # the scenario: a peer that talks every 0.3 s
            while True:
                try:
                    msg = await asyncio.wait_for(sock.ws.receive(), 0.01)
                except TimeoutError:
                    break
                types.append(msg.type)
        assert aiohttp.WSMsgType.PING not in types
        assert types.count(aiohttp.WSMsgType.TEXT) >= 12  # history, presence, echoes
        assert not sock.ws.closed


async def test_ping_from_the_peer_gets_a_pong_with_its_payload(base):
    async with Client(base, "ann") as ann:
        sock = await ann.join("lobby", autoping=False)
        await sock.ws.ping(b"are you there")
        pong = await next_of(sock.ws, {aiohttp.WSMsgType.PONG}, 2.0)
        assert pong.data == b"are you there"
