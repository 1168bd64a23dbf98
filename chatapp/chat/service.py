"""This worker's chat service: joins, leaves and sends, tying hub, broker and presence.

The hub holds sockets, the broker talks to Redis, presence tracks people; this
module is the only one that knows all three.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass

from chatapp.chat import frames
from chatapp.chat.broker import Broker
from chatapp.chat.heartbeat import Heartbeat
from chatapp.chat.hub import GOING_AWAY, POLICY, Connection, Hub
from chatapp.chat.presence import Presence
from chatapp.metrics import Metrics
from chatapp.store.client import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChatLimits:
    max_message_length: int
    max_frame_bytes: int
    heartbeat: float
    send_queue_size: int
    send_buffer_bytes: int


class ChatService:
    """Everything a socket handler needs, for one worker."""

    def __init__(self, store: Store, config, metrics: Metrics) -> None:
        chat = config.chat
        self.limits = ChatLimits(
            max_message_length=chat.max_message_length,
            max_frame_bytes=chat.max_frame_bytes,
            heartbeat=chat.heartbeat_seconds,
            send_queue_size=chat.send_queue_size,
            send_buffer_bytes=chat.send_buffer_bytes,
        )
        self.metrics = metrics
        self.hub = Hub(on_slow=lambda: metrics.inc("chatapp_slow_sockets_closed_total"))
        self.broker = Broker(
            store,
            history_limit=chat.history_limit,
            rate_limit=chat.rate_limit_messages,
            rate_window=chat.rate_limit_seconds,
            on_room_frame=self._deliver,
            on_control=self._control,
            on_reset=self._reset,
        )
        self.presence = Presence(
            store.raw,
            publish=self._publish_presence,
            empty_room_ttl=chat.empty_room_ttl,
            record_ttl=chat.presence_ttl,
            refresh_every=chat.presence_ttl / 4,
        )
        self.heartbeat = Heartbeat(self.hub, chat.heartbeat_seconds)
        self._tasks: set[asyncio.Task] = set()
        metrics.counter("chatapp_messages_stored_total", "Messages stored by this worker")
        metrics.counter("chatapp_frames_delivered_total", "Frames queued to local sockets")
        metrics.counter("chatapp_errors_sent_total", "Error frames sent to clients")
        metrics.counter("chatapp_slow_sockets_closed_total", "Sockets closed for being too slow")
        metrics.gauge("chatapp_sockets", "Open chat sockets on this worker", self.hub.socket_count)
        metrics.gauge(
            "chatapp_rooms_local",
            "Rooms with a socket on this worker",
            lambda: len(self.hub.rooms()),
        )

    async def start(self) -> None:
        await self.broker.start()
        self.presence.start()
        self.heartbeat.start()

    async def stop(self) -> None:
        """Close every socket with 1001, withdraw presence, stop listening."""
        await self.heartbeat.stop()
        await self.close_all(GOING_AWAY, "server shutting down")
        await self.presence.stop()
        await self.broker.stop()
        for task in list(self._tasks):
            task.cancel()

    async def close_all(self, code: int, reason: str) -> None:
        await asyncio.gather(*(c.close(code, reason) for c in self.hub.connections()))

    # -- joining and leaving -------------------------------------------------------

    async def join(self, conn: Connection, after: int | None) -> None:
        """Subscribe, record presence, then send history (and what came meanwhile)."""
        self.hub.add(conn)
        await self.broker.subscribe(conn.room)
        held = await self.broker.history(conn.room, after)
        self.broker.mark_delivered(conn.room, held.last_id)
        self.hub.start(conn, frames.history_frame(held.messages, held.truncated), held.last_id)
        await self.presence.join(conn.room, conn.username)

    async def leave(self, conn: Connection) -> None:
        if self.hub.remove(conn):
            await self.broker.unsubscribe(conn.room)
        await self.presence.leave(conn.room, conn.username)

    # -- sending -------------------------------------------------------------------

    async def send(self, conn: Connection, text: str, client_id: str | None) -> int:
        message_id = await self.broker.publish_message(conn.room, conn.username, text, client_id)
        self.metrics.inc("chatapp_messages_stored_total")
        return message_id

    def send_error(
        self, conn: Connection, code: str, detail: str, client_id: str | None = None
    ) -> None:
        self.metrics.inc("chatapp_errors_sent_total")
        conn.send_now(frames.error_frame(code, detail, client_id))

    # -- from Redis ----------------------------------------------------------------

    def _deliver(self, room: str, data: bytes) -> None:
        self.metrics.inc("chatapp_frames_delivered_total", self.hub.broadcast(room, data))

    def _reset(self, room: str, messages: list[bytes]) -> None:
        """The room's history was lost and its ids start over: a fresh history frame,
        `truncated`, tells clients to start over from it (as after a long absence)."""
        for conn in self.hub.connections(room):
            conn.forget_floor()
        self.hub.broadcast(room, frames.history_frame(messages, truncated=True))

    async def _publish_presence(self, room: str, users: list[str]) -> None:
        await self.broker.publish_frame(room, frames.presence_frame(users))

    def _control(self, data: bytes) -> None:
        """Admin actions from any worker: close a user's or a room's sockets here."""
        try:
            event = json.loads(data)
        except ValueError:
            log.warning("ignored a control event that is not JSON: %r", data[:100])
            return
        action = event.get("action")
        if action == "close_user":
            coro = self.hub.close_where(POLICY, event.get("reason", ""), username=event["username"])
        elif action == "close_room":
            coro = self.hub.close_where(POLICY, event.get("reason", ""), room=event["room"])
        else:
            log.warning("ignored unknown control action %r", action)
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close_user_everywhere(self, username: str, reason: str) -> None:
        await self.broker.publish_control(
            json.dumps({"action": "close_user", "username": username, "reason": reason}).encode()
        )

    async def close_room_everywhere(self, room: str, reason: str) -> None:
        await self.broker.publish_control(
            json.dumps({"action": "close_room", "room": room, "reason": reason}).encode()
        )
