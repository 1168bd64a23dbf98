"""Presence records: refreshed in few round trips (batches of rooms), a vanished
worker's swept out, even from rooms where no live worker has a socket."""

from __future__ import annotations

import time

import pytest

from chatapp.chat import presence as presence_module
from chatapp.chat.presence import Presence
from chatapp.chat.rooms import RoomDirectory
from chatapp.store.client import make_store
from chatapp.store.keys import Keys


class Told:
    """What presence told the rooms: announcements and rooms emptied."""

    def __init__(self) -> None:
        self.announced: list[tuple[str, list[str]]] = []
        self.emptied: list[str] = []

    async def announce(self, room: str, users: list[str]) -> None:
        self.announced.append((room, users))

    async def empty(self, room: str) -> None:
        self.emptied.append(room)


@pytest.fixture
async def store(any_store_url):
    store = make_store(any_store_url)
    yield store
    await store.close()


def presence_of(store, told: Told, worker_id: str | None = None) -> Presence:
    return Presence(
        store.raw,
        announce=told.announce,
        emptied=told.empty,
        record_ttl=20,
        worker_id=worker_id,
    )


async def join(presence: Presence, store, room: str, user: str) -> None:
    pipe = store.raw.pipeline(transaction=True)
    RoomDirectory.touch(pipe, room)
    await presence.join(room, user, pipe)


async def test_refresh_extends_own_records_and_sweeps_a_vanished_workers(store):
    told = Told()
    presence = presence_of(store, told)
    await join(presence, store, "lobby", "ann")
    await join(presence, store, "kitchen", "ben")
    await store.raw.zadd(Keys.room_members("lobby"), {"gone:1:aa|zed": time.time() - 1})
    told.announced.clear()
    before = time.time()
    await presence.refresh()
    members = await store.raw.zrange(Keys.room_members("lobby"), 0, -1, withscores=True)
    assert [m for m, _ in members] == [f"{presence.worker_id}|ann".encode()]
    assert members[0][1] >= before + 20
    assert await store.raw.zcard(Keys.room_members("kitchen")) == 1
    assert told.announced == [("lobby", ["ann"])]  # only the room that lost someone


async def refresh_sweeps(store, presence: Presence, told: Told, rooms, gone, users) -> None:
    """With a vanished worker's record in each room of `gone`, one refresh leaves
    every room of `rooms` with exactly our records for `users`, pushed forward,
    and announces the rooms of `gone` only."""
    for room in gone:
        await store.raw.zadd(Keys.room_members(room), {"gone:1:aa|zed": time.time() - 1})
    told.announced.clear()
    before = time.time()
    await presence.refresh()
    for room in rooms:
        members = await store.raw.zrange(Keys.room_members(room), 0, -1, withscores=True)
        assert sorted(m for m, _ in members) == [
            f"{presence.worker_id}|{u}".encode() for u in users
        ]
        assert all(score >= before + 20 for _, score in members)
    assert sorted(told.announced) == [(room, list(users)) for room in sorted(gone)]


async def test_refresh_in_batches_reaches_every_room_and_sweeps_each(store, monkeypatch):
    monkeypatch.setattr(presence_module, "REFRESH_BATCH", 3)  # records per call
    told = Told()
    presence = presence_of(store, told)
    rooms = [f"room{i}" for i in range(7)]
    for room in rooms:
        for user in ("ann", "ben"):
            await join(presence, store, room, user)
    await refresh_sweeps(store, presence, told, rooms, ("room1", "room5"), ("ann", "ben"))


async def test_room_whose_every_socket_died_with_its_worker_is_swept_by_another(store):
    told = Told()
    dead = presence_of(store, Told(), worker_id="dead")
    await join(dead, store, "attic", "zed")
    await store.raw.zadd(Keys.room_members("attic"), {"dead|zed": time.time() - 1})
    live = presence_of(store, told, worker_id="live")
    await join(live, store, "lobby", "ann")
    told.announced.clear()
    assert await live.sweep_elsewhere() == ["attic"]
    assert told.announced == [("attic", [])]
    assert told.emptied == ["attic"]
    assert await store.raw.zcard(Keys.room_members("attic")) == 0
    # One sweeper per period: a second worker right after does nothing.
    assert await presence_of(store, Told(), worker_id="other").sweep_elsewhere() == []


async def test_private_rooms_and_direct_conversations_of_a_dead_worker_are_swept(store):
    """They are listed apart from the public rooms (Keys.private_conversations)."""
    told = Told()
    dead = presence_of(store, Told(), worker_id="dead")
    for name in ("hideout", "@ann:zed"):
        await dead.join(name, "zed", store.raw.pipeline(transaction=True))
        await store.raw.zadd(Keys.private_conversations, {name: time.time()})
        await store.raw.zadd(Keys.room_members(name), {"dead|zed": time.time() - 1})
    live = presence_of(store, told, worker_id="live")
    assert sorted(await live.sweep_elsewhere()) == ["@ann:zed", "hideout"]
    assert sorted(told.announced) == [("@ann:zed", []), ("hideout", [])]


async def test_last_person_leaving_empties_the_room_and_two_sockets_count_once(store):
    told = Told()
    presence = presence_of(store, told)
    await join(presence, store, "lobby", "ann")
    await join(presence, store, "lobby", "ann")
    assert told.announced[-1] == ("lobby", ["ann"])
    await presence.leave("lobby", "ann")
    assert told.emptied == []
    await presence.leave("lobby", "ann")
    assert told.announced[-1] == ("lobby", [])
    assert told.emptied == ["lobby"]
    await presence.leave("lobby", "ann")  # a socket whose join failed: nothing more
    assert told.emptied == ["lobby"]
