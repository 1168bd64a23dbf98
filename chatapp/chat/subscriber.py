"""This worker's one subscriber connection to Redis: subscriptions, liveness, reconnects.

It subscribes to the control channel and to every room a local socket is in,
confirms each subscription to whoever asked, and hands every published frame
up to one listener (`SubscriberListener`). It keeps itself honest:
- a PING of its own after a few silent seconds notices a connection that died
  silently (redis-py's health check sends PINGs but never waits for them);
- a lost connection is reopened with backoff, every room resubscribed, and the
  listener told to fill what it missed meanwhile (pub/sub drops it);
- the epoch key, a random token set once, tells whether Redis lost its data
  meanwhile (restarted without persistence): then room ids have started over.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Protocol

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import MovedError, RedisError

from chatapp.chat import control
from chatapp.store.keys import Keys
from chatapp.tasks import cancel_and_wait

log = logging.getLogger(__name__)

# After this many seconds without a word from Redis the subscriber sends a
# PING, and the answer must come within the timeout.
SUBSCRIBER_PING_AFTER = 3.0
SUBSCRIBER_PONG_TIMEOUT = 3.0
# How long a join waits for Redis to confirm a subscription.
CONFIRM_TIMEOUT = 10.0


class SubscriberListener(Protocol):
    """What the subscriber hands up; implemented by the worker's rooms."""

    def room_frame(self, room: str, data: bytes) -> None:
        """A frame published on `room`'s channel."""

    def control(self, event: control.ControlEvent) -> None:
        """A control event from any worker or the command line."""

    async def resubscribed(self, lost: bool) -> None:
        """The connection was reopened; `lost`: Redis lost its data meanwhile."""


async def messages(pubsub: PubSub, name: str) -> AsyncIterator[tuple[str, str, object]]:
    """(type, channel, data) of each message a subscriber connection brings, forever.

    After SUBSCRIBER_PING_AFTER seconds of silence it sends a PING of its own;
    no answer within SUBSCRIBER_PONG_TIMEOUT raises ConnectionError (redis-py's
    health check pings but never waits for the answer). A `-MOVED` answer to a
    shard subscription comes as ("moved", "", slot).
    """
    clock = asyncio.get_running_loop().time
    heard, pinged = clock(), False
    while True:
        try:
            message = await pubsub.get_message(timeout=1.0)
        except MovedError as exc:  # an SSUBSCRIBE went to a stale owner
            yield "moved", "", exc.slot_id
            continue
        if message is None:
            silent = clock() - heard
            if silent > SUBSCRIBER_PING_AFTER + SUBSCRIBER_PONG_TIMEOUT:
                raise ConnectionError(f"no answer from {name} for {silent:.0f} s")
            if silent > SUBSCRIBER_PING_AFTER and not pinged:
                pinged = True
                await asyncio.wait_for(pubsub.ping(), SUBSCRIBER_PONG_TIMEOUT)
            continue
        heard, pinged = clock(), False
        channel = message["channel"]
        channel = channel.decode() if isinstance(channel, bytes) else channel
        yield message["type"], channel, message["data"]


def hand_control(listener: SubscriberListener, data: bytes) -> None:
    """Decode a control event for the listener; garbage is logged and dropped."""
    try:
        event = control.decode(data)
    except control.BadControlEvent as exc:
        log.warning("ignored %s", exc)
        return
    listener.control(event)


class Subscriber:
    """Subscribe to rooms on demand; deliver their frames; survive Redis restarts."""

    def __init__(self, redis: aioredis.Redis, listener: SubscriberListener) -> None:
        self._redis = redis
        self._listener = listener
        self._rooms: set[str] = set()  # rooms this worker wants
        self._confirmed: dict[str, asyncio.Future] = {}  # channel -> Redis said "subscribed"
        # Subscribe and unsubscribe go out one at a time, each deciding under the
        # lock, so a room left and joined again at once ends up subscribed.
        self._lock = asyncio.Lock()
        self._pubsub = None
        self._task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()  # unsubscribes on their way
        self._connected = asyncio.Event()
        self._epoch: bytes | None = None  # the Keys.epoch token this worker knows

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="chatapp-subscriber")
        try:
            await asyncio.wait_for(self._connected.wait(), 10)
        except TimeoutError:
            log.warning("subscriber not connected yet; it keeps retrying")

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await cancel_and_wait(self._task)
        await self._close_pubsub()

    async def subscribe(self, room: str) -> None:
        """Subscribe to a room and return once Redis confirmed it.

        After this returns, every frame published to the room reaches the
        listener, so history read afterwards plus live frames leave no gap.
        """
        self._rooms.add(room)
        channel = Keys.room_channel(room)
        waiter = self._confirmed.get(channel)
        if waiter is None:
            waiter = self._confirmed[channel] = asyncio.get_running_loop().create_future()
            async with self._lock:
                if room in self._rooms:
                    await self._send("subscribe", channel)
        await asyncio.wait_for(asyncio.shield(waiter), CONFIRM_TIMEOUT)

    def unsubscribe(self, room: str) -> None:
        """Stop wanting a room now; Redis is told in the background."""
        self._rooms.discard(room)
        channel = Keys.room_channel(room)
        waiter = self._confirmed.pop(channel, None)
        if waiter is not None and not waiter.done():
            waiter.cancel()
        task = asyncio.get_running_loop().create_task(self._unsubscribe(room, channel))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _unsubscribe(self, room: str, channel: str) -> None:
        async with self._lock:
            if room not in self._rooms:  # nobody asked for it again meanwhile
                await self._send("unsubscribe", channel)

    async def _send(self, command: str, channel: str) -> None:
        if self._pubsub is None or not self._connected.is_set():
            return  # the next connection subscribes to what is wanted then
        try:
            await getattr(self._pubsub, command)(channel)
        except (RedisError, OSError) as exc:
            log.warning("%s %s failed (%s); the listener will retry", command, channel, exc)

    async def _close_pubsub(self) -> None:
        if self._pubsub is not None:
            pubsub, self._pubsub = self._pubsub, None
            try:
                await pubsub.aclose()
            except (RedisError, OSError) as exc:  # a dead connection may fail to close
                log.debug("closing the old subscriber connection: %s", exc)

    async def _connect(self) -> None:
        """A fresh subscriber connection, subscribed to control and every wanted room."""
        await self._close_pubsub()
        pubsub = self._redis.pubsub()
        channels = [Keys.room_channel(r) for r in self._rooms]
        for channel in channels:
            waiter = self._confirmed.get(channel)
            if waiter is None or waiter.done():
                self._confirmed[channel] = asyncio.get_running_loop().create_future()
        await pubsub.subscribe(Keys.control_channel, *channels)
        self._pubsub = pubsub
        self._connected.set()

    async def _listen(self) -> None:
        delay = 0.1
        first = True
        while True:
            try:
                await self._connect()
                if not first:
                    # The pooled connections most likely died with the subscriber's
                    # (Redis restarted): drop the idle ones, so the gap fill and the
                    # next messages connect afresh instead of each failing once.
                    await self._redis.connection_pool.disconnect(inuse_connections=False)
                kept = await self._same_epoch()
                if not first:
                    await self._listener.resubscribed(lost=not kept)
                    log.warning("subscriber reconnected; resubscribed %d room(s)", len(self._rooms))
                first = False
                delay = 0.1
                await self._read_loop()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self._connected.is_set():
                    log.warning("subscriber connection lost: %s; reconnecting", exc)
                self._connected.clear()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _read_loop(self) -> None:
        async for kind, channel, data in messages(self._pubsub, "the subscriber connection"):
            if kind == "message":
                if channel == Keys.control_channel:
                    hand_control(self._listener, data)
                else:
                    self._listener.room_frame(Keys.room_of_channel(channel), data)
            elif kind == "subscribe":
                waiter = self._confirmed.get(channel)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

    async def _same_epoch(self) -> bool:
        """False if Redis lost its data since we last looked (its epoch token changed)."""
        await self._redis.set(Keys.epoch, secrets.token_hex(8), nx=True)
        epoch = await self._redis.get(Keys.epoch)
        kept = self._epoch is None or epoch == self._epoch
        self._epoch = epoch
        return kept
