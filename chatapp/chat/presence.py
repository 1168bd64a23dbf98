"""Who is in each room, across every worker, and honest after a crash.

Each worker writes one record per (room, user) it serves into the room's
members zset, scored with an expiry time it keeps pushing forward. A worker
killed with `kill -9` stops refreshing, so its records fall out within
`chat.presence_ttl` seconds: the refresh of any live worker with a socket in
that room sweeps them, and rooms no live worker has a socket in are swept by
one worker at a time (a short lease), so even a room whose every socket died
with its worker is told, and can expire.
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

from chatapp.store.client import is_cluster
from chatapp.store.keys import Keys
from chatapp.tasks import cancel_and_wait

log = logging.getLogger(__name__)

Announce = Callable[[str, list[str]], Awaitable[None]]
Emptied = Callable[[str], Awaitable[None]]

# KEYS: members zset of each room; ARGV: expiry, now, then per room its count of
# members to refresh followed by those members. Returns, per room, how many
# expired records were swept. One round trip per REFRESH_BATCH records: as 500
# commands in a pipeline the refresh of 50 rooms x 10 people held the event loop
# ~9 ms every 5 s (W3 p99); as one script for 10,000 sockets it held Redis and
# the loop long enough to show in W7's p99.
# On a Redis Cluster a script may only touch keys of one hash slot, and each
# room is its own slot: the same commands go as a cluster pipeline there
# (Presence._refresh_on_cluster).
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

# Records per refresh call (see Presence.refresh).
REFRESH_BATCH = 1000
LEAVES_AT_ONCE = 50  # leaves writing to Redis at the same time, per worker


def _batches(rooms: list[str], by_room: dict[str, list[str]], size: int) -> list[list[str]]:
    """`rooms` cut into runs of at most `size` records each (a room is never split:
    a bigger one is a run of its own)."""
    batches: list[list[str]] = []
    count = 0
    for room in rooms:
        records = len(by_room[room])
        if not batches or (batches[-1] and count + records > size):
            batches.append([])
            count = 0
        batches[-1].append(room)
        count += records
    return batches


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Presence:
    """This worker's presence records, and reads of everyone's."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        announce: Announce,
        emptied: Emptied,
        record_ttl: float,
        worker_id: str | None = None,
    ) -> None:
        self._redis = redis
        self._announce_to = announce  # tells a room who is there now
        self._emptied = emptied  # a room's last person left (any worker)
        self.worker_id = worker_id or new_worker_id()
        self._ttl = record_ttl
        self._refresh_every = record_ttl / 4
        self._local: Counter[tuple[str, str]] = Counter()  # (room, user) -> sockets
        self._refresh_script = redis.register_script(_REFRESH)
        self._task: asyncio.Task | None = None
        # Thousands of sockets closing at once (clients gone in one go) queue here
        # rather than each take a connection: the pool would refuse the rest
        # (at once on a cluster; after its wait on one Redis).
        self._leaving = asyncio.Semaphore(LEAVES_AT_ONCE)

    def _member(self, username: str) -> str:
        return f"{self.worker_id}|{username}"

    async def join(self, room: str, username: str, pipe: aioredis.client.Pipeline) -> list[str]:
        """Record a socket of `username` in `room` (with `pipe`'s commands); tell the room."""
        self._local[(room, username)] += 1
        pipe.zadd(Keys.room_members(room), {self._member(username): time.time() + self._ttl})
        await pipe.execute()
        return await self._announce(room)

    async def leave(self, room: str, username: str) -> None:
        """Forget a socket; when the user's last socket here leaves, tell the room."""
        key = (room, username)
        if key not in self._local:
            return  # its join failed before it was recorded
        self._local[key] -= 1
        if self._local[key] > 0:
            return
        del self._local[key]
        async with self._leaving:
            await self._redis.zrem(Keys.room_members(room), self._member(username))
            if not await self._announce(room):
                await self._emptied(room)

    async def users(self, room: str) -> list[str]:
        members = await self._redis.zrangebyscore(Keys.room_members(room), time.time(), "+inf")
        return _usernames(members)

    async def counts(self, rooms: Iterable[str]) -> dict[str, int]:
        return {room: len(users) for room, users in (await members(self._redis, rooms)).items()}

    async def _announce(self, room: str) -> list[str]:
        users = await self.users(room)
        await self._announce_to(room, users)
        return users

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
                await self.sweep_elsewhere()
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
        # In batches of about REFRESH_BATCH records: a worker with 10,000 sockets
        # would otherwise hold Redis (and every message behind it) for one long
        # call, and its own loop for one huge reply.
        removed = []
        for batch in _batches(rooms, by_room, REFRESH_BATCH):
            if is_cluster(self._redis):
                removed += await self._refresh_on_cluster(batch, by_room, now)
            else:
                keys, args = self._refresh_call(batch, by_room, now)
                removed += await self._refresh_script(keys=keys, args=args)
        for room, count in zip(rooms, removed, strict=True):
            if count:
                log.info("room %s: %d presence record(s) of a vanished worker expired", room, count)
                await self._announce(room)

    async def _refresh_on_cluster(
        self, rooms: list[str], by_room: dict[str, list[str]], now: float
    ) -> list[int]:
        """_REFRESH's work as plain commands in one cluster pipeline (a script may
        touch one hash slot only, and each room is its own slot: a script per room
        cost 2,000 calls every 5 s at W9). The pipeline goes to each primary
        once; the refresh needs no atomicity. Per room, the records swept."""
        pipe = self._redis.pipeline(transaction=False)
        for room in rooms:
            key = Keys.room_members(room)
            pipe.zadd(key, dict.fromkeys(by_room[room], now + self._ttl))
            pipe.zremrangebyscore(key, "-inf", now)
        answers = await pipe.execute()
        return [int(count) for count in answers[1::2]]

    def _refresh_call(
        self, rooms: list[str], by_room: dict[str, list[str]], now: float
    ) -> tuple[list[str], list[str | float]]:
        """KEYS and ARGV of one _REFRESH call for `rooms`."""
        args: list[str | float] = [now + self._ttl, now]
        for room in rooms:
            args.append(len(by_room[room]))
            args.extend(by_room[room])
        return [Keys.room_members(room) for room in rooms], args

    async def sweep_elsewhere(self) -> list[str]:
        """Sweep expired records of rooms with no local socket; return the rooms emptied.

        One worker per refresh period does it (a lease in Redis): a room whose
        every socket died with a killed worker has no live worker to refresh
        it, so without this its people would show as present until it expires.
        """
        lease_ms = max(1, int(self._refresh_every * 1000))
        if not await self._redis.set(
            Keys.presence_sweep_lease, self.worker_id, nx=True, px=lease_ms
        ):
            return []
        local = {room for room, _ in self._local}
        rooms = [room for room in await conversation_names(self._redis) if room not in local]
        if not rooms:
            return []
        now = time.time()
        pipe = self._redis.pipeline(transaction=False)
        for room in rooms:
            pipe.zremrangebyscore(Keys.room_members(room), "-inf", now)
        emptied = []
        for room, count in zip(rooms, await pipe.execute(), strict=True):
            if count:
                log.info("room %s: %d presence record(s) of a vanished worker expired", room, count)
                if not await self._announce(room):
                    await self._emptied(room)
                    emptied.append(room)
        return emptied


async def conversation_names(redis: aioredis.Redis) -> list[str]:
    """Every conversation that may have presence records: public rooms, private
    rooms and direct conversations."""
    pipe = redis.pipeline(transaction=False)
    pipe.zrange(Keys.rooms, 0, -1)
    pipe.zrange(Keys.private_conversations, 0, -1)
    public, private = await pipe.execute()
    return [name.decode() for name in (*public, *private)]


async def members(redis: aioredis.Redis, rooms: Iterable[str]) -> dict[str, list[str]]:
    """Room -> usernames with a live record there (any worker), in one round trip."""
    rooms = list(rooms)
    pipe = redis.pipeline(transaction=False)
    now = time.time()
    for room in rooms:
        pipe.zrangebyscore(Keys.room_members(room), now, "+inf")
    results = await pipe.execute()
    return {room: _usernames(m) for room, m in zip(rooms, results, strict=True)}


async def online_users(redis: aioredis.Redis) -> dict[str, list[str]]:
    """Lower-case username -> the rooms they have a socket in right now."""
    online: dict[str, list[str]] = {}
    for room, users in (await members(redis, await conversation_names(redis))).items():
        for name in users:
            online.setdefault(name.lower(), []).append(room)
    return {name: sorted(rooms, key=str.lower) for name, rooms in online.items()}


def _usernames(members: list[bytes]) -> list[str]:
    names = {m.decode().rpartition("|")[2] for m in members}
    return sorted(names, key=str.lower)
