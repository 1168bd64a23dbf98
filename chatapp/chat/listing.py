"""The rooms' last-activity times in their listings, written in batches.

A message moves its room up in the public room list (`Keys.rooms`) or in the
list of private conversations the admin page shows. Those lists are global
keys: on a Redis Cluster one primary holds them, and a ZADD per message (one a
second per room and worker, as it was) made that primary about 30 % busier
than the others when many quiet rooms talk (bench W9), and cost a round trip
in the sender's path. So each worker notes the rooms that had a message and
writes them once a second: one ZADD per list, with the time of the write.
A conversation's first message lists it at once (a direct conversation
enters the admin page's list that way).
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from chatapp.store.keys import Keys
from chatapp.tasks import cancel_and_wait

log = logging.getLogger(__name__)

LISTING_EVERY = 1.0  # seconds between a worker's writes of the activity times


class ActivityListing:
    """Rooms that had a message since the last write, written every LISTING_EVERY s."""

    def __init__(self, redis: aioredis.Redis, every: float = LISTING_EVERY) -> None:
        self._redis = redis
        self._every = every
        self._due: dict[str, set[str]] = {}  # listing key -> rooms
        self._timer: asyncio.TimerHandle | None = None
        self._writing: asyncio.Task | None = None

    def touch(self, room: str, public: bool) -> None:
        """`room` had a message now: move it up in its list at the next write."""
        key = Keys.rooms if public else Keys.private_conversations
        rooms = self._due.get(key)
        if rooms is None:
            rooms = self._due[key] = set()
        rooms.add(room)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._every, self._write_soon)

    async def list_now(self, room: str, public: bool) -> None:
        """List `room` at once: its first message (a direct conversation is listed
        from its first message on; the admin page shows it)."""
        key = Keys.rooms if public else Keys.private_conversations
        try:
            await self._redis.zadd(key, {room: time.time()})
        except (RedisError, OSError) as exc:
            log.warning("room %s not listed: %s", room, exc)
            self.touch(room, public)  # the next write tries again

    def _write_soon(self) -> None:
        self._timer = None
        self._writing = asyncio.get_running_loop().create_task(self.write(), name="chatapp-listing")

    async def write(self) -> None:
        """Write what is due now (best effort: the next message refreshes it again)."""
        due, self._due = self._due, {}
        now = time.time()
        for key, rooms in due.items():
            try:
                await self._redis.zadd(key, dict.fromkeys(rooms, now))
            except (RedisError, OSError) as exc:
                log.warning("activity of %d room(s) not listed: %s", len(rooms), exc)

    async def close(self) -> None:
        """Write what is still due, once, and stop."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await cancel_and_wait(self._writing)
        if self._due:
            await self.write()
