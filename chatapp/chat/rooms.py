"""A room's life in Redis: created by its first join, listed, searched, expired, deleted.

A room exists while its id counter (`Keys.room_seq`) does. A join creates it
and keeps it from expiring; when its last person leaves (on any worker) its
keys expire after `chat.empty_room_ttl` seconds (0: at once); deleting it
removes every key. The directory (`Keys.rooms`) scores rooms by last activity.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from chatapp.chat import presence
from chatapp.chat.conversations import DM_RE
from chatapp.names import ROOM_RE
from chatapp.store.client import is_cluster
from chatapp.store.keys import Keys
from chatapp.store.windows import WindowCounters

QUOTA_WINDOW = 3600  # chat.rooms_per_hour counts rooms created in this many seconds


class RoomQuotaReached(Exception):
    """The person has created `chat.rooms_per_hour` rooms this hour."""


@dataclass(frozen=True)
class RoomInfo:
    name: str
    count: int
    last_activity: float | None


@dataclass(frozen=True)
class RoomRow:
    """A conversation as the admin page shows it (never its messages)."""

    name: str
    people: list[str]
    messages: int
    last_activity: float | None
    kind: str = "room"  # room, private or dm
    members: int | None = None  # a private room's or a direct conversation's


class RoomDirectory:
    """Which rooms exist, who is in each now, when each was last active."""

    def __init__(self, redis: aioredis.Redis, empty_room_ttl: int, rooms_per_hour: int) -> None:
        self._redis = redis
        self._empty_room_ttl = empty_room_ttl
        self._rooms_per_hour = rooms_per_hour
        self._counters = WindowCounters(redis)
        self._admitting: dict[str, asyncio.Future[bool]] = {}  # room -> its creation in flight

    async def canonical(self, room: str) -> str | None:
        """The name of the room `room` names in any letter case, or None if none does."""
        found = await self._redis.hget(Keys.room_names, room.lower())
        return found.decode() if found is not None else None

    async def backfill_names(self) -> None:
        """Give rooms listed before names were case-folded their entry (idempotent)."""
        names = [n.decode() for n in await self._redis.zrange(Keys.rooms, 0, -1)]
        if names:
            pipe = self._redis.pipeline(transaction=False)
            for name in names:
                pipe.hsetnx(Keys.room_names, name.lower(), name)
            await pipe.execute()

    async def claim(self, room: str) -> str:
        """The room's name in its first casing, claiming `room`'s casing if it is new.

        Names are unique regardless of case: `General` and `general` are one room,
        named as whoever came first spelled it.
        """
        pipe = self._redis.pipeline(transaction=True)  # one key: fine on a cluster too
        pipe.hsetnx(Keys.room_names, room.lower(), room)
        pipe.hget(Keys.room_names, room.lower())
        _, name = await pipe.execute()
        return name.decode()

    async def admit(self, room: str, username: str) -> bool:
        """Make sure `room` exists, creating it on `username`'s hourly quota.

        Return True if it was created now; raise RoomQuotaReached (nothing
        created) if it did not exist and the person's quota is spent. Each
        step touches one key (the room's, or the person's counter). Joins of
        one new room that arrive together on this worker wait for the first
        one's answer instead of each counting a creation.
        """
        pending = self._admitting.get(room)
        if pending is not None:
            try:
                await asyncio.shield(pending)
                return False  # created (or found) by the join before this one
            except RoomQuotaReached:
                pass  # that person's quota was spent; this one may still create it
        task = asyncio.ensure_future(self._admit(room, username))
        self._admitting[room] = task
        try:
            return await asyncio.shield(task)
        finally:
            if self._admitting.get(room) is task:
                del self._admitting[room]

    async def _admit(self, room: str, username: str) -> bool:
        if await self._redis.exists(Keys.room_seq(room)):
            return False
        if not await self.take_creation(username):
            raise RoomQuotaReached(room)
        if not await self._redis.set(Keys.room_seq(room), 0, nx=True):
            await self.give_back_creation(username)  # another worker created it meanwhile
            return False
        return True

    async def take_creation(self, username: str) -> bool:
        """Count a room `username` creates on their hourly quota; False if it is spent."""
        key = Keys.rooms_created(username)
        return await self._counters.take(key, self._rooms_per_hour, QUOTA_WINDOW) > 0

    async def give_back_creation(self, username: str) -> None:
        """A creation counted on the quota did not happen after all."""
        await self._counters.give_back(Keys.rooms_created(username))

    async def discard_new(self, room: str) -> None:
        """Undo `admit` of a room created a moment ago under a casing another took first."""
        await self._redis.delete(Keys.room_seq(room))

    async def can_create(self, username: str) -> bool:
        """Whether `username` may still create a room this hour (for forms)."""
        return await self._counters.taken(Keys.rooms_created(username)) < self._rooms_per_hour

    @staticmethod
    def touch(pipe: aioredis.client.Pipeline, room: str) -> None:
        """Add to `pipe`: create the room if new, keep it from expiring, list it as active."""
        pipe.set(Keys.room_seq(room), 0, nx=True)
        for key in Keys.room_state(room):
            pipe.persist(key)
        pipe.zadd(Keys.rooms, {room: time.time()})

    async def exists(self, room: str) -> bool:
        """Whether a room, private room or direct conversation of that name exists."""
        if not (ROOM_RE.fullmatch(room or "") or DM_RE.fullmatch(room or "")):
            return False
        pipe = self._redis.pipeline(transaction=False)
        pipe.zscore(Keys.rooms, room)
        pipe.zscore(Keys.private_conversations, room)
        pipe.exists(Keys.room_seq(room), Keys.room_history(room), Keys.room_members(room))
        public, private, count = await pipe.execute()
        return public is not None or private is not None or count > 0

    async def list_rooms(self, limit: int = 500) -> list[RoomInfo]:
        """Rooms with people first, then by last activity."""
        pairs = await self._redis.zrevrange(Keys.rooms, 0, limit - 1, withscores=True)
        names = [name.decode() for name, _ in pairs]
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.exists(Keys.room_seq(name))
        alive = await pipe.execute()
        counts = {
            n: len(users) for n, users in (await presence.members(self._redis, names)).items()
        }
        rooms, gone = [], []
        for (name, score), exists in zip(
            zip(names, (s for _, s in pairs), strict=True), alive, strict=True
        ):
            if not exists and not counts[name]:
                gone.append(name)  # its history expired while empty
                continue
            rooms.append(RoomInfo(name, counts[name], score or None))
        if gone:
            pipe = self._redis.pipeline(transaction=False)
            pipe.zrem(Keys.rooms, *gone)
            pipe.hdel(Keys.room_names, *(name.lower() for name in gone))
            await pipe.execute()
        rooms.sort(key=lambda r: (r.count == 0, -(r.last_activity or 0)))
        return rooms

    async def search(
        self, query: str = "", offset: int = 0, limit: int = 50
    ) -> tuple[int, list[RoomRow]]:
        """Conversations of every kind whose name contains `query` (any case), newest
        activity first: public rooms, private rooms and direct conversations."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.zrevrange(Keys.rooms, 0, -1, withscores=True)
        pipe.zrevrange(Keys.private_conversations, 0, -1, withscores=True)
        public, private = await pipe.execute()
        pairs = sorted([*public, *private], key=lambda pair: -pair[1])
        query = query.lower()
        rooms = [(n.decode(), s) for n, s in pairs if not query or query in n.decode().lower()]
        page = rooms[max(0, offset) : max(0, offset) + limit]
        names = [name for name, _ in page]
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.llen(Keys.room_history(name))
            pipe.hget(Keys.room_meta(name), "kind")
            pipe.scard(Keys.room_access(name))
        facts = await pipe.execute()
        people = await presence.members(self._redis, names)
        rows = []
        for i, (name, score) in enumerate(page):
            length, kind, members = facts[3 * i : 3 * i + 3]
            if DM_RE.fullmatch(name):
                rows.append(RoomRow(name, people[name], length, score or None, "dm", 2))
            elif kind == b"private":
                rows.append(RoomRow(name, people[name], length, score or None, "private", members))
            else:
                rows.append(RoomRow(name, people[name], length, score or None))
        return len(rooms), rows

    async def expire_when_empty(self, room: str) -> None:
        """The room's last person left: its keys expire (or go at once with ttl 0)."""
        keys = Keys.room_state(room)
        if self._empty_room_ttl == 0 and is_cluster(self._redis):
            # The room's keys share its hash slot (one MULTI); the listing and the
            # name are global keys of other slots: a second, plain pipeline. A
            # crash between the two leaves a listed room with no history, which
            # is what an empty room looks like anyway.
            pipe = self._redis.pipeline(transaction=True)
            pipe.delete(*keys, Keys.room_members(room), Keys.room_published(room))
            await pipe.execute()
            pipe = self._redis.pipeline(transaction=False)
            pipe.zrem(Keys.rooms, room)
            pipe.hdel(Keys.room_names, room.lower())
            await pipe.execute()
            return
        pipe = self._redis.pipeline(transaction=True)
        if self._empty_room_ttl == 0:
            pipe.delete(*keys, Keys.room_members(room), Keys.room_published(room))
            pipe.zrem(Keys.rooms, room)
            pipe.hdel(Keys.room_names, room.lower())
        else:
            for key in keys:  # all in the room's hash slot
                pipe.expire(key, self._empty_room_ttl)
        await pipe.execute()

    async def delete(self, room: str) -> None:
        """Remove the room's history, presence and listing (its sockets are closed first)."""
        cluster = is_cluster(self._redis)
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(*Keys.room_state(room), Keys.room_members(room), Keys.room_published(room))
        pipe.delete(Keys.room_meta(room), Keys.room_access(room))
        if cluster:
            # One MULTI per hash slot: the room's own keys above, atomically; the
            # listings and the name (global keys, each its own slot) after them,
            # plainly: a crash between leaves a listed room with no messages,
            # which the next delete or expiry clears.
            await pipe.execute()
            pipe = self._redis.pipeline(transaction=False)
        pipe.zrem(Keys.rooms, room)
        pipe.zrem(Keys.private_conversations, room)
        pipe.hdel(Keys.room_names, room.lower())
        await pipe.execute()
