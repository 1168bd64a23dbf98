"""Counters over fixed windows that take a place only if one is left (throttles, quotas).

Each counter is one key and each step one single-key script, so it holds
under parallel load and on a Redis Cluster alike. A window starts with its
first place taken and ends `window` seconds later.
"""

from __future__ import annotations

import redis.asyncio as aioredis

# KEYS[1]: a counter; ARGV: limit, window (s). Take a place if one is left:
# returns the count after, or minus the seconds until the window ends.
_TAKE = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then
  local ttl = redis.call('TTL', KEYS[1])
  if ttl < 1 then ttl = tonumber(ARGV[2]) end
  return -ttl
end
n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return n
"""

# KEYS[1]: a counter. Give a place back, if the window still exists.
_GIVE_BACK = """
if redis.call('EXISTS', KEYS[1]) == 1 and tonumber(redis.call('GET', KEYS[1])) > 0 then
  return redis.call('DECR', KEYS[1])
end
return 0
"""


class WindowCounters:
    """Take and give back places in fixed-window counters."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._take = redis.register_script(_TAKE)
        self._give_back = redis.register_script(_GIVE_BACK)

    async def take(self, key: str, limit: int, window: int) -> int:
        """The count after taking a place, or minus the seconds until one frees up."""
        return int(await self._take(keys=[key], args=[limit, window]))

    async def give_back(self, key: str) -> None:
        await self._give_back(keys=[key])

    async def taken(self, key: str) -> int:
        return int(await self._redis.get(key) or 0)
