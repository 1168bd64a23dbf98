"""Which demo users still have their demo password (for the admin page's warning).

A bcrypt check costs a quarter of a second, so it is not run on every admin
page view: the stored hashes are read (one round trip) and a demo password is
checked again only against a hash not checked before. Changing a password
changes its hash (a new salt), so the answer is never stale, whichever
worker or command changed it, and a page view with nothing changed runs no
bcrypt at all.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from chatapp.accounts.hashing import Hasher
from chatapp.accounts.users import DEMO_USERS
from chatapp.store.keys import Keys


class DemoPasswords:
    """`unchanged()`: the demo users whose password is still the demo one."""

    def __init__(self, redis: aioredis.Redis, hasher: Hasher) -> None:
        self._redis = redis
        self._hasher = hasher
        # name -> (the stored hash checked, whether the demo password matched it)
        self._checked: dict[str, tuple[bytes, bool]] = {}
        self._lock = asyncio.Lock()  # concurrent views wait for one check, not run three

    async def unchanged(self) -> list[str]:
        pipe = self._redis.pipeline(transaction=False)
        for name, _, _ in DEMO_USERS:
            pipe.hget(Keys.user(name), "pw")
        stored = await pipe.execute()
        names = []
        async with self._lock:
            for (name, password, _), hashed in zip(DEMO_USERS, stored, strict=True):
                if not hashed:  # no such user (never seeded, or another's name)
                    self._checked.pop(name, None)
                    continue
                known = self._checked.get(name)
                if known is None or known[0] != hashed:
                    matches = await self._hasher.check(password, hashed.decode("ascii", "replace"))
                    known = self._checked[name] = (hashed, matches)
                if known[1]:
                    names.append(name)
        return names
