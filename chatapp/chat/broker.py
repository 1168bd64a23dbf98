"""Publish, history and subscriptions over Redis; knows nothing of sockets.

Contract: a message is stored and published in one Lua script, so the room's
next id, the append to its history list, the trim to the limit and the
publish happen atomically: ids, history order and delivery order agree.
Delivery over pub/sub is at most once; the subscriber fills gaps itself after
a reconnect (from history, by id), and clients resume with `?after=ID`. The
subscriber notices a connection that died silently by a PING of its own, and
a Redis that lost its data (ids start over) by the epoch key.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chatapp.chat import frames
from chatapp.store.client import Store
from chatapp.store.keys import Keys
from chatapp.tasks import cancel_and_wait

log = logging.getLogger(__name__)

# The subscriber's own liveness check: after this many seconds without a word
# from Redis it sends a PING, and the answer must come within the timeout.
SUBSCRIBER_PING_AFTER = 3.0
SUBSCRIBER_PONG_TIMEOUT = 3.0

# KEYS: seq, history, channel, rooms, rate
# ARGV: body (after "ts"), history limit, room, rate limit, rate window (ms)
_APPEND = """
local sent = redis.call('INCR', KEYS[5])
if sent == 1 then redis.call('PEXPIRE', KEYS[5], ARGV[5]) end
if sent > tonumber(ARGV[4]) then return -1 end
local id = redis.call('INCR', KEYS[1])
local now = redis.call('TIME')
local msg = '{"type":"message","id":' .. id .. ',"ts":' .. now[1] .. '.'
            .. string.format('%06d', now[2]) .. ARGV[1]
redis.call('RPUSH', KEYS[2], msg)
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[2])
redis.call('ZADD', KEYS[4], now[1], ARGV[3])
redis.call('PUBLISH', KEYS[3], msg)
return id
"""

# Messages with id > ARGV[1]. The list holds ids seq-len+1 .. seq (consecutive),
# so the start index follows from the id. Returns {seq, truncated, messages...}.
_HISTORY_AFTER = """
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
local len = redis.call('LLEN', KEYS[2])
local first = seq - len + 1
local after = tonumber(ARGV[1])
local truncated = 0
local start = after - first + 1
if after > seq then start = 0; truncated = 1 end
if start < 0 then start = 0; truncated = 1 end
local out = {seq, truncated}
for _, m in ipairs(redis.call('LRANGE', KEYS[2], start, -1)) do out[#out + 1] = m end
return out
"""


@dataclass(frozen=True)
class History:
    messages: list[bytes]
    truncated: bool
    last_id: int  # the room's newest id when read (0: no message yet)


class RateLimited(Exception):
    """The sender is over `chat.rate_limit_messages` per `chat.rate_limit_seconds`."""


class Unavailable(Exception):
    """Redis did not take the message, or did not answer in time (`maybe_stored`:
    a hung Redis may still run the script when it wakes up)."""

    def __init__(self, detail: str, maybe_stored: bool = False) -> None:
        super().__init__(detail)
        self.maybe_stored = maybe_stored


OnMessage = Callable[[str, bytes], None]
OnReset = Callable[[str, list[bytes]], None]


class Broker:
    """Store-and-publish, history reads, and this worker's one subscriber connection."""

    def __init__(
        self,
        store: Store,
        *,
        history_limit: int,
        rate_limit: int,
        rate_window: float,
        on_room_frame: OnMessage,
        on_control: Callable[[bytes], None],
        on_reset: OnReset | None = None,
    ) -> None:
        self._store = store
        self._redis = store.raw
        self._history_limit = history_limit
        self._rate_limit = rate_limit
        self._rate_window_ms = max(1, int(rate_window * 1000))
        self._append = self._redis.register_script(_APPEND)
        self._history_after = self._redis.register_script(_HISTORY_AFTER)
        self._on_room_frame = on_room_frame
        self._on_control = on_control
        self._on_reset = on_reset
        self._rooms: set[str] = set()
        self._pending: dict[str, asyncio.Future] = {}
        # Highest id dispatched per room (drops gap-fill duplicates) ...
        self._last_id: dict[str, int] = {}
        # ... and the highest id local sockets got from history on joining.
        self._floor: dict[str, int] = {}
        self._pubsub = None
        self._task: asyncio.Task | None = None
        self._connected = asyncio.Event()
        self._epoch: bytes | None = None  # the Keys.epoch token this worker knows
        self.reconnects = 0

    # -- publishing and reading -------------------------------------------------

    async def publish_message(
        self, room: str, username: str, text: str, client_id: str | None
    ) -> int:
        """Store and publish a message; return its id."""
        body = frames.message_body(room, username, text, client_id)
        try:
            result = await self._append(
                keys=[
                    Keys.room_seq(room),
                    Keys.room_history(room),
                    Keys.room_channel(room),
                    Keys.rooms,
                    Keys.send_rate(username),
                ],
                args=[body, self._history_limit, room, self._rate_limit, self._rate_window_ms],
            )
        except (RedisError, OSError) as exc:
            timed_out = isinstance(exc, RedisTimeoutError | TimeoutError)
            raise Unavailable(str(exc), maybe_stored=timed_out) from exc
        if result == -1:
            raise RateLimited
        return int(result)

    async def publish_frame(self, room: str, frame: bytes) -> None:
        """Publish a non-message frame (presence) to everyone in the room."""
        await self._redis.publish(Keys.room_channel(room), frame)

    async def publish_control(self, event: bytes) -> None:
        await self._redis.publish(Keys.control_channel, event)

    async def history(self, room: str, after: int | None = None) -> History:
        """The held messages (all, or those with id > after) and whether some were missed."""
        result = await self._history_after(
            keys=[Keys.room_seq(room), Keys.room_history(room)], args=[after or 0]
        )
        truncated = bool(result[1]) and after is not None
        return History(messages=list(result[2:]), truncated=truncated, last_id=int(result[0]))

    async def recent(self, room: str, count: int) -> list[bytes]:
        if count <= 0:
            return []
        return await self._redis.lrange(Keys.room_history(room), -count, -1)

    # -- subscriptions -----------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="chatapp-subscriber")
        try:
            await asyncio.wait_for(self._connected.wait(), 10)
        except TimeoutError:
            log.warning("subscriber not connected yet; it keeps retrying")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        await self._close_pubsub()

    async def subscribe(self, room: str) -> None:
        """Subscribe to a room and return once Redis confirmed it.

        After this returns, every message published to the room reaches this
        worker, so history read afterwards plus live messages leave no gap.
        """
        self._rooms.add(room)
        channel = Keys.room_channel(room)
        waiter = self._pending.get(channel)
        if waiter is None:
            waiter = self._pending[channel] = asyncio.get_running_loop().create_future()
            if self._pubsub is not None and self._connected.is_set():
                try:
                    await self._pubsub.subscribe(channel)
                except (RedisError, OSError) as exc:
                    log.warning("subscribe %s failed (%s); the listener will retry", room, exc)
        await asyncio.wait_for(asyncio.shield(waiter), 10)

    def mark_delivered(self, room: str, message_id: int) -> None:
        """Note that local sockets of `room` hold everything up to `message_id`.

        Only the starting point of a gap fill after a reconnect: live messages
        are never dropped because of it (another local socket may still wait
        for an id below it).
        """
        if message_id > self._floor.get(room, 0):
            self._floor[room] = message_id

    async def unsubscribe(self, room: str) -> None:
        self._rooms.discard(room)
        self._last_id.pop(room, None)
        self._floor.pop(room, None)
        channel = Keys.room_channel(room)
        waiter = self._pending.pop(channel, None)
        if waiter and not waiter.done():
            waiter.cancel()
        if self._pubsub is not None and self._connected.is_set():
            try:
                await self._pubsub.unsubscribe(channel)
            except (RedisError, OSError) as exc:
                log.warning("unsubscribe %s failed: %s", room, exc)

    @property
    def healthy(self) -> bool:
        return self._connected.is_set()

    async def _close_pubsub(self) -> None:
        if self._pubsub is not None:
            pubsub, self._pubsub = self._pubsub, None
            try:
                await pubsub.aclose()
            except (RedisError, OSError) as exc:  # a dead connection may fail to close
                log.debug("closing the old subscriber connection: %s", exc)

    async def _connect(self) -> None:
        """A fresh subscriber connection, subscribed to control and every local room."""
        await self._close_pubsub()
        pubsub = self._redis.pubsub()
        channels = [Keys.control_channel, *(Keys.room_channel(r) for r in self._rooms)]
        for room in self._rooms:
            channel = Keys.room_channel(room)
            if channel not in self._pending or self._pending[channel].done():
                self._pending[channel] = asyncio.get_running_loop().create_future()
        await pubsub.subscribe(*channels)
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
                    await self._fill_gaps(lost=not kept)
                    self.reconnects += 1
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
        pubsub = self._pubsub
        clock = asyncio.get_running_loop().time
        heard = clock()
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is None:
                # Our own liveness check: redis-py's health check sends PINGs but
                # never waits for the answer, so a connection that died silently
                # (a NAT or failover dropped it, Redis hung) would leave us deaf.
                silent = clock() - heard
                if silent > SUBSCRIBER_PING_AFTER + SUBSCRIBER_PONG_TIMEOUT:
                    raise ConnectionError(
                        f"no answer on the subscriber connection for {silent:.0f} s"
                    )
                if silent > SUBSCRIBER_PING_AFTER and not pinged:
                    pinged = True
                    await asyncio.wait_for(pubsub.ping(), SUBSCRIBER_PONG_TIMEOUT)
                continue
            heard, pinged = clock(), False
            kind = message["type"]
            channel = message["channel"]
            channel = channel.decode() if isinstance(channel, bytes) else channel
            if kind == "message":
                self._dispatch(channel, message["data"])
            elif kind == "subscribe":
                waiter = self._pending.get(channel)
                if waiter and not waiter.done():
                    waiter.set_result(None)

    def _dispatch(self, channel: str, data: bytes) -> None:
        if channel == Keys.control_channel:
            self._on_control(data)
            return
        room = Keys.room_of_channel(channel)
        message_id = frames.message_id(data)
        if message_id is not None:
            last = self._last_id.get(room, 0)
            if message_id <= last:
                return  # already delivered by a gap fill
            self._last_id[room] = message_id
        self._on_room_frame(room, data)

    async def _same_epoch(self) -> bool:
        """False if Redis lost its data since we last looked (its epoch token changed)."""
        await self._redis.set(Keys.epoch, secrets.token_hex(8), nx=True)
        epoch = await self._redis.get(Keys.epoch)
        kept = self._epoch is None or epoch == self._epoch
        self._epoch = epoch
        return kept

    async def _fill_gaps(self, lost: bool) -> None:
        """After a reconnect, deliver what was published while we were away."""
        for room in list(self._rooms):
            start = max(self._last_id.get(room, 0), self._floor.get(room, 0))
            try:
                held = await self.history(room, after=None if lost else start)
            except ResponseError as exc:  # this room's keys are broken, not the connection
                log.error("room %s: cannot read history to fill the gap: %s", room, exc)
                continue
            # A connection error propagates: the listener reconnects and fills again
            # (skipping the fill would leave the gap for good).
            if lost or held.last_id < start:
                # Redis lost the room (restarted without persistence): ids start over.
                # Dropping ids up to `start` as duplicates would hide the new messages,
                # so local sockets start over from what Redis holds now.
                log.warning(
                    "room %s: Redis lost its history; ids start over (now %d, were %d)",
                    room,
                    held.last_id,
                    start,
                )
                self._last_id[room] = self._floor[room] = held.last_id
                if self._on_reset is not None:
                    self._on_reset(room, held.messages)
                continue
            for data in held.messages:
                self._dispatch(Keys.room_channel(room), data)
            if held.messages:
                log.info(
                    "room %s: delivered %d message(s) missed while reconnecting",
                    room,
                    len(held.messages),
                )
