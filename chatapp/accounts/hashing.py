"""bcrypt off the event loop, in two thread pools, so sign-ins never queue behind sign-ups.

Hashing a new password (registration, password change) and checking one at
sign-in both cost one bcrypt run (~0.25 s at cost 12). In one shared pool, 30
queued registrations delayed a legitimate sign-in from 0.27 s to 3.9 s. Here
checks have their own pool (`CHECK_THREADS`), new hashes theirs
(`HASH_THREADS`), and at most `HASHES_IN_FLIGHT` new hashes may wait at once:
past that `Busy` (the form answers 503 and asks to retry). So the hashing
queue can add no wait to a sign-in; what remains is sharing the CPU with at
most `HASH_THREADS` running hash, about one bcrypt run at most on two cores.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from chatapp.accounts import passwords

CHECK_THREADS = 2
HASH_THREADS = 1
HASHES_IN_FLIGHT = 4


class Busy(Exception):
    """Too many new password hashes are waiting; try again shortly."""


class Hasher:
    """Hash and check passwords with bcrypt at `rounds`, never on the event loop."""

    def __init__(self, rounds: int) -> None:
        self._rounds = rounds
        self._checks = ThreadPoolExecutor(CHECK_THREADS, thread_name_prefix="bcrypt-check")
        self._hashes = ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="bcrypt-hash")
        self._in_flight = 0
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        """The bcrypt hash of a new password; Busy if too many are already waiting."""
        if self._in_flight >= HASHES_IN_FLIGHT:
            raise Busy
        self._in_flight += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._hashes, passwords.hash_password, password, self._rounds
            )
        finally:
            self._in_flight -= 1

    async def check(self, password: str, hashed: str | None) -> bool:
        """Whether `password` matches `hashed`; with no hash, the same cost and False."""
        loop = asyncio.get_running_loop()
        if hashed is None:
            if self._dummy is None:  # computed once, on the check pool
                self._dummy = await loop.run_in_executor(
                    self._checks, passwords.hash_password, "not a password", self._rounds
                )
            await loop.run_in_executor(
                self._checks, passwords.check_password, password, self._dummy
            )
            return False
        return await loop.run_in_executor(self._checks, passwords.check_password, password, hashed)

    def close(self) -> None:
        self._checks.shutdown(wait=False, cancel_futures=True)
        self._hashes.shutdown(wait=False, cancel_futures=True)
