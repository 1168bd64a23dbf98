"""Key layout 2 (hash tags for a Redis Cluster): every key one script touches
shares a slot, and a Redis written by an older chatapp is renamed once at
start-up with nothing lost."""

from __future__ import annotations

import asyncio
import json

import redis.asyncio as aioredis
from redis.crc import key_slot

from chatapp.store.keys import Keys
from chatapp.store.layout import LAYOUT_KEY, ensure_layout

from .client import Client


def test_every_key_of_a_conversation_shares_one_slot():
    for room in ("lobby", "@ann:bob", "a" * 64):
        keys = [
            *Keys.room_state(room),
            Keys.room_members(room),
            Keys.room_meta(room),
            Keys.room_access(room),
            Keys.room_channel(room),
            Keys.send_rate(room, "Ann"),
        ]
        assert len({key_slot(k.encode()) for k in keys}) == 1, keys
    assert key_slot(Keys.users.encode()) == key_slot(Keys.user("Ann").encode())
    assert Keys.room_of_channel(Keys.room_channel("@ann:bob")) == "@ann:bob"


def test_conversations_spread_over_the_slots():
    """Tags are the whole conversation name, not a short bucket: 3 shards of 5,461
    slots each get close to a third of 3,000 rooms each."""
    shards = [0, 0, 0]
    for n in range(3000):
        shards[key_slot(Keys.room_seq(f"room{n}").encode()) * 3 // 16384] += 1
    assert all(abs(count - 1000) < 100 for count in shards), shards


async def old_layout(redis: aioredis.Redis) -> None:
    """What chatapp before layout 2 left in Redis: one room, one user."""
    message = {"type": "message", "id": 1, "ts": 1.0, "room": "lobby", "username": "old_ann"}
    message |= {"text": "from before", "client_id": None}
    await redis.set("chatapp:room:lobby:seq", 1)
    await redis.rpush("chatapp:room:lobby:history", json.dumps(message))
    await redis.zadd("chatapp:rooms", {"lobby": 1.0})


async def test_old_keys_are_renamed_once_and_nothing_else_is_touched(redis_url):
    redis = aioredis.Redis.from_url(redis_url)
    try:
        await old_layout(redis)
        await redis.hset("chatapp:user:old_ann", mapping={"name": "old_ann", "pw": "x"})
        await redis.zadd("chatapp:users", {"old_ann": 1.0})
        await redis.sadd("chatapp:user:old_ann:sessions", "s1")
        racers = await asyncio.gather(ensure_layout(redis), ensure_layout(redis, wait=5))
        assert sorted(racers) == [0, 4]  # one renames, the other waits for it
        assert await redis.get(LAYOUT_KEY) == b"2"
        assert await redis.lrange(Keys.room_history("lobby"), 0, -1)
        assert await redis.get(Keys.room_seq("lobby")) == b"1"
        assert await redis.hget(Keys.user("old_ann"), "name") == b"old_ann"
        assert await redis.zscore(Keys.users, "old_ann") == 1.0
        assert await redis.smembers(Keys.user_sessions("old_ann")) == {b"s1"}
        assert not await redis.exists("chatapp:room:lobby:history", "chatapp:user:old_ann")
        assert await ensure_layout(redis) == 0  # marked: never scanned again
    finally:
        await redis.aclose()


async def test_an_upgraded_app_shows_the_history_written_before(redis_url, start_server):
    redis = aioredis.Redis.from_url(redis_url)
    try:
        await old_layout(redis)
        base = await start_server()
        async with Client(base, "new_ben") as ben:
            held = (await ben.enter("lobby")).history["messages"]
            assert [m["text"] for m in held] == ["from before"]
            sock = ben.sockets[-1]
            assert (await sock.say("and after"))["id"] == 2
    finally:
        await redis.aclose()
