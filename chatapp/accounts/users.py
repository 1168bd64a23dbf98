"""Users kept in Redis: create, look up, authenticate, change.

A user is one hash under `Keys.user(name)`, keyed by the lower-case name so
names are unique regardless of case; the displayed name keeps its case.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from chatapp.accounts.hashing import Hasher
from chatapp.names import USERNAME_RE
from chatapp.store.keys import Keys

DEMO_USERS = (
    ("admin", "admin", True),
    ("thanos", "Rd123456789", False),
    ("ironman", "Rd123456789", False),
)

# Create only if the lower-case name is free; index it in the users zset.
_CREATE_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'name', ARGV[1], 'pw', ARGV[2], 'su', ARGV[3],
           'disabled', '0', 'joined', ARGV[4], 'last_login', '')
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
return 1
"""

# Set a flag unless that leaves no enabled superuser. KEYS: users zset, target
# hash; ARGV: flag, value, user key prefix, target's lower-case name.
# Returns 0 (no such user), -1 (refused: the last superuser), 1 (done).
_GUARDED_FLAG_SCRIPT = """
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local f = redis.call('HMGET', KEYS[2], 'su', 'disabled')
local powerful = f[1] == '1' and f[2] ~= '1'
local removes = (ARGV[1] == 'su' and ARGV[2] == '0')
                or (ARGV[1] == 'disabled' and ARGV[2] == '1')
if powerful and removes then
  local other = false
  for _, name in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    if name ~= ARGV[4] then
      local g = redis.call('HMGET', ARGV[3] .. name, 'su', 'disabled')
      if g[1] == '1' and g[2] ~= '1' then other = true; break end
    end
  end
  if not other then return -1 end
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""

# Start a new session generation for an existing user (never creates the hash).
_NEW_GENERATION_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('HINCRBY', KEYS[1], 'gen', 1)
"""


class LastSuperuser(Exception):
    """The change would leave no enabled superuser."""


class UsernameTaken(Exception):
    """The name (in any letter case) belongs to someone already."""


@dataclass(frozen=True)
class User:
    username: str
    is_superuser: bool
    disabled: bool
    joined: float
    last_login: float | None
    # Sessions carry the generation they were started in; ending every session
    # of a user (password change, disable) starts a new one, so a session the
    # per-user index missed is refused all the same.
    sessions_gen: int = 0

    @classmethod
    def from_hash(cls, data: dict[bytes, bytes]) -> User:
        last = data.get(b"last_login") or b""
        return cls(
            username=data[b"name"].decode(),
            is_superuser=data.get(b"su") == b"1",
            disabled=data.get(b"disabled") == b"1",
            joined=float(data.get(b"joined") or 0),
            last_login=float(last) if last else None,
            sessions_gen=int(data.get(b"gen") or 0),
        )


class Accounts:
    """The user directory. Password hashing runs in a thread, never on the loop."""

    def __init__(self, redis: aioredis.Redis, bcrypt_rounds: int) -> None:
        self._redis = redis
        self.hasher = Hasher(bcrypt_rounds)
        self._create = redis.register_script(_CREATE_SCRIPT)
        self._guarded_flag = redis.register_script(_GUARDED_FLAG_SCRIPT)
        self._new_generation = redis.register_script(_NEW_GENERATION_SCRIPT)

    async def _hash(self, password: str) -> str:
        return await self.hasher.hash(password)

    def close(self) -> None:
        self.hasher.close()

    async def create(self, username: str, password: str, *, superuser: bool = False) -> User:
        """Store a new user; raise UsernameTaken if the name exists in any case."""
        hashed = await self._hash(password)
        now = time.time()
        created = await self._create(
            keys=[Keys.user(username), Keys.users],
            args=[username, hashed, "1" if superuser else "0", repr(now), username.lower()],
        )
        if not created:
            raise UsernameTaken(username)
        return User(username, superuser, False, now, None)

    async def get(self, username: str) -> User | None:
        if not USERNAME_RE.fullmatch(username or ""):
            return None
        data = await self._redis.hgetall(Keys.user(username))
        return User.from_hash(data) if data else None

    async def exists(self, username: str) -> bool:
        return bool(await self._redis.exists(Keys.user(username)))

    async def authenticate(self, username: str, password: str) -> User | None:
        """The user if the password matches, else None.

        Unknown names cost one bcrypt check against a dummy hash, so the answer
        takes as long as for a wrong password and does not reveal who exists.
        """
        stored = None
        if USERNAME_RE.fullmatch(username or ""):
            stored = await self._redis.hmget(Keys.user(username), "pw")
            stored = stored[0].decode() if stored and stored[0] else None
        if not await self.hasher.check(password, stored):
            return None
        return await self.get(username)

    async def record_login(self, username: str) -> None:
        await self._redis.hset(Keys.user(username), "last_login", repr(time.time()))

    async def set_password(self, username: str, password: str) -> None:
        await self._redis.hset(Keys.user(username), "pw", await self._hash(password))

    async def new_session_generation(self, username: str) -> int | None:
        """Make every session started so far stale; the new generation (None: no such user)."""
        gen = await self._new_generation(keys=[Keys.user(username)])
        return None if gen == -1 else int(gen)

    async def set_flag_guarded(self, username: str, flag: str, value: bool) -> bool:
        """Set `disabled` or `su` atomically, never leaving no enabled superuser.

        Return False if the user does not exist; raise LastSuperuser if the
        change would take the last enabled superuser's rights away.
        """
        assert flag in ("disabled", "su")
        result = await self._guarded_flag(
            keys=[Keys.users, Keys.user(username)],
            args=[flag, "1" if value else "0", Keys.user(""), username.lower()],
        )
        if result == -1:
            raise LastSuperuser(username)
        return result == 1

    async def search(self, query: str = "", offset: int = 0, limit: int = 50):
        """Users whose name contains `query` (any case), by name: (total, page of User)."""
        names = sorted(n.decode() for n in await self._redis.zrange(Keys.users, 0, -1))
        query = query.lower()
        if query:
            names = [n for n in names if query in n]
        page = names[max(0, offset) : max(0, offset) + limit]
        pipe = self._redis.pipeline(transaction=False)
        for name in page:
            pipe.hgetall(Keys.user(name))
        users = [User.from_hash(data) for data in await pipe.execute() if data]
        return len(names), users

    async def seed_demo_users(self) -> list[str]:
        """Create the demo users that are missing; return the names created."""
        created = []
        for name, password, superuser in DEMO_USERS:
            if await self.exists(name):
                continue
            try:
                await self.create(name, password, superuser=superuser)
                created.append(name)
            except UsernameTaken:  # another worker seeded it first
                pass
        return created
