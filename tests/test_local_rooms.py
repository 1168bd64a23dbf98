"""A room on one worker: the seam between history and live frames, gap fills,
starting over when Redis lost a room, and its subscription's lifetime.

Unit tests of the chat core on the embedded memory:// store: the real broker
stores and reads history; the subscriber is replaced by one the test drives,
so it decides exactly when a published frame "arrives" on this worker.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from chatapp.chat import control, frames
from chatapp.chat.broker import Broker
from chatapp.chat.hub import Connection, Hub
from chatapp.chat.local_rooms import LocalRooms
from chatapp.store.client import make_store

from .support import until
from .test_hub import FakeSocket, FakeTransport, payloads


class DrivenSubscriber:
    """Confirms subscriptions at once; frames arrive only when the test says so."""

    def __init__(self, listener) -> None:
        self.listener = listener
        self.rooms: set[str] = set()
        self.unsubscribed = asyncio.Event()

    async def subscribe(self, room: str) -> None:
        self.rooms.add(room)

    def unsubscribe(self, room: str) -> None:
        self.rooms.discard(room)
        self.unsubscribed.set()


class World:
    def __init__(self, broker: Broker, grace: float = 60.0) -> None:
        self.hub = Hub()
        self.broker = broker
        self.events: list[control.ControlEvent] = []
        self.rooms = LocalRooms(self.hub, broker, DrivenSubscriber, self.events.append, grace)
        self.published: list[bytes] = []  # stored and "on their way" to this worker

    @property
    def subscriber(self) -> DrivenSubscriber:
        return self.rooms.subscriber

    async def store(self, text: str, room: str = "lobby") -> int:
        """Store a message as another worker would; it has not arrived here yet."""
        stored = await self.broker.publish_message(room, "zed", text, None)
        self.published.append(stored)
        return frames.message_id(stored)

    async def change(self, action: str, message_id: int, value: str = "") -> int:
        """Edit, delete or react as zed on another worker; the update has not arrived."""
        update = await self.broker.change_message("lobby", "zed", action, message_id, value)
        self.published.append(update)
        return frames.update_rev(update)

    def overtake_next_read(self, publish) -> list:
        """Make the next history read be overtaken: right after Redis answers it,
        `publish()` stores something that reaches this worker before the reply.
        Returns the list that gets what `publish` returned."""
        read = self.broker.history
        overtaken: list = []

        async def overtaken_read(room, after=None, changed_after=None, **bounds):
            held = await read(room, after, changed_after, **bounds)
            self.broker.history = read  # once
            overtaken.append(await publish())
            self.arrive()
            return held

        self.broker.history = overtaken_read
        return overtaken

    def arrive(self, room: str = "lobby") -> None:
        """Everything stored so far reaches this worker's subscriber, in order."""
        for data in self.published:
            self.rooms.room_frame(room, data)
        self.published.clear()

    async def join(
        self, after: int | None = None, room: str = "lobby", rev: int | None = None
    ) -> Connection:
        conn = Connection(FakeSocket(), FakeTransport(), "ann", room, max_buffer=1 << 20)
        await self.rooms.get(room).join(conn, after, rev)
        return conn


def frames_of(conn: Connection) -> list[dict]:
    return [f for w in conn.transport.writes for f in payloads(w)]


def ids(conn: Connection) -> list:
    """What a socket got: ["history", [ids in it]], then live ids, in order."""
    out = []
    for frame in frames_of(conn):
        if frame["type"] == "history":
            out.append(("history", [m["id"] for m in frame["messages"]], frame["truncated"]))
        elif frame["type"] == "message":
            out.append(frame["id"])
    return out


def changes(conn: Connection) -> list:
    """What a socket learnt of changes: ("history", rev, [(id, rev) of updates]),
    then ("update", id, rev) per live update, in order."""
    out = []
    for frame in frames_of(conn):
        if frame["type"] == "history":
            updates = [(m["id"], m["rev"]) for m in frame.get("updates", [])]
            out.append(("history", frame["rev"], updates))
        elif frame["type"] == "update":
            out.append(("update", frame["message"]["id"], frame["rev"]))
    return out


async def loop_turn() -> None:
    await asyncio.sleep(0)  # the hub flushes in a call_soon callback


@pytest.fixture
async def world():
    store = make_store("memory://")
    broker = Broker(store, history_limit=100, rate_limit=1000, rate_window=10)
    yield World(broker)
    await store.close()


async def test_first_socket_gets_the_history_then_live_frames(world):
    await world.store("one")
    world.arrive()  # arrives while nobody is here: nothing to do
    ann = await world.join()
    await world.store("two")
    world.arrive()
    await loop_turn()
    assert ids(ann) == [("history", [1], False), 2]
    assert "lobby" in world.subscriber.rooms


async def test_message_in_history_and_still_on_its_way_reaches_everyone_once(world):
    """Stored before a newcomer's history read, it arrives from Redis after it."""
    ann = await world.join()
    await world.store("one")
    world.arrive()
    await world.store("two")  # stored ...
    await world.store("three")  # ... and still on their way when ben joins
    ben = await world.join()
    world.arrive()  # the late copies of 2 and 3
    await world.store("four")
    world.arrive()
    await loop_turn()
    assert ids(ben) == [("history", [1, 2, 3], False), 4]
    assert ids(ann) == [("history", [], False), 1, 2, 3, 4]


async def test_live_frame_that_overtakes_the_history_read_is_not_lost(world):
    """The history read and the subscriber are two connections: a frame published
    after the read can reach the worker before the read's reply does."""
    ann = await world.join()
    overtaken = world.overtake_next_read(lambda: world.store("overtaking"))
    ben = await world.join()
    await loop_turn()
    assert overtaken == [1]
    assert ids(ben) == [("history", [1], False)]
    assert ids(ann) == [("history", [], False), 1]


async def test_resume_after_an_id_gets_only_what_came_later(world):
    for text in ("a", "b", "c"):
        await world.store(text)
    world.arrive()
    ann = await world.join(after=1)
    assert ids(ann) == [("history", [2, 3], False)]


async def test_resume_from_before_the_oldest_held_message_is_truncated():
    store = make_store("memory://")
    world = World(Broker(store, history_limit=2, rate_limit=1000, rate_window=10))
    try:
        for text in ("a", "b", "c", "d"):
            await world.store(text)
        ann = await world.join(after=1)
        assert ids(ann) == [("history", [3, 4], True)]
    finally:
        await store.close()


async def test_resume_past_the_newest_id_gets_everything_held_as_truncated(world):
    """Ids beyond the room's newest: Redis lost the room since the client was here."""
    await world.store("a")
    ann = await world.join(after=40)
    assert ids(ann) == [("history", [1], True)]


async def test_gap_fill_after_a_reconnect_delivers_what_was_missed_in_order(world):
    ann = await world.join()
    await world.store("one")
    world.arrive()
    await world.store("two")  # published while the subscriber was away: lost ...
    await world.store("three")
    world.published.clear()
    await world.rooms.resubscribed(lost=False)  # ... and filled from history
    await world.store("four")
    world.arrive()
    await loop_turn()
    assert ids(ann) == [("history", [], False), 1, 2, 3, 4]


async def test_a_live_frame_that_skips_ids_waits_for_the_skipped_ones_from_history(world):
    """On a cluster a moved slot can have messages published where this worker
    did not listen yet; the next live id then skips them. Nothing is lost and
    nothing overtakes: the skipped ones come from history first."""
    ann = await world.join()
    await world.store("one")
    world.arrive()
    await world.store("two")  # published where nobody here listened ...
    await world.store("three")
    world.published.clear()
    await world.store("four")  # ... and the next ones arrive
    await world.store("five")
    world.arrive()
    await until(lambda: len(ids(ann)) == 6, 5, "ann has 1..5")
    await world.store("six")
    world.arrive()
    await loop_turn()
    assert ids(ann) == [("history", [], False), 1, 2, 3, 4, 5, 6]


async def test_a_live_update_that_skips_revs_waits_for_the_skipped_changes(world):
    await world.store("one")
    await world.store("two")
    ann = await world.join()
    await world.change("react", 1, "👍")
    world.published.clear()  # lost on the way
    await world.change("edit", 2, "two, edited")
    world.arrive()
    await until(lambda: len(changes(ann)) == 3, 5, "ann has both updates")
    assert changes(ann) == [("history", 0, []), ("update", 1, 1), ("update", 2, 2)]


async def test_redis_that_lost_the_room_makes_its_sockets_start_over(world):
    ann = await world.join()
    for text in ("one", "two"):
        await world.store(text)
    world.arrive()
    await world.broker._redis.flushall()  # Redis restarted without persistence
    world.published.clear()
    await world.store("new one")  # ids start over at 1
    await world.rooms.resubscribed(lost=True)
    await world.store("new two")
    world.arrive()
    await loop_turn()
    assert ids(ann) == [("history", [], False), 1, 2, ("history", [1], True), 2]


async def test_newcomer_to_a_room_redis_lost_starts_over_with_the_others(world):
    ann = await world.join()
    for text in ("one", "two"):
        await world.store(text)
    world.arrive()
    await world.broker._redis.flushall()
    world.published.clear()
    ben = await world.join()
    await world.store("new one")
    world.arrive()
    await loop_turn()
    assert ids(ben) == [("history", [], False), 1]
    assert ids(ann) == [("history", [], False), 1, 2, ("history", [], True), 1]


async def test_room_unsubscribes_only_after_the_grace_and_a_quick_return_cancels_it():
    store = make_store("memory://")
    world = World(Broker(store, history_limit=10, rate_limit=1000, rate_window=10), grace=0.05)
    try:
        ann = await world.join()
        world.rooms.leave(ann)
        ben = await world.join()  # back within the grace: still the same room
        room = world.rooms.get("lobby")
        await world.store("kept")
        world.arrive()
        await loop_turn()
        assert ids(ben)[-1] == 1
        assert room.last_id == 1
        world.rooms.leave(ben)
        await asyncio.wait_for(world.subscriber.unsubscribed.wait(), 5)
        assert "lobby" not in world.subscriber.rooms
        assert world.rooms.get("lobby") is not room  # forgotten: a new owner next time
    finally:
        await store.close()


async def test_frames_of_rooms_without_a_local_socket_are_ignored(world):
    world.rooms.room_frame("nowhere", b'{"type":"message","id":1}')
    assert world.hub.rooms() == []


def test_control_events_round_trip_and_garbage_is_refused():
    for event in (control.CloseUser("ann", "logged out"), control.CloseRoom("lobby", "gone")):
        assert control.decode(control.encode(event)) == event
    for garbage in (b"not json", b"[]", b'{"action": "close_user"}', b'{"action": "dance"}'):
        with pytest.raises(control.BadControlEvent):
            control.decode(garbage)


async def test_update_that_overtakes_the_history_read_is_not_lost(world):
    """As for messages: an edit published after a newcomer's history read may reach
    the worker first; the newcomer's history then shows it, nobody gets it twice."""
    await world.store("one")
    ann = await world.join()
    overtaken = world.overtake_next_read(lambda: world.change("edit", 1, "one, edited"))
    ben = await world.join(after=0, rev=0)
    await loop_turn()
    assert overtaken == [1]
    history = next(f for f in frames_of(ben) if f["type"] == "history")
    assert history["messages"][0]["text"] == "one, edited"
    assert changes(ben) == [("history", 1, [])]
    assert changes(ann) == [("history", 0, []), ("update", 1, 1)]


async def test_gap_fill_delivers_missed_updates_once_and_in_order(world):
    ann = await world.join()
    await world.store("one")
    await world.change("react", 1, "👍")
    world.arrive()
    await world.change("edit", 1, "one, edited")  # lost while reconnecting ...
    await world.store("two")
    await world.change("react", 2, "🎉")  # (in message 2 as delivered)
    await world.change("react", 1, "👀")
    world.published.clear()
    await world.rooms.resubscribed(lost=False)  # ... and filled from history
    await world.change("delete", 2)
    world.arrive()
    await loop_turn()
    assert ids(ann) == [("history", [], False), 1, 2]
    assert changes(ann) == [
        ("history", 0, []),
        ("update", 1, 1),
        ("update", 1, 4),
        ("update", 2, 5),
    ]
    message_two = next(f for f in frames_of(ann) if f.get("id") == 2)
    assert message_two["reactions"] == {"🎉": ["zed"]}


async def test_a_resuming_newcomer_gets_its_changes_and_the_others_theirs(world):
    for text in ("one", "two"):
        await world.store(text)
    await world.change("react", 1, "👍")  # rev 1: the newcomer saw it before leaving
    world.arrive()
    ann = await world.join()
    await world.change("edit", 2, "two, edited")  # rev 2 ...
    await world.change("delete", 1)  # rev 3: on their way when ben joins
    await world.store("three")
    ben = await world.join(after=2, rev=1)
    world.arrive()  # duplicates now: everyone has them
    await loop_turn()
    assert changes(ben) == [("history", 3, [(2, 2), (1, 3)])]
    assert ids(ben) == [("history", [3], False)]
    assert changes(ann) == [("history", 1, []), ("update", 2, 2), ("update", 1, 3)]
    assert ids(ann) == [("history", [1, 2], False), 3]


async def test_a_resume_with_more_changes_than_a_frame_holds_starts_over(world):
    """Changes of held messages are bounded like the messages: past the first
    frame's byte bound, the resuming client starts over from the newest (and
    is not closed as slow by its own history on every reconnect)."""
    for i in range(30):
        await world.store(f"message {i}")
    world.arrive()
    for i in range(1, 31):
        await world.change("edit", i, f"message {i}, edited at length " + "x" * 100)
    world.arrive()
    world.rooms.first_frame_bytes = 2_000  # a handful of changed messages
    ben = await world.join(after=30, rev=0)
    [frame] = [f for f in frames_of(ben) if f["type"] == "history"]
    assert frame["truncated"] is True
    assert "updates" not in frame or not frame["updates"]
    shown = [m["id"] for m in frame["messages"]]
    assert shown == list(range(31 - len(shown), 31)) and frame["more"] is True
    assert sum(len(json.dumps(m)) for m in frame["messages"]) <= 2_000 * 1.1
    # Within the bound the changes come as updates, as before.
    world.rooms.first_frame_bytes = 1_000_000
    cat = await world.join(after=30, rev=25)
    [frame] = [f for f in frames_of(cat) if f["type"] == "history"]
    assert frame["truncated"] is False
    assert [m["id"] for m in frame["updates"]] == [26, 27, 28, 29, 30]
