"""Who is in each room, across every worker, and honest after a crash.

Each worker writes one record per (room, user) it serves into the room's
members zset, scored with an expiry time it keeps pushing forward. A worker
killed with `kill -9` stops refreshing, so its records fall out within
`RECORD_TTL` seconds: the next sweep by any live worker removes them and tells
the room.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from chatapp.store.keys import Keys
from chatapp.tasks import cancel_and_wait

log = logging.getLogger(__name__)

RECORD_TTL = 20.0  # seconds a record lives without a refresh
REFRESH_EVERY = 5.0  # seconds between refreshes (and sweeps of expired records)

Publish = Callable[[str, list[str]], Awaitable[None]]

# KEYS: members zset of each room; ARGV: expiry, now, then per room its count of
# members to refresh followed by those members. Returns, per room, how many
# expired records were swept. One round trip: as 500 commands in a pipeline the
# refresh of 50 rooms x 10 people held the event loop ~9 ms every 5 s (W3 p99).
_REFRESH = """
local expiry, now = ARGV[1], ARGV[2]
local i = 3
local swept = {}
for k = 1, #KEYS do
  local n = tonumber(ARGV[i])
  i = i + 1
  for _ = 1, n do
    redis.call('ZADD', KEYS[k], expiry, ARGV[i])
    i = i + 1
  end
  swept[k] = redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', now)
end
return swept
"""


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Presence:
    """This worker's presence records, and reads of everyone's."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        publish: Publish,
        empty_room_ttl: int,
        worker_id: str | None = None,
        record_ttl: float = RECORD_TTL,
        refresh_every: float = REFRESH_EVERY,
    ) -> None:
        self._redis = redis
        self._publish = publish
        self._empty_room_ttl = empty_room_ttl
        self.worker_id = worker_id or new_worker_id()
        self._ttl = record_ttl
        self._refresh_every = refresh_every
        self._local: Counter[tuple[str, str]] = Counter()  # (room, user) -> sockets
        self._refresh_script = redis.register_script(_REFRESH)
        self._task: asyncio.Task | None = None

    def _member(self, username: str) -> str:
        return f"{self.worker_id}|{username}"

    async def join(self, room: str, username: str) -> list[str]:
        """Record a socket of `username` in `room`; tell the room; return who is there."""
        self._local[(room, username)] += 1
        now = time.time()
        pipe = self._redis.pipeline(transaction=True)
        pipe.zadd(Keys.room_members(room), {self._member(username): now + self._ttl})
        # The room exists while its seq key does; a join keeps it from expiring.
        pipe.set(Keys.room_seq(room), 0, nx=True)
        pipe.persist(Keys.room_seq(room))
        pipe.persist(Keys.room_history(room))
        pipe.zadd(Keys.rooms, {room: now})
        await pipe.execute()
        return await self._announce(room)

    async def leave(self, room: str, username: str) -> None:
        """Forget a socket; when the user's last socket here leaves, tell the room."""
        key = (room, username)
        self._local[key] -= 1
        if self._local[key] > 0:
            return
        del self._local[key]
        await self._redis.zrem(Keys.room_members(room), self._member(username))
        users = await self._announce(room)
        if not users:
            await self._room_emptied(room)

    async def users(self, room: str) -> list[str]:
        members = await self._redis.zrangebyscore(Keys.room_members(room), time.time(), "+inf")
        return _usernames(members)

    async def counts(self, rooms: Iterable[str]) -> dict[str, int]:
        rooms = list(rooms)
        pipe = self._redis.pipeline(transaction=False)
        now = time.time()
        for room in rooms:
            pipe.zrangebyscore(Keys.room_members(room), now, "+inf")
        results = await pipe.execute()
        return {room: len(_usernames(m)) for room, m in zip(rooms, results, strict=True)}

    async def _announce(self, room: str) -> list[str]:
        users = await self.users(room)
        await self._publish(room, users)
        return users

    async def _room_emptied(self, room: str) -> None:
        keys = [Keys.room_seq(room), Keys.room_history(room)]
        if self._empty_room_ttl == 0:
            pipe = self._redis.pipeline(transaction=True)
            pipe.delete(*keys, Keys.room_members(room))
            pipe.zrem(Keys.rooms, room)
            await pipe.execute()
        else:
            pipe = self._redis.pipeline(transaction=True)
            for key in keys:
                pipe.expire(key, self._empty_room_ttl)
            await pipe.execute()

    # -- keeping records alive ---------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._refresh_loop(), name="chatapp-presence")

    async def stop(self) -> None:
        """Stop refreshing and withdraw this worker's records (a clean shutdown)."""
        await cancel_and_wait(self._task)
        rooms = {room for room, _ in self._local}
        try:
            for room, username in list(self._local):
                await self._redis.zrem(Keys.room_members(room), self._member(username))
            for room in rooms:
                await self._announce(room)
        except (RedisError, OSError) as exc:
            log.warning("could not withdraw presence at shutdown (%s); it expires by itself", exc)
        self._local.clear()

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_every)
            try:
                await self.refresh()
            except (RedisError, OSError) as exc:
                log.warning("presence refresh failed: %s", exc)

    async def refresh(self) -> None:
        """Push our records' expiry forward; sweep expired records of every local room."""
        now = time.time()
        by_room: dict[str, list[str]] = {}
        for room, username in self._local:
            by_room.setdefault(room, []).append(self._member(username))
        if not by_room:
            return
        rooms = sorted(by_room)
        args: list[str | float] = [now + self._ttl, now]
        for room in rooms:
            args.append(len(by_room[room]))
            args.extend(by_room[room])
        removed = await self._refresh_script(
            keys=[Keys.room_members(room) for room in rooms], args=args
        )
        for room, count in zip(rooms, removed, strict=True):
            if count:
                log.info("room %s: %d presence record(s) of a vanished worker expired", room, count)
                await self._announce(room)

    async def sweep(self, rooms: Iterable[str]) -> None:
        """Remove expired records of `rooms` (for rooms no local socket is in)."""
        now = time.time()
        for room in rooms:
            if await self._redis.zremrangebyscore(Keys.room_members(room), "-inf", now):
                users = await self._announce(room)
                if not users:
                    await self._room_emptied(room)


def _usernames(members: list[bytes]) -> list[str]:
    names = {m.decode().rpartition("|")[2] for m in members}
    return sorted(names, key=str.lower)
