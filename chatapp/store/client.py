"""The Redis client of this process: a real Redis, a Redis Cluster, or the embedded
`memory://` store.

`redis+cluster://host:port[,host:port...]` is a Redis Cluster (7.0+) reached
through any of the listed nodes: the client is a `redis.asyncio.RedisCluster`
(`Store.cluster` is true), which routes every keyed command to the primary of
its hash slot. The names of the keys it holds, and how they share slots, are in
`chatapp.store.keys`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from chatapp.store.urls import cluster_nodes, is_cluster_url

# redis-py 8's default pool holds at most 100 connections and raises
# MaxConnectionsError at once when a burst wants more: hundreds of sockets
# joining together (each join is a few commands in flight) got HTTP 500 on the
# handshake. A blocking pool of the same size makes a burst wait its turn for
# a connection instead, and still caps what one worker opens on Redis.
POOL_SIZE = 100
POOL_WAIT = 5.0  # seconds a command waits for a free connection, then fails
# redis-py's async cluster client has no blocking pool: a node's pool raises
# MaxConnectionsError at once when full, so it gets room for a burst.
CLUSTER_POOL_SIZE = 1000  # per node


class StoreUnavailable(Exception):
    """Redis could not be reached; the message names the URL."""


class StoreMismatch(StoreUnavailable):
    """The server is not the kind the URL says (a cluster node behind redis://, or a
    plain Redis behind redis+cluster://): waiting longer does not help."""


def is_cluster(redis: object) -> bool:
    """Whether `redis` is a Redis Cluster client: a MULTI there must stay in one hash
    slot, a script touches one slot, and a pipeline cannot carry EVALSHA or PUBLISH."""
    return isinstance(redis, RedisCluster)


async def run_script_many(redis, script, calls: list[tuple[list, list]]) -> list:
    """Run `script` once per (keys, args) in `calls`; the answers in order.

    One pipelined round trip on a single Redis. A cluster pipeline cannot carry
    EVALSHA (and the calls may be on different shards): the calls go
    concurrently there, each to the primary of its keys' slot.
    """
    if is_cluster(redis):
        return list(await asyncio.gather(*(script(keys=k, args=a) for k, a in calls)))
    pipe = redis.pipeline(transaction=False)
    for keys, args in calls:
        await script(keys=keys, args=args, client=pipe)
    return await pipe.execute()


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
    raw: aioredis.Redis | RedisCluster

    @property
    def display_url(self) -> str:
        return redact(self.url)

    @property
    def cluster(self) -> bool:
        """Whether this is a Redis Cluster (sharded pub/sub, one slot per script)."""
        return isinstance(self.raw, RedisCluster)

    async def ping(self, timeout: float = 2.0) -> None:
        """Raise StoreUnavailable unless Redis answers within `timeout` seconds."""
        try:
            await asyncio.wait_for(self._ping(), timeout)
        except RedisClusterException as exc:
            text = str(exc)
            if "not enabled" in text:  # redis-py: "Cluster mode is not enabled on this node"
                raise StoreMismatch(
                    f"redis.url is {self.display_url}, but that server is not a Redis Cluster "
                    "node (cluster_enabled:0): use redis://host:port/db for a single Redis"
                ) from exc
            raise StoreUnavailable(
                f"Redis Cluster at {self.display_url}: no reachable node ({_reason(exc)})"
            ) from exc
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"Redis at {self.display_url}: {_reason(exc)}") from exc

    async def _ping(self) -> None:
        if self.cluster:
            await self.raw.initialize()  # a no-op once it has found the nodes
        await self.raw.ping()

    async def wait_ready(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for Redis to answer; StoreUnavailable after that
        (at once, StoreMismatch, when the server is not the kind the URL names)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self.ping(timeout=max(0.1, deadline - time.monotonic()))
                break
            except StoreMismatch:
                raise
            except StoreUnavailable as exc:
                if time.monotonic() >= deadline:
                    raise StoreUnavailable(f"cannot reach {exc}") from None
                await asyncio.sleep(0.2)
        if not self.cluster and not self.url.startswith("memory://"):
            await self._refuse_cluster_node()

    async def _refuse_cluster_node(self) -> None:
        """A cluster node behind a plain URL would answer MOVED for most keys: refuse."""
        try:
            info = await self.raw.info("cluster")
        except (RedisError, OSError):
            return  # not allowed INFO (an ACL), or gone again: the next step tells
        if int(info.get("cluster_enabled", 0)):
            raise StoreMismatch(
                f"redis.url is {self.display_url}, but that server is a Redis Cluster node "
                "(cluster_enabled:1): use redis+cluster://host:port[,host:port...]"
            )

    async def replicas(self) -> int:
        """The fewest replicas attached to any primary (INFO replication of each)."""
        if self.cluster:
            answers = await self.raw.info("replication", target_nodes=RedisCluster.PRIMARIES)
            infos = list(answers.values()) if isinstance(answers, dict) else [answers]
            if infos and not isinstance(infos[0], dict):  # one node: INFO itself
                infos = [answers]
        else:
            infos = [await self.raw.info("replication")]
        return min((int(i.get("connected_slaves", 0)) for i in infos), default=0)

    async def close(self) -> None:
        await self.raw.aclose()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer (timed out)"
    return str(exc) or type(exc).__name__


def _make_cluster(url: str) -> RedisCluster:
    parts = urlsplit(url.split(",", 1)[0])  # credentials and options, if any, are on the first
    options = {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster_nodes(url)],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        ssl=options.get("ssl", "").lower() in ("1", "true", "yes"),
        decode_responses=False,
        max_connections=CLUSTER_POOL_SIZE,
        socket_connect_timeout=3,
        socket_timeout=5,
        socket_keepalive=True,
        health_check_interval=15,
    )


def _make_client(url: str) -> aioredis.Redis | RedisCluster:
    if is_cluster_url(url):
        return _make_cluster(url)
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
