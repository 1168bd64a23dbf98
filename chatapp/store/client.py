"""The Redis client of this process: a real Redis or the embedded `memory://` store.

The names of the keys it holds are in `chatapp.store.keys`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError

# redis-py 8's default pool holds at most 100 connections and raises
# MaxConnectionsError at once when a burst wants more: hundreds of sockets
# joining together (each join is a few commands in flight) got HTTP 500 on the
# handshake. A blocking pool of the same size makes a burst wait its turn for
# a connection instead, and still caps what one worker opens on Redis.
POOL_SIZE = 100
POOL_WAIT = 5.0  # seconds a command waits for a free connection, then fails


class StoreUnavailable(Exception):
    """Redis could not be reached; the message names the URL."""


def redact(url: str) -> str:
    """The URL with any password replaced, for logs and error lines."""
    parts = urlsplit(url)
    if parts.password:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    return url


@dataclass
class Store:
    """One Redis client per process; `raw` returns bytes (aiohttp-session needs that)."""

    url: str
    raw: aioredis.Redis

    @property
    def display_url(self) -> str:
        return redact(self.url)

    async def ping(self, timeout: float = 2.0) -> None:
        """Raise StoreUnavailable unless Redis answers within `timeout` seconds."""
        try:
            await asyncio.wait_for(self.raw.ping(), timeout)
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"Redis at {self.display_url}: {_reason(exc)}") from exc

    async def wait_ready(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for Redis to answer; StoreUnavailable after that."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self.ping(timeout=max(0.1, deadline - time.monotonic()))
                return
            except StoreUnavailable as exc:
                if time.monotonic() >= deadline:
                    raise StoreUnavailable(f"cannot reach {exc}") from None
                await asyncio.sleep(0.2)

    async def close(self) -> None:
        await self.raw.aclose()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer (timed out)"
    return str(exc) or type(exc).__name__


def _make_client(url: str) -> aioredis.Redis:
    if url.startswith("memory://"):
        import fakeredis  # only the embedded store needs it

        # One server for every connection of the pool (two FakeServers share nothing).
        client = fakeredis.FakeAsyncRedis(
            server=fakeredis.FakeServer(),
            decode_responses=False,
            connection_pool_class=aioredis.BlockingConnectionPool,
            max_connections=POOL_SIZE,
        )
        client.connection_pool.timeout = POOL_WAIT  # fakeredis does not pass it on
        return client
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT,
        decode_responses=False,
        socket_connect_timeout=3,
        # A stopped (hung) Redis must not hold a request forever.
        socket_timeout=5,
        socket_keepalive=True,
        health_check_interval=15,
    )
    return aioredis.Redis.from_pool(pool)  # closing the client closes the pool


def make_store(url: str) -> Store:
    """Create the client for `url`; it connects on first use (see `Store.wait_ready`)."""
    return Store(url=url, raw=_make_client(url))
