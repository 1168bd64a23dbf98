"""Bring a Redis written by an older chatapp to today's key layout, once.

Layout 2 put hash tags in the names of room and user keys (see `store.keys`),
so a Redis Cluster can run each script on one shard. A Redis filled before
that holds the same data under the old names: they are renamed at start-up,
by one worker (a lease), while the others wait for it. Nothing is copied and
nothing is lost; a Redis that never held old keys is only marked.
"""

from __future__ import annotations

import asyncio
import logging
import re

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from chatapp.store.keys import PREFIX, Keys

log = logging.getLogger(__name__)

LAYOUT = b"2"
LAYOUT_KEY = PREFIX + "layout"
LEASE_KEY = PREFIX + "layout:migrating"
LEASE_SECONDS = 60
POLL_SECONDS = 0.2

# Old name -> new name. Old room keys: chatapp:room:<name>:<part>; old user
# hashes: chatapp:user:<name> (a user's other keys keep their names).
_OLD_ROOM = re.compile(rb"^chatapp:room:(.+):(seq|history|members|meta|access)$")
_OLD_USER = re.compile(rb"^chatapp:user:([^:]+)$")


def new_name(old: bytes) -> str | None:
    """The layout-2 name of a key of an older layout (None: not one of those)."""
    if old == b"chatapp:users":
        return Keys.users
    room = _OLD_ROOM.match(old)
    if room:
        return Keys._room(room.group(1).decode(), room.group(2).decode())
    user = _OLD_USER.match(old)
    if user:
        return Keys.user(user.group(1).decode())
    return None


async def _rename(redis: aioredis.Redis, old: bytes, new: str) -> bool:
    """RENAMENX; on a Redis Cluster, where the new name is in another hash slot
    (maybe on another shard), DUMP + RESTORE + DEL, the new name winning too."""
    if not isinstance(redis, RedisCluster):
        return bool(await redis.renamenx(old, new))
    data, ttl = await redis.dump(old), await redis.pttl(old)
    if data is None or await redis.exists(new):
        return False
    await redis.restore(new, max(ttl, 0), data)
    await redis.delete(old)
    return True


async def ensure_layout(redis: aioredis.Redis, wait: float = LEASE_SECONDS) -> int:
    """Rename keys of an older layout (once per Redis); return how many were renamed."""
    if await redis.get(LAYOUT_KEY) == LAYOUT:
        return 0
    if not await redis.set(LEASE_KEY, 1, nx=True, ex=LEASE_SECONDS):
        # Another worker migrates (in another process: nothing to await but Redis):
        # wait for it rather than use half-renamed keys.
        for _ in range(round(wait / POLL_SECONDS)):
            if await redis.get(LAYOUT_KEY) == LAYOUT:
                break
            await asyncio.sleep(POLL_SECONDS)
        return 0
    renamed = 0
    try:
        for pattern in ("chatapp:room:*", "chatapp:user:*", "chatapp:users"):
            async for old in redis.scan_iter(match=pattern, count=1000):
                new = new_name(old)
                # RENAMENX: a key already written under its new name wins.
                if new is not None and await _rename(redis, old, new):
                    renamed += 1
        await redis.set(LAYOUT_KEY, LAYOUT)
    finally:
        await redis.delete(LEASE_KEY)
    if renamed:
        log.warning("store: renamed %d key(s) to the key layout %s", renamed, LAYOUT.decode())
    return renamed
