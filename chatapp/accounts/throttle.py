"""Failed-login counting in Redis, per username and per client address."""

from __future__ import annotations

import math
from dataclasses import dataclass

import redis.asyncio as aioredis

from chatapp.store.keys import Keys


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0  # seconds until the oldest window ends

    @property
    def message(self) -> str:
        minutes = max(1, math.ceil(self.retry_after / 60))
        unit = "minute" if minutes == 1 else "minutes"
        return f"Too many failed login attempts. Try again in {minutes} {unit}."


class LoginThrottle:
    """Fixed windows: the first failure starts a window of `window` seconds."""

    def __init__(self, redis: aioredis.Redis, per_user: int, per_address: int, window: int) -> None:
        self._redis = redis
        self._per_user = per_user
        self._per_address = per_address
        self._window = window

    def _keys(self, username: str, address: str) -> list[tuple[str, int]]:
        return [
            (Keys.login_failures_user(username), self._per_user),
            (Keys.login_failures_address(address), self._per_address),
        ]

    async def check(self, username: str, address: str) -> Verdict:
        """Whether another attempt is allowed now."""
        pipe = self._redis.pipeline(transaction=False)
        limits = self._keys(username, address)
        for key, _ in limits:
            pipe.get(key)
            pipe.ttl(key)
        results = await pipe.execute()
        wait = 0
        for i, (_, limit) in enumerate(limits):
            count, ttl = results[2 * i], results[2 * i + 1]
            if count is not None and int(count) >= limit:
                wait = max(wait, ttl if ttl and ttl > 0 else self._window)
        return Verdict(allowed=wait == 0, retry_after=wait)

    async def record_failure(self, username: str, address: str) -> None:
        pipe = self._redis.pipeline(transaction=True)
        for key, _ in self._keys(username, address):
            pipe.incr(key)
            pipe.expire(key, self._window, nx=True)
        await pipe.execute()

    async def reset_user(self, username: str) -> None:
        """Forget a username's failures (after a successful login)."""
        await self._redis.delete(Keys.login_failures_user(username))
