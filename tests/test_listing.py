"""The rooms' activity times in their listings, written in batches (chat/listing.py)."""

from __future__ import annotations

import pytest

from chatapp.chat.broker import Broker
from chatapp.chat.listing import ActivityListing
from chatapp.store.client import make_store
from chatapp.store.keys import Keys


@pytest.fixture
async def store(any_store_url):
    store = make_store(any_store_url)
    yield store
    await store.close()


async def test_messages_move_rooms_up_in_one_write_per_list(store):
    listing = ActivityListing(store.raw, every=60)  # written when the test says
    for room in ("kitchen", "lobby", "kitchen"):
        listing.touch(room, public=True)
    listing.touch("@ann:ben", public=False)
    assert await store.raw.zcard(Keys.rooms) == 0  # nothing written yet
    await listing.write()
    public = await store.raw.zrange(Keys.rooms, 0, -1, withscores=True)
    assert sorted(name for name, _ in public) == [b"kitchen", b"lobby"]
    assert len({score for _, score in public}) == 1  # the time of the write
    assert await store.raw.zrange(Keys.private_conversations, 0, -1) == [b"@ann:ben"]
    # Written once: nothing is due until the next message.
    await store.raw.delete(Keys.rooms)
    await listing.write()
    assert await store.raw.zcard(Keys.rooms) == 0


async def test_close_writes_what_is_still_due(store):
    listing = ActivityListing(store.raw, every=60)
    listing.touch("attic", public=True)
    await listing.close()
    assert await store.raw.zrange(Keys.rooms, 0, -1) == [b"attic"]


async def test_a_conversations_first_message_lists_it_at_once(store):
    broker = Broker(store, history_limit=10, rate_limit=100, rate_window=10)
    await broker.publish_message("@ann:ben", "ann", "hello", None, public=False)
    assert await store.raw.zrange(Keys.private_conversations, 0, -1) == [b"@ann:ben"]
    await broker.publish_message("@ann:ben", "ann", "again", None, public=False)
    await broker.listing.close()
