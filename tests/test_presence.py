"""Presence records: refreshed in one round trip, a vanished worker's swept out."""

from __future__ import annotations

import time

from chatapp.chat.presence import Presence
from chatapp.store.client import make_store
from chatapp.store.keys import Keys


async def test_refresh_extends_own_records_and_sweeps_a_vanished_workers(any_store_url):
    store = make_store(any_store_url)
    announced: list[tuple[str, list[str]]] = []

    async def publish(room: str, users: list[str]) -> None:
        announced.append((room, users))

    presence = Presence(store.raw, publish=publish, empty_room_ttl=60, record_ttl=20)
    try:
        await presence.join("lobby", "ann")
        await presence.join("kitchen", "ben")
        await store.raw.zadd(Keys.room_members("lobby"), {"gone:1:aa|zed": time.time() - 1})
        announced.clear()
        before = time.time()
        await presence.refresh()
        members = await store.raw.zrange(Keys.room_members("lobby"), 0, -1, withscores=True)
        assert [m for m, _ in members] == [f"{presence.worker_id}|ann".encode()]
        assert members[0][1] >= before + 20
        assert await store.raw.zcard(Keys.room_members("kitchen")) == 1
        assert announced == [("lobby", ["ann"])]  # only the room that lost someone
    finally:
        await store.close()
