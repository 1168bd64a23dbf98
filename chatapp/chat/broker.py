"""Store-and-publish and history reads over Redis; knows nothing of sockets.

Contract: a message is stored and published in one Lua script, so the room's
next id, the append to its history list, the trim to the limit and the
publish happen atomically: ids, history order and delivery order agree.
Delivery over pub/sub is at most once; the worker's rooms fill gaps from
history after a reconnect (`chat.local_rooms`), and clients resume with `?after=ID`.
Subscribing is `chat.subscriber`'s job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chatapp.chat import frames
from chatapp.store.client import Store
from chatapp.store.keys import Keys

log = logging.getLogger(__name__)

# KEYS: seq, history, channel, listing (the public room list, or the list of
# private conversations), rate
# ARGV: body (after "ts"), history limit, room, rate limit, rate window (ms)
# Returns the stored message, or -1 when the sender is over the rate limit.
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
return msg
"""

# Messages with id > ARGV[1] (all when ARGV[1] is past seq: ids started over).
# The list holds ids seq-len+1 .. seq (consecutive), so the start index follows
# from the id. Returns {seq, first held id, messages...}.
_HISTORY_AFTER = """
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
local len = redis.call('LLEN', KEYS[2])
local first = seq - len + 1
local after = tonumber(ARGV[1])
local start = after - first + 1
if after > seq or start < 0 then start = 0 end
local out = {seq, first}
for _, m in ipairs(redis.call('LRANGE', KEYS[2], start, -1)) do out[#out + 1] = m end
return out
"""


@dataclass(frozen=True)
class History:
    messages: list[bytes]
    truncated: bool
    last_id: int  # the room's newest id when read (0: no message yet)
    first_id: int  # the oldest id still held (last_id + 1 when none is)


class RateLimited(Exception):
    """The sender is over `chat.rate_limit_messages` per `chat.rate_limit_seconds`."""


class Unavailable(Exception):
    """Redis did not take the message, or did not answer in time (`maybe_stored`:
    a hung Redis may still run the script when it wakes up)."""

    def __init__(self, detail: str, maybe_stored: bool = False) -> None:
        super().__init__(detail)
        self.maybe_stored = maybe_stored


class Broker:
    """Store-and-publish and history reads for every room."""

    def __init__(
        self,
        store: Store,
        *,
        history_limit: int,
        rate_limit: int,
        rate_window: float,
    ) -> None:
        self._redis = store.raw
        self._history_limit = history_limit
        self._rate_limit = rate_limit
        self._rate_window_ms = max(1, int(rate_window * 1000))
        self._append = self._redis.register_script(_APPEND)
        self._history_after = self._redis.register_script(_HISTORY_AFTER)

    # -- publishing and reading -------------------------------------------------

    async def publish_message(
        self, room: str, username: str, text: str, client_id: str | None, *, public: bool = True
    ) -> bytes:
        """Store and publish a message; return it as stored (its id is `frames.message_id`).

        `public`: list the room in the public room list (else in the list of
        private conversations, which only the admin page shows).
        """
        body = frames.message_body(room, username, text, client_id)
        try:
            result = await self._append(
                keys=[
                    Keys.room_seq(room),
                    Keys.room_history(room),
                    Keys.room_channel(room),
                    Keys.rooms if public else Keys.private_conversations,
                    Keys.send_rate(username),
                ],
                args=[body, self._history_limit, room, self._rate_limit, self._rate_window_ms],
            )
        except (RedisError, OSError) as exc:
            timed_out = isinstance(exc, RedisTimeoutError | TimeoutError)
            raise Unavailable(str(exc), maybe_stored=timed_out) from exc
        if result == -1:
            raise RateLimited
        return result

    async def publish_frame(self, room: str, frame: bytes) -> None:
        """Publish a non-message frame (presence) to everyone in the room."""
        await self._redis.publish(Keys.room_channel(room), frame)

    async def history(self, room: str, after: int | None = None) -> History:
        """The held messages (all, or those with id > after) and whether some were missed."""
        result = await self._history_after(
            keys=[Keys.room_seq(room), Keys.room_history(room)], args=[after or 0]
        )
        last_id, first_id = int(result[0]), int(result[1])
        truncated = after is not None and (after > last_id or after < first_id - 1)
        return History(list(result[2:]), truncated, last_id, first_id)

    async def last_id(self, room: str) -> int:
        """The room's newest message id (0: none yet)."""
        return int(await self._redis.get(Keys.room_seq(room)) or 0)

    async def recent(self, room: str, count: int) -> list[bytes]:
        if count <= 0:
            return []
        return await self._redis.lrange(Keys.room_history(room), -count, -1)
