"""Sign-in and registration throttles in Redis, that hold under parallel load.

Policy (after OWASP's authentication cheat sheet), each a fixed window that
starts with its first counted attempt:
- per username and client address (`accounts.login_failures_per_user`, 10 per
  15 min): guessing one account from one place. It does not lock the account
  for anyone else: the right password from an address that has not been
  failing still signs in.
- per client address (`accounts.login_failures_per_address`, 50): one place
  guessing many accounts.
- per username from everywhere (`accounts.login_failures_per_user_total`,
  100): a slower limit for guessing from many addresses.
- registrations per client address (`accounts.registrations_per_address`,
  10 per hour).

An attempt is counted before bcrypt runs, by a script that takes a place only
if one is left, so 40 guesses sent at once get at most the limit checked;
a sign-in that succeeds gives its places back. A refused attempt takes no
place, so hammering one pair cannot push the username's total over for others.
Every key holds one counter (cluster-safe); names and addresses that are not
short and well-formed are hashed, so a 200 KiB username cannot become a key.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from dataclasses import dataclass

import redis.asyncio as aioredis

from chatapp.names import USERNAME_RE
from chatapp.store.keys import Keys
from chatapp.store.windows import WindowCounters

REGISTRATION_WINDOW = 3600


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0  # seconds until the window that refused ends

    @property
    def minutes(self) -> int:
        return max(1, math.ceil(self.retry_after / 60))

    @property
    def message(self) -> str:
        unit = "minute" if self.minutes == 1 else "minutes"
        return f"Too many failed login attempts. Try again in {self.minutes} {unit}."


def name_part(username: str) -> str:
    """A username as it may appear in a key: itself (lower case) if well-formed, else a hash."""
    if USERNAME_RE.fullmatch(username):
        return username.lower()
    return "h-" + hashlib.sha256(username.encode("utf-8", "replace")).hexdigest()[:32]


def address_part(address: str) -> str:
    """A client address as it may appear in a key: a valid IP as is, else a hash."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return "h-" + hashlib.sha256(address.encode("utf-8", "replace")).hexdigest()[:32]


class LoginThrottle:
    """Counts sign-in attempts per pair, address and username, registrations per address."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        per_pair: int,
        per_address: int,
        per_user_total: int,
        window: int,
        registrations_per_address: int,
    ) -> None:
        self._redis = redis
        self._window = window
        self._per_pair = per_pair
        self._per_address = per_address
        self._per_user_total = per_user_total
        self._registrations = registrations_per_address
        self._counters = WindowCounters(redis)

    def _login_limits(self, username: str, address: str) -> list[tuple[str, int]]:
        name, place = name_part(username), address_part(address)
        return [
            (Keys.login_attempts_pair(name, place), self._per_pair),
            (Keys.login_attempts_address(place), self._per_address),
            (Keys.login_attempts_user(name), self._per_user_total),
        ]

    async def attempt(self, username: str, address: str) -> Verdict:
        """Count a sign-in attempt before its password is checked; refused past a limit."""
        taken: list[str] = []
        for key, limit in self._login_limits(username, address):
            result = await self._counters.take(key, limit, self._window)
            if result < 0:
                for earlier in taken:  # a refused attempt takes no place anywhere
                    await self._counters.give_back(earlier)
                return Verdict(allowed=False, retry_after=-result)
            taken.append(key)
        return Verdict(allowed=True)

    async def succeeded(self, username: str, address: str) -> None:
        """The password was right: forget this pair's failures, give the other places back."""
        (pair, _), *others = self._login_limits(username, address)
        await self._redis.delete(pair)
        for key, _ in others:
            await self._counters.give_back(key)

    async def registration(self, address: str) -> Verdict:
        """Count a registration from `address`; refused past the hourly limit."""
        key = Keys.registrations_address(address_part(address))
        result = await self._counters.take(key, self._registrations, REGISTRATION_WINDOW)
        return Verdict(allowed=result >= 0, retry_after=max(0, -result))
