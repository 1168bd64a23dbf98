"""Server-side sessions in Redis through aiohttp-session's RedisStorage.

The cookie holds only an opaque random id, signed with `session.secret_key`
so a forged id never reaches Redis. Each user's session ids are indexed so
that disabling a user can end every one of them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import redis.asyncio as aioredis
from aiohttp import hdrs, web
from aiohttp_session import Session, get_session, new_session
from aiohttp_session.redis_storage import RedisStorage

from chatapp.store.keys import Keys

_SIG_LENGTH = 32


class SignedRedisStorage(RedisStorage):
    """RedisStorage with a signed cookie, ids known before saving, deletes on invalidate."""

    def __init__(
        self, redis: aioredis.Redis, *, cookie_name: str, max_age: int, secure: bool
    ) -> None:
        super().__init__(
            redis,
            cookie_name=cookie_name,
            max_age=max_age,
            secure=secure,
            httponly=True,
            samesite="Lax",
            key_factory=lambda: secrets.token_urlsafe(32),
        )
        self._secret = b""
        self.redis = redis

    def set_secret(self, secret: bytes) -> None:
        """Set the signing key (settled at start-up, once Redis answers)."""
        self._secret = secret

    def redis_key(self, session_id: str) -> str:
        """Where a session lives (RedisStorage builds the same name itself)."""
        return Keys.session(self.cookie_name, session_id)

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

    async def new_session(self) -> Session:
        # An id from the start, so login can index it before the response is saved.
        return Session(self._key_factory(), data=None, new=True, max_age=self.max_age)

    async def save_session(
        self, request: web.Request, response: web.StreamResponse, session: Session
    ) -> None:
        if session.empty:
            # Logged out or invalidated: nothing of it may stay in Redis.
            if session.identity is not None:
                await self.redis.delete(self.redis_key(str(session.identity)))
            self.save_cookie(response, "", max_age=session.max_age)
            return
        await super().save_session(request, response, session)


def cookie_value(header: str, name: str) -> str | None:
    """`name`'s value in a Cookie header; the last one if repeated, as `request.cookies` has it."""
    found = None
    for pair in header.split(";"):
        key, sep, value = pair.partition("=")
        if sep and key.strip() == name:
            found = value.strip()
    return found


def _storage(request: web.Request) -> SignedRedisStorage:
    return request["aiohttp_session_storage"]  # aiohttp-session's own key, set by its middleware


def csrf_token_of(session: Session) -> str:
    """The session's CSRF token, created on first use."""
    token = session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


async def start_session(request: web.Request, username: str) -> Session:
    """Log `username` in on a fresh session, deleting the old one (no fixation)."""
    storage = _storage(request)
    old = await get_session(request)
    if old.identity is not None:
        await storage.redis.delete(storage.redis_key(str(old.identity)))
    session = await new_session(request)
    session["user"] = username
    session["since"] = time.time()
    csrf_token_of(session)
    index = Keys.user_sessions(username)
    pipe = storage.redis.pipeline(transaction=False)
    pipe.sadd(index, str(session.identity))
    pipe.expire(index, storage.max_age or 1_209_600)
    await pipe.execute()
    return session


async def end_session(request: web.Request) -> str | None:
    """Log out: the server-side session is deleted, so a replayed cookie is anonymous.

    Returns the id of the session that ended (None if there was none).
    """
    storage = _storage(request)
    session = await get_session(request)
    user = session.get("user")
    ended = str(session.identity) if user and session.identity is not None else None
    if ended:
        await storage.redis.srem(Keys.user_sessions(user), ended)
    session.invalidate()
    return ended


async def end_all_sessions(redis: aioredis.Redis, cookie_name: str, username: str) -> int:
    """Delete every session of `username` (user disabled); return how many."""
    index = Keys.user_sessions(username)
    ids = await redis.smembers(index)
    keys = [Keys.session(cookie_name, i.decode()) for i in ids]
    if keys:
        await redis.delete(*keys)
    await redis.delete(index)
    return len(keys)
