"""Server-side sessions in Redis through aiohttp-session's RedisStorage.

The cookie holds only an opaque random id, signed with `session.secret_key`
so a forged id never reaches Redis. Only logged-in people have a session:
an anonymous visitor's form token is a signed cookie (`chatapp.accounts.csrf`).

A session lives at most `session.max_age` seconds from its login (`since`),
whatever is done with it: a save keeps the lifetime that is left (the key's
TTL and the cookie's Max-Age), and a session older than that loads as
anonymous. Each user's session ids are indexed (`Keys.user_sessions`); every
save re-adds its id and makes the index live at least as long as the
session, so the index outlives the longest of them. Sessions carry the
user's session generation (`User.sessions_gen`): ending every session of a
user starts a new one, which refuses even a session the index missed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import secrets
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from aiohttp import hdrs, web
from aiohttp_session import AbstractStorage, Session, get_session, new_session
from aiohttp_session.redis_storage import RedisStorage
from redis.asyncio.cluster import RedisCluster

from chatapp.store.keys import Keys

_SIG_LENGTH = 32
# How often a request refreshes the session's "last seen" time (a session write).
SEEN_EVERY = 60.0
MAX_ADDRESS = 64  # characters of a client address kept in a session

# KEYS[1]: a user's session index; ARGV: session id, seconds it must live at least.
_INDEX_SCRIPT = """
redis.call('SADD', KEYS[1], ARGV[1])
local ttl = redis.call('TTL', KEYS[1])
if ttl < tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 1
"""


class SignedRedisStorage(RedisStorage):
    """RedisStorage with a signed cookie, an absolute lifetime and the per-user index."""

    def __init__(
        self, redis: aioredis.Redis, *, cookie_name: str, max_age: int, secure: bool
    ) -> None:
        options = dict(
            cookie_name=cookie_name,
            max_age=max_age,
            secure=secure,
            httponly=True,
            samesite="Lax",
        )
        key_factory = lambda: secrets.token_urlsafe(32)  # noqa: E731
        if isinstance(redis, RedisCluster):
            # RedisStorage insists on a redis.asyncio.Redis, yet only GETs and SETs
            # one key per session, which a cluster client routes by itself: set up
            # what its __init__ would, past the type check.
            AbstractStorage.__init__(self, **options)
            self._key_factory = key_factory
            self._redis = redis
        else:
            super().__init__(redis, key_factory=key_factory, **options)
        self._secret = b""
        self.redis = redis
        self.secure = secure
        self._index = redis.register_script(_INDEX_SCRIPT)

    def set_secret(self, secret: bytes) -> None:
        """Set the signing key (settled at start-up, once Redis answers)."""
        self._secret = secret

    @property
    def ready(self) -> bool:
        return bool(self._secret)

    def redis_key(self, session_id: str) -> str:
        """Where a session lives (RedisStorage builds the same name itself)."""
        return Keys.session(self.cookie_name, session_id)

    def mac(self, purpose: str, value: str) -> str:
        """A MAC of `value` for one `purpose` (cookie, form token, public handle)."""
        message = f"{purpose}\x00{value}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:_SIG_LENGTH]

    def _sign(self, session_id: str) -> str:
        mac = hmac.new(self._secret, session_id.encode(), hashlib.sha256).hexdigest()
        return mac[:_SIG_LENGTH]

    def load_cookie(self, request: web.Request) -> str | None:
        # Read from the header, not `request.cookies`: that parse is cached on
        # the request, and a socket's request lives as long as the socket.
        value = cookie_value(request.headers.get(hdrs.COOKIE, ""), self.cookie_name)
        if not value:
            return None
        session_id, _, sig = value.rpartition(".")
        if (
            not self._secret
            or not session_id
            or not hmac.compare_digest(sig, self._sign(session_id))
        ):
            return None
        return session_id

    def save_cookie(self, response: web.StreamResponse, cookie_data: str, *, max_age=None) -> None:
        signed = f"{cookie_data}.{self._sign(cookie_data)}" if cookie_data else ""
        super().save_cookie(response, signed, max_age=max_age)

    def left(self, data: dict) -> float:
        """Seconds a session's data has left to live (<= 0: it is over)."""
        since = data.get("since")
        if isinstance(since, bool) or not isinstance(since, int | float):
            return 0.0
        return since + (self.max_age or 0) - time.time()

    async def load_session(self, request: web.Request) -> Session:
        session = await super().load_session(request)
        if session.identity is not None and self.left(session) <= 0:
            # Past its absolute lifetime (or without one): anonymous, and gone.
            await self.redis.delete(self.redis_key(str(session.identity)))
            return Session(None, data=None, new=True, max_age=self.max_age)
        return session

    async def new_session(self) -> Session:
        # An id from the start, so login can index it before the response is saved.
        return Session(self._key_factory(), data=None, new=True, max_age=self.max_age)

    async def save_session(
        self, request: web.Request, response: web.StreamResponse, session: Session
    ) -> None:
        if session.identity is None:
            if session.empty:
                return
            session = _adopt(session, self._key_factory())
        session_id = str(session.identity)
        if session.empty:
            # Logged out or invalidated: nothing of it may stay in Redis.
            await self.redis.delete(self.redis_key(session_id))
            self.save_cookie(response, "", max_age=self.max_age)
            return
        if "since" not in session:
            session["since"] = time.time()
        left = math.ceil(self.left(session))
        if left <= 0:
            await self.redis.delete(self.redis_key(session_id))
            self.save_cookie(response, "", max_age=self.max_age)
            return
        data = json.dumps(self._get_session_data(session))
        # A session loaded from Redis is only rewritten while it still exists:
        # one ended meanwhile (logout in another tab, password change) stays ended.
        stored = await self.redis.set(self.redis_key(session_id), data, ex=left, xx=not session.new)
        if not stored:
            return  # the browser may hold a newer cookie already: leave it
        user = session.get("user")
        if user:
            await self._index(keys=[Keys.user_sessions(user)], args=[session_id, left])
        self.save_cookie(response, session_id, max_age=left)


def _adopt(session: Session, session_id: str) -> Session:
    """A new session with `session_id` holding `session`'s data."""
    fresh = Session(session_id, data=None, new=True, max_age=session.max_age)
    fresh.update(session)
    return fresh


def cookie_value(header: str, name: str) -> str | None:
    """`name`'s value in a Cookie header; the last one if repeated, as `request.cookies` has it."""
    found = None
    for pair in header.split(";"):
        key, sep, value = pair.partition("=")
        if sep and key.strip() == name:
            found = value.strip()
    return found


def storage_of(request: web.Request) -> SignedRedisStorage:
    return request["aiohttp_session_storage"]  # aiohttp-session's own key, set by its middleware


def csrf_token_of(session: Session) -> str:
    """The session's CSRF token, created on first use."""
    token = session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def clean_address(address: str) -> str:
    """A client address as kept and shown: printable, and short."""
    text = "".join(ch if ch.isprintable() else "?" for ch in address[:MAX_ADDRESS])
    return text or "unknown"


async def start_session(
    request: web.Request, username: str, *, gen: int, address: str, browser: str
) -> Session:
    """Log `username` in on a fresh session, deleting the old one (no fixation).

    `gen` is the user's session generation, `address` and `browser` (a
    User-Agent summary) are shown on their sessions page.
    """
    storage = storage_of(request)
    old = await get_session(request)
    if old.identity is not None:
        await storage.redis.delete(storage.redis_key(str(old.identity)))
        if old.get("user"):
            await storage.redis.srem(Keys.user_sessions(old["user"]), str(old.identity))
    session = await new_session(request)
    now = time.time()
    session.update(
        {
            "user": username,
            "since": now,
            "seen": now,
            "gen": gen,
            "addr": clean_address(address),
            "ua": browser,
        }
    )
    csrf_token_of(session)
    return session


async def rotate_session(request: web.Request, *, gen: int) -> tuple[str | None, Session]:
    """Give the current session a new id (same login time and facts); return the old id."""
    storage = storage_of(request)
    old = await get_session(request)
    old_id = str(old.identity) if old.identity is not None else None
    data = dict(old)
    user = data.get("user")
    if old_id:
        await storage.redis.delete(storage.redis_key(old_id))
        if user:
            await storage.redis.srem(Keys.user_sessions(user), old_id)
    session = await new_session(request)
    session.update(data)
    session["gen"] = gen
    session["csrf"] = secrets.token_urlsafe(32)
    return old_id, session


async def end_session(request: web.Request) -> str | None:
    """Log out: the server-side session is deleted, so a replayed cookie is anonymous.

    Returns the id of the session that ended (None if there was none).
    """
    storage = storage_of(request)
    session = await get_session(request)
    user = session.get("user")
    ended = str(session.identity) if user and session.identity is not None else None
    if ended:
        await storage.redis.srem(Keys.user_sessions(user), ended)
    session.invalidate()
    return ended


@dataclass(frozen=True)
class SessionInfo:
    """One live session of a user, as their sessions page shows it."""

    id: str
    since: float
    seen: float
    address: str
    browser: str


async def live_sessions(
    redis: aioredis.Redis, cookie_name: str, username: str, gen: int | None = None
) -> list[SessionInfo]:
    """The user's sessions that still exist (and, given `gen`, are of it), newest first.

    Ids in the index whose session is gone are taken out of it.
    """
    index = Keys.user_sessions(username)
    ids = sorted(i.decode() for i in await redis.smembers(index))
    if not ids:
        return []
    pipe = redis.pipeline(transaction=False)
    for session_id in ids:
        pipe.get(Keys.session(cookie_name, session_id))
    found, gone = [], []
    now = time.time()
    for session_id, raw in zip(ids, await pipe.execute(), strict=True):
        try:
            data = json.loads(raw)["session"] if raw else None
        except (ValueError, KeyError, TypeError):
            data = None
        if not isinstance(data, dict) or str(data.get("user", "")).lower() != username.lower():
            gone.append(session_id)
            continue
        if gen is not None and data.get("gen", 0) != gen:
            continue
        since = data.get("since") if isinstance(data.get("since"), int | float) else now
        seen = data.get("seen") if isinstance(data.get("seen"), int | float) else since
        found.append(
            SessionInfo(
                session_id,
                since,
                seen,
                str(data.get("addr") or "unknown"),
                str(data.get("ua") or "Unknown browser"),
            )
        )
    if gone:
        await redis.srem(index, *gone)
    return sorted(found, key=lambda s: s.seen, reverse=True)


async def end_sessions(
    redis: aioredis.Redis, cookie_name: str, username: str, session_ids: list[str]
) -> int:
    """Delete some sessions of `username`; return how many still existed."""
    if not session_ids:
        return 0
    pipe = redis.pipeline(transaction=False)
    pipe.delete(*(Keys.session(cookie_name, i) for i in session_ids))
    pipe.srem(Keys.user_sessions(username), *session_ids)
    deleted, _ = await pipe.execute()
    return int(deleted)


async def end_all_sessions(
    redis: aioredis.Redis, cookie_name: str, username: str, keep: str | None = None
) -> tuple[int, list[str]]:
    """Delete every session of `username` but `keep`: (how many existed, the ids).

    The count is of sessions that were still alive, not of ids the index held.
    """
    index = Keys.user_sessions(username)
    ids = [i.decode() for i in await redis.smembers(index)]
    ids = [i for i in ids if i != keep]
    return await end_sessions(redis, cookie_name, username, ids), ids
