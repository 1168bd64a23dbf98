"""Each room on this worker has one owner: its subscription, its last id, its joins.

`LocalRoom` subscribes when its first local socket joins and unsubscribes a short
grace after the last one leaves (a socket that reconnects at once finds the
room still subscribed, as Centrifuge's node does). It knows the newest message
id its sockets have been given, `last_id`, and that one number is the seam
between history and the live feed:
- a live frame whose id is not above `last_id` is a duplicate and is dropped;
- a newcomer is added only once history has been read up to at least
  `last_id`; the messages that history holds beyond `last_id` (stored, still
  on their way from the subscriber) go to the sockets already there at once,
  and the newcomer gets them in its history frame; their live copies are
  then duplicates. No socket gets a message twice, none misses one.
- after a reconnect of the subscriber, what was published meanwhile is read
  from history after `last_id` and delivered in order;
- ids (and revs) of a room are consecutive, so a live frame that skips some
  shows frames were missed on the way (on a cluster, a slot that moved had
  them published on its new owner before this worker subscribed there): it
  is held back, with every live frame after it, until the skipped ones are
  read from history and delivered, in order.
Changes of messages (edit, delete, reaction) get the same treatment through
the room's change number, `rev`: an `update` frame whose rev is not above
`rev` is a duplicate; a join or a gap fill reads the held messages changed
after `rev` with the history, and hands the sockets already there what they
have not seen.

`LocalRooms` holds this worker's rooms by name and is what the subscriber hands
its frames to (`SubscriberListener`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from redis.exceptions import RedisError, ResponseError

from chatapp.chat import frames
from chatapp.chat.broker import Broker, History
from chatapp.chat.control import ControlEvent
from chatapp.chat.hub import Connection, Hub
from chatapp.chat.subscriber import Subscriber
from chatapp.chat.wire import wire_text

log = logging.getLogger(__name__)

UNSUBSCRIBE_GRACE = 2.0  # seconds a room stays subscribed after its last socket left
# History re-reads a join makes while it is behind `last_id`: a live frame may
# overtake the history read's reply (two connections); more than that means
# Redis lost the room's messages.
CATCH_UP_READS = 3
# The first frame's bound: the newest `chat.page_history` messages, and no more
# bytes of them than half of `chat.send_buffer_bytes`, so a joiner is never
# closed as slow (1013) because of its own history.
FIRST_FRAME_MESSAGES = 50
FIRST_FRAME_BYTES = 1_048_576 // 2
FILLS_AT_ONCE = 32  # rooms reading their gap from history together after a reconnect
# Reads of history a skipped id gets before the frames held back for it go out
# as they are (Redis unreachable meanwhile: the subscriber's own gap fill follows).
SKIP_FILL_ATTEMPTS = 3


class LocalRoom:
    """One room on this worker: subscription, `last_id`, joins and gap fills."""

    def __init__(
        self, name: str, rooms: LocalRooms, hub: Hub, broker: Broker, subscriber: Subscriber
    ) -> None:
        self.name = name
        self._rooms = rooms
        self._hub = hub
        self._broker = broker
        self._subscriber = subscriber
        self.public = True  # listed in the public room list (not private, not direct)
        self.last_id = 0  # the newest message id given to this room's sockets
        self.rev = 0  # the newest change number given to this room's sockets
        self._joining = 0  # joins between their first await and their socket's start
        self._dissolve: asyncio.TimerHandle | None = None
        # Live frames held back while ids a live frame skipped are read from history.
        self._held_back: list[bytes] | None = None
        self._filler: asyncio.Task | None = None
        # Sockets elsewhere whose person has this conversation in their sidebar:
        # each new message gets them a small `activity` frame.
        self.watchers: dict[Connection, None] = {}

    @property
    def idle(self) -> bool:
        return self._joining == 0 and not self.watchers and not self._hub.has_room(self.name)

    async def watch(self, conn: Connection) -> None:
        """Follow this conversation for `conn`'s sidebar (it is on another one)."""
        self._cancel_dissolve()
        self.watchers[conn] = None
        self._joining += 1
        try:
            await self._subscriber.subscribe(self.name)
            if not self._hub.has_room(self.name):
                # Nobody here reads it: only messages from now on are news.
                self.last_id = max(self.last_id, await self._broker.last_id(self.name))
        finally:
            self._joining -= 1
            if self.idle:
                self._dissolve_later()

    def unwatch(self, conn: Connection) -> None:
        if conn in self.watchers:
            del self.watchers[conn]
            if self.idle:
                self._dissolve_later()

    async def join(self, conn: Connection, after: int | None, rev: int | None = None) -> None:
        """Subscribe, read history, then start the socket with no gap and no duplicate.

        `after`, `rev`: what a resuming client has seen (its newest id, its
        newest change number); it gets what came after (`history` frame's
        messages and updates). The frame is bounded (`LocalRooms.first_frame`):
        the newest messages after `after` only, `more` saying whether older
        ones, still held, were left for the history API.
        """
        self._cancel_dissolve()
        self._joining += 1
        limit = self._rooms.first_frame_messages
        try:
            await self._subscriber.subscribe(self.name)
            # Read enough for the newcomer (the newest `limit` after `after`, changed
            # after `rev`) and for the sockets already here (everything after
            # `last_id`, changed after `self.rev`), then make sure the read is not
            # behind a live frame that overtook it.
            for _ in range(CATCH_UP_READS):
                here = self._hub.has_room(self.name)
                since = rev
                if here:
                    since = self.rev if since is None else min(since, self.rev)
                keep = self.last_id if here else None
                held = await self._broker.history(self.name, after, since, newest=limit, keep=keep)
                covered = not self._hub.has_room(self.name) or held.read_from <= self.last_id
                if held.last_id >= self.last_id and held.rev >= self.rev and covered:
                    break
        finally:
            self._joining -= 1
            if self.idle:  # the join failed, and nobody else is here
                self._dissolve_later()
        # From here on no await: no live frame can slip in between.
        if held.last_id < self.last_id:
            self._start_over(held)
        else:
            self._deliver_held(held)
        if after is not None and after > held.last_id:
            after = None  # ids started over since the client's last visit: all of it
            truncated = True
        else:
            truncated = after is not None and after < held.first_id - 1
        messages = (
            held.messages if after is None else [m for m in held.messages if _after(m, after)]
        )
        messages, more = self._rooms.first_frame(messages, held, after)
        updates = None
        if rev is not None:
            seen = after or 0  # messages above it are in the frame as they are now
            updates = [c.message for c in held.changes if c.rev > rev and c.id <= seen]
            if sum(map(len, updates)) > self._rooms.first_frame_bytes:
                # More changes than a frame holds (a long absence from a busy room):
                # the client starts over from the newest, as after a long absence,
                # rather than be closed as slow by its own history, again and again.
                messages, more = self._rooms.first_frame(held.messages, held, None)
                truncated, updates = True, None
        self._hub.add(conn, frames.history_frame(messages, truncated, held.rev, updates, more))

    def leave(self, conn: Connection) -> None:
        """Forget a socket; unsubscribe a grace after the room's last one left."""
        if self._hub.remove(conn) and self.idle:
            self._dissolve_later()

    def deliver(self, data: bytes, live: bool = True) -> None:
        """A frame to every local socket, unless already given.

        `live`: from the subscriber; one that skips ids or revs waits, with every
        live frame after it, for the skipped ones to be read from history.
        Frames read from history (`live=False`) are consecutive already."""
        if live and self._held_back is not None:
            self._held_back.append(data)
            return
        message_id = frames.message_id(data)
        if message_id is not None:
            if message_id <= self.last_id:
                return  # given already (history seam or gap fill)
            # (last_id 0: not read yet, as while a first watch() awaits it.)
            if (
                live
                and message_id > self.last_id + 1
                and self.last_id
                and (self.watchers or self._here())
            ):
                self._hold_back(data)
                return
            self.last_id = message_id
            if self.watchers:
                self._tell_watchers(data, message_id)
        else:
            rev = frames.update_rev(data)
            if rev is not None:
                if rev <= self.rev:
                    return  # given already (history seam or gap fill)
                if live and rev > self.rev + 1 and self._here():
                    self._hold_back(data)
                    return
                self.rev = rev
            else:
                typist = frames.typing_author(data)
                if typist is not None:  # to the others only
                    self._hub.broadcast_except(self.name, data, typist)
                    return
        self._hub.broadcast(self.name, data)

    def _here(self) -> bool:
        return self._hub.has_room(self.name)

    def _hold_back(self, data: bytes) -> None:
        log.info("room %s: a live frame skipped ids; reading them from history", self.name)
        self._held_back = [data]
        self._filler = asyncio.get_running_loop().create_task(
            self._fill_skipped(), name=f"chatapp-fill-{self.name}"
        )

    async def _fill_skipped(self) -> None:
        """Deliver what live frames skipped, from history, then the frames held back."""
        held = None
        for attempt in range(SKIP_FILL_ATTEMPTS):
            try:
                held = await self._broker.history(self.name, self.last_id, self.rev)
                break
            except ResponseError as exc:  # this room's keys are broken
                log.error("room %s: cannot read history to fill a skip: %s", self.name, exc)
                break
            except (RedisError, OSError) as exc:
                log.warning("room %s: reading a skip from history failed: %s", self.name, exc)
                await asyncio.sleep(0.1 * 2**attempt)  # backoff before the next read
        waiting, self._held_back = self._held_back or [], None
        if held is not None:
            if held.last_id < self.last_id:
                self._start_over(held)
            else:
                self._deliver_held(held)
        # Still a skip: read again (it makes progress: history holds what was
        # published); unless history could not be read at all.
        for data in waiting:
            self.deliver(data, live=held is not None)

    def _tell_watchers(self, data: bytes, message_id: int) -> None:
        author = frames.message_author(data)
        wire = wire_text(frames.activity_frame(self.name, message_id, author))
        for conn in tuple(self.watchers):
            conn.write(wire)

    async def fill_gap(self, lost: bool) -> None:
        """After a reconnect: deliver what was published meanwhile, in order."""
        try:
            if lost:
                held = await self._broker.history(self.name)
            else:
                held = await self._broker.history(self.name, self.last_id, self.rev)
        except ResponseError as exc:  # this room's keys are broken, not the connection
            log.error("room %s: cannot read history to fill the gap: %s", self.name, exc)
            return
        # A connection error propagates: the subscriber reconnects and fills again.
        if lost or held.last_id < self.last_id:
            self._start_over(held)
            return
        self._deliver_held(held)
        if held.messages:
            log.info(
                "room %s: delivered %d message(s) missed while reconnecting",
                self.name,
                len(held.messages),
            )

    def _deliver_held(self, held: History) -> None:
        """What a history read found that this room's sockets have not been given:
        new messages, then changes of the messages they hold."""
        given = self.last_id
        for data in held.messages:
            self.deliver(data, live=False)
        for change in held.changes:  # in rev order
            if change.id <= given:
                self.deliver(frames.update_frame(change.rev, change.message), live=False)
        # Changes of the messages delivered just now are in them already.
        self.rev = max(self.rev, held.rev)

    def _start_over(self, held: History) -> None:
        """Redis lost the room (restarted without persistence): its ids start over.

        Dropping ids up to `last_id` as duplicates would hide every new message,
        so local sockets start over from what Redis holds now: a fresh history
        frame, `truncated`, as after a long absence.
        """
        if self._hub.has_room(self.name):
            log.warning(
                "room %s: Redis lost its history; ids start over (now %d, were %d)",
                self.name,
                held.last_id,
                self.last_id,
            )
            self._hub.flush_room(self.name)
            # All it holds (Redis just lost the room: little), within the byte bound.
            messages, more = self._rooms.first_frame(held.messages, held, None, count=False)
            self._hub.broadcast(
                self.name,
                frames.history_frame(messages, truncated=True, rev=held.rev, more=more),
            )
        self.last_id = held.last_id
        self.rev = held.rev

    def _dissolve_later(self) -> None:
        if self._dissolve is None:
            loop = asyncio.get_running_loop()
            self._dissolve = loop.call_later(self._rooms.grace, self._dissolve_if_idle)

    def _cancel_dissolve(self) -> None:
        if self._dissolve is not None:
            self._dissolve.cancel()
            self._dissolve = None

    def _dissolve_if_idle(self) -> None:
        self._dissolve = None
        if self.idle:
            self._rooms.forget(self)
            self._subscriber.unsubscribe(self.name)


def _after(message: bytes, after: int) -> bool:
    message_id = frames.message_id(message)
    return message_id is not None and message_id > after


class LocalRooms:
    """This worker's rooms by name; the subscriber's listener."""

    def __init__(
        self,
        hub: Hub,
        broker: Broker,
        subscriber_factory: Callable[[LocalRooms], Subscriber],
        on_control: Callable[[ControlEvent], None],
        grace: float = UNSUBSCRIBE_GRACE,
        first_frame_messages: int = FIRST_FRAME_MESSAGES,
        first_frame_bytes: int = FIRST_FRAME_BYTES,
    ) -> None:
        self.grace = grace
        self.first_frame_messages = first_frame_messages
        self.first_frame_bytes = first_frame_bytes
        self._hub = hub
        self._broker = broker
        self._by_name: dict[str, LocalRoom] = {}
        self._watching: dict[Connection, set[str]] = {}  # socket -> conversations it follows
        self._on_control = on_control
        self.subscriber = subscriber_factory(self)

    def get(self, name: str) -> LocalRoom:
        room = self._by_name.get(name)
        if room is None:
            room = self._by_name[name] = LocalRoom(
                name, self, self._hub, self._broker, self.subscriber
            )
        return room

    def first_frame(
        self, messages: list[bytes], held: History, after: int | None, count: bool = True
    ) -> tuple[list[bytes], bool]:
        """The newest of `messages` (consecutive ids, oldest first) that fit in a
        first frame, and whether held messages newer than `after` were left out.

        `count`: at most `first_frame_messages` of them; always at most
        `first_frame_bytes` of them."""
        kept = messages
        if count:
            kept = messages[-self.first_frame_messages :] if self.first_frame_messages else []
        size, cut = 0, len(kept)
        while cut > 0 and size + len(kept[cut - 1]) <= self.first_frame_bytes:
            cut -= 1
            size += len(kept[cut])
        kept = kept[cut:]
        # Ids up to `lowest` are the client's already, or no longer held.
        lowest = max(after or 0, held.first_id - 1)
        oldest = (frames.message_id(kept[0]) or 0) if kept else held.last_id + 1
        return kept, oldest - 1 > lowest

    def leave(self, conn: Connection) -> None:
        room = self._by_name.get(conn.room)
        if room is not None:
            room.leave(conn)
        for name in self._watching.pop(conn, ()):
            watched = self._by_name.get(name)
            if watched is not None:
                watched.unwatch(conn)

    def unwatch(self, conn: Connection, name: str) -> None:
        """Stop following `name` for `conn` (its person left or lost the conversation)."""
        watching = self._watching.get(conn)
        if watching is not None and name in watching:
            watching.discard(name)
            room = self._by_name.get(name)
            if room is not None:
                room.unwatch(conn)

    async def watch(self, conn: Connection, names: list[str]) -> None:
        """Follow conversations other than its own for `conn`'s sidebar."""
        if conn.closing:
            return
        watching = self._watching.setdefault(conn, set())
        for name in names:
            if name != conn.room and name not in watching:
                watching.add(name)
                await self.get(name).watch(conn)

    def forget(self, room: LocalRoom) -> None:
        if self._by_name.get(room.name) is room:
            del self._by_name[room.name]

    def stop(self) -> None:
        for room in self._by_name.values():
            room._cancel_dissolve()
            if room._filler is not None:
                room._filler.cancel()

    # -- SubscriberListener ----------------------------------------------------------

    def room_frame(self, room: str, data: bytes) -> None:
        target = self._by_name.get(room)
        if target is not None:
            target.deliver(data)

    def control(self, event: ControlEvent) -> None:
        self._on_control(event)

    async def resubscribed(self, lost: bool) -> None:
        """Every room fills what it missed, a few at a time (one history read each:
        2,000 rooms one after another took seconds after a shard came back)."""
        rooms = list(self._by_name.values())
        for start in range(0, len(rooms), FILLS_AT_ONCE):
            await asyncio.gather(
                *(room.fill_gap(lost) for room in rooms[start : start + FILLS_AT_ONCE])
            )
