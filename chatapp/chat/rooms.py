"""Room names and the directory of rooms (names, last activity) kept in Redis."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from chatapp.chat.presence import Presence
from chatapp.store.keys import Keys


@dataclass(frozen=True)
class RoomInfo:
    name: str
    count: int
    last_activity: float | None


class RoomDirectory:
    """Which rooms exist, how many people each has now, when each was last active."""

    def __init__(self, redis: aioredis.Redis, presence: Presence) -> None:
        self._redis = redis
        self._presence = presence

    async def list_rooms(self, limit: int = 500) -> list[RoomInfo]:
        """Rooms with people first, then by last activity."""
        pairs = await self._redis.zrevrange(Keys.rooms, 0, limit - 1, withscores=True)
        names = [name.decode() for name, _ in pairs]
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.exists(Keys.room_seq(name))
        alive = await pipe.execute()
        counts = await self._presence.counts(names)
        rooms, gone = [], []
        for (name, score), exists in zip(
            zip(names, (s for _, s in pairs), strict=True), alive, strict=True
        ):
            if not exists and not counts[name]:
                gone.append(name)  # its history expired while empty
                continue
            rooms.append(RoomInfo(name, counts[name], score or None))
        if gone:
            await self._redis.zrem(Keys.rooms, *gone)
        rooms.sort(key=lambda r: (r.count == 0, -(r.last_activity or 0)))
        return rooms
