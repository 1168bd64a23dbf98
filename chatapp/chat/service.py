"""This worker's chat service: joins, leaves, sends and control events.

It wires the parts of the real-time path and is the only module that knows
them all: the hub holds sockets, each local room owns its subscription and
its seam (`local_rooms`), the broker stores and publishes, presence tracks
people, the directory keeps rooms' lives, the heartbeat pings.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass

from redis.exceptions import RedisError

from chatapp.chat import control, frames
from chatapp.chat.broker import Broker
from chatapp.chat.cluster_subscriber import ClusterSubscriber
from chatapp.chat.control import (
    CloseMember,
    CloseRoom,
    CloseSessions,
    CloseUser,
    ControlEvent,
    ToPerson,
)
from chatapp.chat.conversations import Conversation, Conversations, dm_peer, is_dm, mentioned
from chatapp.chat.heartbeat import Heartbeat
from chatapp.chat.hub import Connection, Hub
from chatapp.chat.local_rooms import LocalRooms
from chatapp.chat.presence import Presence
from chatapp.chat.rooms import RoomDirectory, RoomQuotaReached
from chatapp.chat.search import Search
from chatapp.chat.session_watch import SessionWatch
from chatapp.chat.subscriber import Subscriber
from chatapp.chat.wire import GOING_AWAY, POLICY
from chatapp.config import Config
from chatapp.i18n import in_language, nMsg
from chatapp.metrics import Metrics
from chatapp.store.client import Store, is_cluster
from chatapp.store.keys import Keys

log = logging.getLogger(__name__)

MAX_MENTIONS = 20  # people one message can notify (more @names are only highlighted)
TYPING_EVERY = 2.0  # seconds: at most one `typing` relay per person per conversation


class Refused(Exception):
    """A join past a quota: the socket gets an `error` frame, then a 1008 close."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class ChatLimits:
    max_message_length: int
    max_frame_bytes: int
    send_buffer_bytes: int


class ChatService:
    """Everything a socket handler needs, for one worker."""

    def __init__(self, store: Store, config: Config, metrics: Metrics) -> None:
        chat = config.chat
        self.limits = ChatLimits(
            max_message_length=chat.max_message_length,
            max_frame_bytes=chat.max_frame_bytes,
            send_buffer_bytes=chat.send_buffer_bytes,
        )
        self._redis = store.raw
        self.metrics = metrics
        self.hub = Hub(on_slow=lambda: metrics.inc("chatapp_slow_sockets_closed_total"))
        self.broker = Broker(
            store,
            history_limit=chat.history_limit,
            rate_limit=chat.rate_limit_messages,
            rate_window=chat.rate_limit_seconds,
            # memory:// has no replicas (and one process): nothing to wait for.
            wait_replicas=0 if config.is_memory_store else config.redis.wait_replicas,
            wait_timeout=config.redis.wait_timeout,
        )
        self.presence = Presence(
            store.raw,
            announce=self._announce,
            emptied=self._room_emptied,
            record_ttl=chat.presence_ttl,
        )
        self.conversations = Conversations(store.raw)
        self.search = Search(store.raw, self.conversations)
        self.directory = RoomDirectory(store.raw, chat.empty_room_ttl, chat.rooms_per_hour)
        self._max_sockets = chat.max_sockets_per_user
        self._rooms_per_hour = chat.rooms_per_hour
        self._sockets_of: Counter[str] = Counter()  # lower-case username -> open sockets
        # Sockets refused past the per-person quota: never counted (rare, so this set
        # is small, unlike a set of every counted socket).
        self._refused: set[Connection] = set()
        self._sidebars: set[Connection] = set()  # sockets whose page shows a sidebar
        # (lower-case username, conversation) -> when their last `typing` was relayed
        self._typing_relayed: dict[tuple[str, str], float] = {}
        self.rooms = LocalRooms(
            self.hub,
            self.broker,
            subscriber_factory=lambda listener: (
                ClusterSubscriber(store.raw, listener)
                if store.cluster
                else Subscriber(store.raw, listener)
            ),
            on_control=self._control,
            first_frame_messages=chat.page_history,
            first_frame_bytes=chat.send_buffer_bytes // 2,
        )
        self.heartbeat = Heartbeat(self.hub, chat.heartbeat_seconds)
        cookie = config.session.cookie_name
        self.session_watch = SessionWatch(
            self.hub,
            store.raw,
            lambda session_id: Keys.session(cookie, session_id),
            chat.heartbeat_seconds,
        )
        self._tasks: set[asyncio.Task] = set()
        metrics.counter("chatapp_messages_stored_total", "Messages stored by this worker")
        metrics.counter("chatapp_errors_sent_total", "Error frames sent to clients")
        metrics.counter("chatapp_slow_sockets_closed_total", "Sockets closed for being too slow")
        metrics.gauge("chatapp_sockets", "Open chat sockets on this worker", self.hub.socket_count)
        metrics.gauge(
            "chatapp_rooms_local",
            "Rooms with a socket on this worker",
            lambda: len(self.hub.rooms()),
        )

    async def start(self) -> None:
        await self.directory.backfill_names()
        await self.rooms.subscriber.start()
        self.presence.start()
        self.heartbeat.start()
        self.session_watch.start()

    async def stop(self) -> None:
        """Close every socket with 1001, withdraw presence, stop listening."""
        await self.heartbeat.stop()
        await self.session_watch.stop()
        await self.close_all(GOING_AWAY, "server shutting down")
        await self.presence.stop()
        self.rooms.stop()
        await self.rooms.subscriber.stop()
        await self.broker.listing.close()
        for task in list(self._tasks):
            task.cancel()

    async def close_all(self, code: int, reason: str) -> None:
        await asyncio.gather(*(c.close(code, reason) for c in self.hub.connections()))

    # -- joining and leaving -------------------------------------------------------

    async def join(
        self,
        conn: Connection,
        after: int | None,
        conversation: Conversation | None = None,
        *,
        rev: int | None = None,
        sidebar: bool = False,
    ) -> None:
        """Start the socket on its conversation (history, then live), record presence,
        then (`sidebar`) follow the person's other conversations for their sidebar.

        `conversation`: what the handshake found the socket may read (default:
        a public room). Raise Refused past a quota: too many sockets of one
        person on this worker, or a new room past the person's hourly quota
        (nothing created).
        """
        conversation = conversation or Conversation(conn.room, "room")
        user = conn.username.lower()
        if self._sockets_of[user] >= self._max_sockets:
            self._refused.add(conn)
            raise Refused(
                "too_many_sockets",
                nMsg(
                    "You already have {n} chat connection open here, the most allowed: "
                    "close some tabs and reload.",
                    "You already have {n} chat connections open here, the most allowed: "
                    "close some tabs and reload.",
                    self._max_sockets,
                ),
            )
        self._sockets_of[user] += 1
        public = conversation.kind == "room"
        if public and not self.hub.has_room(conn.room):  # else it surely exists, named so
            conn.room = await self._existing_or_new(conn.room, conn.username)
        room = self.rooms.get(conn.room)
        room.public = public
        await room.join(conn, after, rev)
        # Independent idempotent writes (listing, the person's list, presence):
        # one MULTI on a single Redis; on a cluster they live in other hash
        # slots and need no atomicity, so they go as a plain pipeline there.
        pipe = self._redis.pipeline(transaction=not is_cluster(self._redis))
        if public:
            self.directory.touch(pipe, conn.room)
            pipe.zadd(Keys.user_conversations(user), {conn.room: time.time()}, nx=True)
        await self.presence.join(conn.room, conn.username, pipe)
        if sidebar:
            self._sidebars.add(conn)
            self._spawn(self._follow_sidebar(conn))

    async def _follow_sidebar(self, conn: Connection) -> None:
        """Watch the person's other conversations, so their sidebar counts move live."""
        try:
            names = await self.conversations.names(conn.username)
            await self.rooms.watch(conn, names)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("sidebar of %s not followed: %s", conn.username, exc)
            return
        # Followed from now on: a list the page asks for now misses nothing
        # (what came before is in it, what comes after arrives as frames).
        conn.send_now(frames.following_frame())

    async def _existing_or_new(self, room: str, username: str) -> str:
        """The room, created now on `username`'s quota if it does not exist yet.

        `room` is already the room's first casing when it has one (the handshake
        looked it up); a room created now claims its casing, and if another
        casing won a race meanwhile, that room is the one.
        """
        try:
            created = await self.directory.admit(room, username)
        except RoomQuotaReached:
            raise Refused(
                "room_quota",
                nMsg(
                    "You have reached the limit of {n} new room per hour: "
                    "join an existing room, or try again later.",
                    "You have reached the limit of {n} new rooms per hour: "
                    "join an existing room, or try again later.",
                    self._rooms_per_hour,
                ),
            ) from None
        if created:
            name = await self.directory.claim(room)
            if name != room:  # another casing came first: that is the room
                await self.directory.discard_new(room)
                return name
        return room

    async def leave(self, conn: Connection) -> None:
        self._sidebars.discard(conn)
        if conn in self._refused:
            self._refused.discard(conn)
        else:
            user = conn.username.lower()
            self._sockets_of[user] -= 1
            if self._sockets_of[user] <= 0:
                del self._sockets_of[user]
        self.rooms.leave(conn)
        await self.presence.leave(conn.room, conn.username)

    # -- sending -------------------------------------------------------------------

    async def send(
        self, conn: Connection, text: str, client_id: str | None, reply_to: int | None = None
    ) -> int:
        public = self.rooms.get(conn.room).public
        stored = await self.broker.publish_message(
            conn.room, conn.username, text, client_id, public=public, reply_to=reply_to
        )
        self.metrics.inc("chatapp_messages_stored_total")
        # Only direct messages and mentions tell anyone: nothing per recipient otherwise.
        if not public or "@" in text:
            await self._tell_people(conn, stored, text)
        return frames.message_id(stored) or 0

    async def _tell_people(self, conn: Connection, stored: bytes, text: str) -> None:
        """`notify` the other person of a direct message, and the people it mentions."""
        name, me = conn.room, conn.username.lower()
        events: list[ToPerson] = []
        pipe = self._redis.pipeline(transaction=False)
        if is_dm(name):
            peer = dm_peer(name, me)
            url = f"/dm/{conn.username}/"
            events.append(ToPerson(peer, name, frames.notify_frame(name, url, stored), True))
            for person in {peer, me}:
                pipe.zadd(Keys.user_conversations(person), {name: time.time()}, nx=True)
        else:
            targets = sorted(mentioned(text) - {me})[:MAX_MENTIONS]
            if targets:
                check = self._redis.pipeline(transaction=False)
                for target in targets:
                    if self.rooms.get(name).public:
                        check.exists(Keys.user(target))
                    else:
                        check.sismember(Keys.room_access(name), target)
                allowed = await check.execute()
                url = f"/chat/{name}/"
                for target, ok in zip(targets, allowed, strict=True):
                    if ok:
                        frame = frames.notify_frame(name, url, stored)
                        events.append(ToPerson(target, name, frame, True))
                        pipe.zadd(Keys.user_conversations(target), {name: time.time()}, nx=True)
        if not events:
            return
        if is_cluster(self._redis):  # a cluster pipeline cannot carry PUBLISH
            await pipe.execute()
            for event in events:
                await control.publish(self._redis, event)
            return
        for event in events:
            pipe.publish(Keys.control_channel, control.encode(event))
        await pipe.execute()

    async def edit(self, conn: Connection, message_id: int, text: str) -> None:
        await self.broker.change_message(conn.room, conn.username, "edit", message_id, text)

    async def delete(self, conn: Connection, message_id: int) -> None:
        """Delete a message: the author's own, or any for a superuser or the private
        room's owner."""
        moderator = await self._moderates(conn)
        await self.broker.change_message(
            conn.room, conn.username, "delete", message_id, moderator=moderator
        )

    async def react(self, conn: Connection, message_id: int, emoji: str) -> None:
        """Toggle the person's `emoji` reaction on a message."""
        await self.broker.change_message(conn.room, conn.username, "react", message_id, emoji)

    async def _moderates(self, conn: Connection) -> bool:
        """May this person delete others' messages here (superuser, private room owner)?"""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hget(Keys.user(conn.username), "su")
        pipe.hmget(Keys.room_meta(conn.room), "kind", "owner")
        superuser, (kind, owner) = await pipe.execute()
        return superuser == b"1" or (
            kind == b"private" and owner is not None and owner.decode() == conn.username.lower()
        )

    async def typing(self, conn: Connection) -> None:
        """Relay "is typing" to the others in the conversation, at most every 2 s
        per person (dropped silently in between); never stored."""
        now = time.monotonic()
        key = (conn.username.lower(), conn.room)
        if now - self._typing_relayed.get(key, -TYPING_EVERY) < TYPING_EVERY:
            return
        if len(self._typing_relayed) > 10_000:  # forget relays past their throttle
            self._typing_relayed = {
                k: t for k, t in self._typing_relayed.items() if now - t < TYPING_EVERY
            }
        self._typing_relayed[key] = now
        await self.broker.publish_frame(conn.room, frames.typing_frame(conn.username))

    async def mark_read(self, conn: Connection, message_id: int) -> None:
        """The person read their conversation up to `message_id`: tell their other tabs."""
        if await self.conversations.mark_read(conn.username, conn.room, message_id):
            frame = frames.read_frame(conn.room, message_id)
            await control.publish(self._redis, ToPerson(conn.username, conn.room, frame))

    def send_error(
        self, conn: Connection, code: str, detail: str, client_id: str | None = None
    ) -> None:
        """An `error` frame; `detail` (a msgid or an i18n.Msg) in the connection's language."""
        self.metrics.inc("chatapp_errors_sent_total")
        conn.send_now(frames.error_frame(code, in_language(detail, conn.lang), client_id))

    # -- presence and control --------------------------------------------------------

    async def _announce(self, room: str, users: list[str]) -> None:
        await self.broker.publish_frame(room, frames.presence_frame(users))

    async def _room_emptied(self, room: str) -> None:
        if (await self.conversations.get(room)).expires_when_empty:
            await self.directory.expire_when_empty(room)

    def _control(self, event: ControlEvent) -> None:
        """Admin actions from any worker: close a user's or a room's sockets here."""
        if isinstance(event, CloseUser):
            coro = self.hub.close_where(POLICY, event.reason, username=event.username)
        elif isinstance(event, CloseRoom):
            coro = self.hub.close_where(POLICY, event.reason, room=event.room)
        elif isinstance(event, CloseSessions):
            coro = self.hub.close_where(POLICY, event.reason, sessions=set(event.session_ids))
        elif isinstance(event, CloseMember):
            for conn in self.hub.connections_of(event.username):
                self.rooms.unwatch(conn, event.room)
            coro = self.hub.close_where(
                POLICY, event.reason, room=event.room, username=event.username
            )
        elif isinstance(event, ToPerson):
            self._to_person(event)
            return
        else:  # a new kind of event from a newer worker: not ours to act on
            return
        self._spawn(coro)

    def _to_person(self, event: ToPerson) -> None:
        """A frame for a person's sockets here, except those on that very conversation."""
        for conn in self.hub.connections_of(event.username):
            if conn.room == event.conversation:
                continue
            if event.watch and conn in self._sidebars:
                # Follow it first: what comes after the frame is not missed.
                self._spawn(self._watch_then_send(conn, event))
            else:
                conn.send_now(event.frame)

    async def _watch_then_send(self, conn: Connection, event: ToPerson) -> None:
        try:
            await self.rooms.watch(conn, [event.conversation])
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning(
                "%s's socket does not follow %s: %s", conn.username, event.conversation, exc
            )
        conn.send_now(event.frame)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
