"""This worker's subscriptions on a Redis Cluster: one connection per shard it needs.

Room channels are shard channels there (SSUBSCRIBE / SPUBLISH): a room's
traffic stays on the primary of its hash slot. The worker keeps one
subscriber connection per primary that serves a room it wants (not one per
room), each read by its own task, plus one classic SUBSCRIBE connection for
the control channel, which a cluster delivers to every node.

It follows the cluster:
- a shard connection that fails (the primary died: a failover follows), a
  `-MOVED` answer to SSUBSCRIBE (the slot map was stale), or a `sunsubscribe`
  pushed by the server (the slot migrated away) re-homes the rooms concerned:
  refresh the slot map, SSUBSCRIBE on the slot's owner now, retrying with
  backoff until the cluster has one (a failover takes ~node-timeout + an
  election);
- once every wanted room is confirmed again, the listener fills what was
  missed meanwhile from history (`resubscribed(lost=False)`): sharded pub/sub
  drops what is published while nobody listens, and the rooms' ids, kept with
  the history, tell what is missing (and deliver nothing twice). A shard that
  lost its data shows as ids that went backwards, which the rooms handle.

Why not redis-py 8.1's `RedisCluster.pubsub()` + `ssubscribe`: it re-homes
shard channels only when a slots-cache refresh happens (a MOVED met by some
other command), not on the server's pushed `sunsubscribe`, so a migrated
room could stay deaf; it tells its user nothing when it resubscribed, so
nothing would fill the gap; its per-node PubSub reconnects to the same dead
node after a failover; and `get_sharded_message` polls the nodes one after
another, each with its own timeout. This module uses redis-py's own
connection classes and PubSub per node (no retries inside: a failure comes
up here, where the cluster is looked at again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter

from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import ConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from chatapp.chat.subscriber import (
    CONFIRM_TIMEOUT,
    SubscriberListener,
    hand_control,
    messages,
)
from chatapp.store.keys import Keys
from chatapp.tasks import cancel_and_wait

log = logging.getLogger(__name__)

REPAIR_FIRST_DELAY = 0.05  # seconds before the first attempt to re-home rooms
REPAIR_MAX_DELAY = 1.0


def _pubsub_for(node: ClusterNode) -> PubSub:
    """A PubSub on a connection of its own to `node`, that never retries by itself."""
    kwargs = dict(node.connection_kwargs)
    kwargs["retry"] = Retry(NoBackoff(), 0)
    pool = ConnectionPool(connection_class=node.connection_class, max_connections=1, **kwargs)
    return PubSub(pool, ignore_subscribe_messages=False)


class _Shard:
    """The subscriber connection to one primary, and the task that reads it."""

    def __init__(self, node: ClusterNode) -> None:
        self.name = node.name
        self.pubsub = _pubsub_for(node)
        self.task: asyncio.Task | None = None
        self.leaving: Counter[str] = Counter()  # channels we SUNSUBSCRIBEd, reply due

    async def close(self) -> None:
        try:
            await self.pubsub.aclose()
            await self.pubsub.connection_pool.disconnect()
        except (RedisError, OSError) as exc:
            log.debug("closing shard connection %s: %s", self.name, exc)


class ClusterSubscriber:
    """`chat.subscriber.Subscriber`'s interface, on a Redis Cluster."""

    def __init__(self, cluster: RedisCluster, listener: SubscriberListener) -> None:
        self._rc = cluster
        self._listener = listener
        self._rooms: set[str] = set()  # rooms this worker wants
        self._confirmed: dict[str, asyncio.Future] = {}  # channel -> SSUBSCRIBE confirmed
        self._where: dict[str, str] = {}  # room -> shard (node name) it is subscribed on
        self._shards: dict[str, _Shard] = {}
        self._orphans: set[str] = set()  # wanted rooms to (re)subscribe on their owner
        self._changed = asyncio.Event()  # a confirmation or an orphan came
        self._lock = asyncio.Lock()  # subscribe / unsubscribe / re-home, one at a time
        self._repair: asyncio.Task | None = None
        self._control: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._connected = asyncio.Event()  # the control connection is subscribed
        self._stopping = False

    # -- the interface -----------------------------------------------------------------

    async def start(self) -> None:
        self._control = asyncio.create_task(self._control_loop(), name="chatapp-control")
        try:
            await asyncio.wait_for(self._connected.wait(), 10)
        except TimeoutError:
            log.warning("control subscriber not connected yet; it keeps retrying")

    async def stop(self) -> None:
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        await cancel_and_wait(self._repair)
        await cancel_and_wait(self._control)
        for shard in list(self._shards.values()):
            await cancel_and_wait(shard.task)
            await shard.close()
        self._shards.clear()

    async def subscribe(self, room: str) -> None:
        """Subscribe to a room on its shard; return once that primary confirmed it."""
        self._rooms.add(room)
        channel = Keys.room_channel(room)
        waiter = self._confirmed.get(channel)
        if waiter is None:
            waiter = self._confirmed[channel] = asyncio.get_running_loop().create_future()
            async with self._lock:
                if room in self._rooms and room not in self._where:
                    await self._ssubscribe(room)
        await asyncio.wait_for(asyncio.shield(waiter), CONFIRM_TIMEOUT)

    def unsubscribe(self, room: str) -> None:
        """Stop wanting a room now; its shard is told in the background."""
        self._rooms.discard(room)
        waiter = self._confirmed.pop(Keys.room_channel(room), None)
        if waiter is not None and not waiter.done():
            waiter.cancel()
        self._spawn(self._unsubscribe(room))

    # -- shard channels ----------------------------------------------------------------

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _unsubscribe(self, room: str) -> None:
        async with self._lock:
            if room in self._rooms:  # asked for again meanwhile
                return
            self._orphans.discard(room)
            shard = self._shards.get(self._where.pop(room, ""))
            if shard is None:
                return
            if not any(name == shard.name for name in self._where.values()):
                await self._drop_shard(shard)  # nothing else there: close it
                return
            channel = Keys.room_channel(room)
            shard.leaving[channel] += 1
            try:
                await shard.pubsub.sunsubscribe(channel)
            except (RedisError, OSError) as exc:
                self._shard_failed(shard, exc)

    async def _ssubscribe(self, room: str) -> None:
        """SSUBSCRIBE on the slot's primary as the slot map says now (under the lock).
        Trouble orphans the room: the repair task tries again."""
        channel = Keys.room_channel(room)
        waiter = self._confirmed.get(channel)
        if waiter is None or waiter.done():
            self._confirmed[channel] = asyncio.get_running_loop().create_future()
        shard = None
        try:
            node = self._rc.get_node_from_key(channel)
            shard = self._shards.get(node.name)
            if shard is None:
                shard = self._shards[node.name] = _Shard(node)
                await shard.pubsub.ssubscribe(channel)
                shard.task = asyncio.create_task(
                    self._read_shard(shard), name=f"chatapp-shard-{node.name}"
                )
            else:
                await shard.pubsub.ssubscribe(channel)
            self._where[room] = node.name
        except (RedisError, OSError) as exc:
            log.info("room %s: subscribe failed (%s); retrying", room, exc)
            self._orphan([room])
            if shard is not None:
                self._shard_failed(shard, exc)

    async def _read_shard(self, shard: _Shard) -> None:
        """Deliver what one shard connection brings, until it fails."""
        try:
            async for kind, channel, data in messages(shard.pubsub, shard.name):
                if kind == "smessage":
                    self._listener.room_frame(Keys.room_of_channel(channel), data)
                elif kind == "ssubscribe":
                    waiter = self._confirmed.get(channel)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(None)
                    self._changed.set()
                elif kind == "sunsubscribe":
                    self._sunsubscribed(shard, channel)
                elif kind == "moved":
                    self._slot_moved(shard, data)
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError, TimeoutError) as exc:
            self._shard_failed(shard, exc)

    def _sunsubscribed(self, shard: _Shard, channel: str) -> None:
        if shard.leaving[channel] > 0:  # the answer to our own SUNSUBSCRIBE
            shard.leaving[channel] -= 1
            if not shard.leaving[channel]:
                del shard.leaving[channel]
            return
        room = Keys.room_of_channel(channel)
        if self._where.get(room) == shard.name:
            # Pushed by the server: the slot is no longer this node's (migrated,
            # or the node became a replica).
            log.warning("room %s: %s unsubscribed it (slot moved); re-homing", room, shard.name)
            del self._where[room]
            self._orphan([room])

    def _slot_moved(self, shard: _Shard, slot: int) -> None:
        rooms = [
            room
            for room, name in self._where.items()
            if name == shard.name and self._rc.keyslot(Keys.room_channel(room)) == slot
        ]
        log.warning(
            "slot %d moved away from %s; re-homing %d room(s)", slot, shard.name, len(rooms)
        )
        for room in rooms:
            del self._where[room]
        self._orphan(rooms)

    def _shard_failed(self, shard: _Shard, exc: BaseException) -> None:
        """The connection to a primary failed: forget it, re-home its rooms."""
        if self._shards.get(shard.name) is not shard:
            return
        del self._shards[shard.name]
        rooms = [room for room, name in self._where.items() if name == shard.name]
        for room in rooms:
            del self._where[room]
        if not self._stopping:
            log.warning(
                "shard subscriber %s lost (%s); re-homing %d room(s)", shard.name, exc, len(rooms)
            )
        if shard.task is not None and shard.task is not asyncio.current_task():
            shard.task.cancel()
        self._spawn(shard.close())
        self._orphan(rooms)

    async def _drop_shard(self, shard: _Shard) -> None:
        self._shards.pop(shard.name, None)
        await cancel_and_wait(shard.task)
        await shard.close()

    # -- re-homing ---------------------------------------------------------------------

    def _orphan(self, rooms: list[str]) -> None:
        wanted = [room for room in rooms if room in self._rooms]
        if not wanted or self._stopping:
            return
        for room in wanted:
            waiter = self._confirmed.get(Keys.room_channel(room))
            if waiter is not None and waiter.done():  # confirm again before filling
                self._confirmed[Keys.room_channel(room)] = (
                    asyncio.get_running_loop().create_future()
                )
        self._orphans.update(wanted)
        self._changed.set()
        if self._repair is None or self._repair.done():
            self._repair = asyncio.create_task(self._rehome(), name="chatapp-rehome")

    async def _rehome(self) -> None:
        """Subscribe every orphaned room on its owner now; then fill the gaps."""
        delay = REPAIR_FIRST_DELAY
        while True:
            while self._orphans:
                await asyncio.sleep(delay)  # backoff: the cluster may be mid-failover
                delay = min(delay * 2, REPAIR_MAX_DELAY)
                try:
                    await self._rc.nodes_manager.initialize()  # the slot map now
                except (RedisError, OSError) as exc:
                    log.info("cluster slot map not refreshed (%s); retrying", exc)
                    continue
                async with self._lock:
                    rooms = sorted(self._orphans & self._rooms)
                    self._orphans.clear()
                    for room in rooms:
                        if room not in self._where:
                            await self._ssubscribe(room)
                await self._settle(rooms)
            # Every wanted room is subscribed and confirmed again: what was
            # published meanwhile is in history.
            try:
                await self._listener.resubscribed(lost=False)
                log.warning("shard subscriptions re-homed; gaps filled from history")
            except (RedisError, OSError) as exc:
                log.warning("gap fill after re-homing failed (%s); retrying", exc)
                self._orphans.update(self._rooms)  # resubscribe all and fill again
                continue
            if not self._orphans:
                return
            delay = REPAIR_FIRST_DELAY

    async def _settle(self, rooms: list[str]) -> None:
        """Until each of `rooms` is confirmed or orphaned again (or CONFIRM_TIMEOUT)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONFIRM_TIMEOUT

        def pending() -> list[str]:
            out = []
            for room in rooms:
                waiter = self._confirmed.get(Keys.room_channel(room))
                wanted = room in self._rooms and room not in self._orphans
                if wanted and waiter is not None and not waiter.done():
                    out.append(room)
            return out

        while pending():
            self._changed.clear()
            left = deadline - loop.time()
            if left <= 0:
                log.warning("%d room(s) not confirmed in time; retrying", len(pending()))
                async with self._lock:
                    for room in pending():
                        shard = self._shards.get(self._where.pop(room, ""))
                        if shard is not None:
                            self._shard_failed(shard, TimeoutError("no confirmation"))
                    self._orphan(pending())
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    # -- the control channel (classic pub/sub: every node hears every PUBLISH) ----------

    async def _control_loop(self) -> None:
        delay = 0.1
        while True:
            pubsub = None
            try:
                nodes = self._rc.get_nodes()
                if not nodes:
                    await self._rc.initialize()
                    nodes = self._rc.get_nodes()
                node = random.choice(nodes)  # noqa: S311 (spreading load, not a secret)
                pubsub = _pubsub_for(node)
                await pubsub.subscribe(Keys.control_channel)
                self._connected.set()
                delay = 0.1
                await self._read_control(pubsub, node.name)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, TimeoutError) as exc:
                if self._connected.is_set():
                    log.warning("control subscriber connection lost: %s; reconnecting", exc)
                self._connected.clear()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                with contextlib.suppress(RedisError, OSError):
                    await self._rc.nodes_manager.initialize()
            finally:
                if pubsub is not None:
                    try:
                        await pubsub.aclose()
                        await pubsub.connection_pool.disconnect()
                    except (RedisError, OSError):
                        pass

    async def _read_control(self, pubsub: PubSub, name: str) -> None:
        async for kind, _channel, data in messages(pubsub, name):
            if kind == "message":
                hand_control(self._listener, data)
