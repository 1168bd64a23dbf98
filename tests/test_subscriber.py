"""The worker's subscriber on a real Redis: confirmed subscriptions, and a room
left and joined again at once ends up subscribed."""

from __future__ import annotations

import asyncio

import pytest

from chatapp.chat import control
from chatapp.chat.subscriber import Subscriber
from chatapp.store.client import make_store
from chatapp.store.keys import Keys


class Heard:
    def __init__(self) -> None:
        self.frames: asyncio.Queue = asyncio.Queue()
        self.events: asyncio.Queue = asyncio.Queue()

    def room_frame(self, room: str, data: bytes) -> None:
        self.frames.put_nowait((room, data))

    def control(self, event) -> None:
        self.events.put_nowait(event)

    async def resubscribed(self, lost: bool) -> None:
        pass


@pytest.fixture
async def running(redis_url):
    """A started subscriber on a private Redis: (store, subscriber, what it heard)."""
    store = make_store(redis_url)
    heard = Heard()
    subscriber = Subscriber(store.raw, heard)
    await subscriber.start()
    yield store, subscriber, heard
    await subscriber.stop()
    await store.close()


async def test_subscribed_room_and_control_events_are_heard(running):
    store, subscriber, heard = running
    await subscriber.subscribe("lobby")
    await store.raw.publish(Keys.room_channel("lobby"), b"hello")
    await store.raw.publish(Keys.control_channel, b"garbage is logged and skipped")
    await control.publish(store.raw, control.CloseRoom("lobby", "bye"))
    assert await asyncio.wait_for(heard.frames.get(), 5) == ("lobby", b"hello")
    assert await asyncio.wait_for(heard.events.get(), 5) == control.CloseRoom("lobby", "bye")


async def test_room_left_and_joined_again_at_once_stays_subscribed(running):
    store, subscriber, heard = running
    await subscriber.subscribe("lobby")
    subscriber.unsubscribe("lobby")  # its UNSUBSCRIBE goes out in the background ...
    await subscriber.subscribe("lobby")  # ... and must not undo this
    await asyncio.gather(*subscriber._tasks)
    channels = await store.raw.pubsub_channels(Keys.room_channel("*"))
    assert channels == [Keys.room_channel("lobby").encode()]
    await store.raw.publish(Keys.room_channel("lobby"), b"still here")
    assert await asyncio.wait_for(heard.frames.get(), 5) == ("lobby", b"still here")
    subscriber.unsubscribe("lobby")
    await asyncio.gather(*subscriber._tasks)
    assert await store.raw.pubsub_channels(Keys.room_channel("*")) == []
