"""Room names and the directory of rooms (names, last activity) kept in Redis."""

from __future__ import annotations

import re
from dataclasses import dataclass

import redis.asyncio as aioredis

from .store import Keys

ROOM_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
ROOM_RULE = "1 to 64 characters: letters, digits and _, not starting with a digit."


def room_problem(name: str) -> str | None:
    """Why `name` cannot name a room, or None if it can."""
    if not name:
        return "Enter a room name."
    if not ROOM_RE.fullmatch(name):
        return f"Room names are {ROOM_RULE}"
    return None


@dataclass(frozen=True)
class RoomInfo:
    name: str
    count: int
    last_activity: float | None


class RoomDirectory:
    """Which rooms exist and when each last saw a message."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def list_rooms(self, limit: int = 200) -> list[RoomInfo]:
        pairs = await self._redis.zrevrange(Keys.rooms, 0, limit - 1, withscores=True)
        return [RoomInfo(name.decode(), 0, score or None) for name, score in pairs]
