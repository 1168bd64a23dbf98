"""This worker's sockets by room, and local fan-out; knows nothing of Redis.

The hot path. A message reaches this worker once (from the subscriber), is
framed for the wire once, and the same bytes are written to every socket of
its room: no per-socket task, queue or await. Messages that arrive in the
same event-loop iteration are joined and written to each socket in one
`transport.write`, so a burst costs one system call per socket, not one per
frame per socket.

A socket that cannot keep up must not slow the others: when its unsent bytes
pass `chat.send_buffer_bytes` it is closed with 1013 (it can resume with
`?after=`). A broadcast never waits for a socket.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiohttp import web

from chatapp.chat.wire import TRY_AGAIN_LATER, drop_connection, wire_text

log = logging.getLogger(__name__)


class Connection:
    """One socket: its user and session, its room, its transport, when its peer last spoke."""

    __slots__ = (
        "_max_buffer",
        "closing",
        "heard_at",
        "on_slow",
        "pong_due",
        "room",
        "session_id",
        "transport",
        "username",
        "ws",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        username: str,
        room: str,
        *,
        max_buffer: int,
        session_id: str = "",
    ) -> None:
        self.ws = ws
        self.transport = transport
        self.username = username
        self.room = room
        # The session the socket was opened with: when it ends, the socket closes.
        self.session_id = session_id
        self._max_buffer = max_buffer
        self.closing = False
        self.on_slow: Callable[[], None] | None = None  # set by the hub
        # Heartbeat (see heartbeat.py): when the peer last sent a frame, and by
        # when a pinged peer must have answered.
        self.heard_at = time.monotonic()
        self.pong_due: float | None = None

    def heard(self) -> None:
        """The peer sent a frame: it is alive, and any ping it owed is answered."""
        self.pong_due = None
        self.heard_at = time.monotonic()

    def write(self, wire: bytes) -> bool:
        """Write framed bytes now; close the socket if too much is still unsent."""
        if self.closing or self.ws.closed:
            return False
        transport = self.transport
        if transport.is_closing():
            return False
        unsent = transport.get_write_buffer_size()
        if unsent > self._max_buffer:
            log.warning(
                "closing slow socket of %s in %s: %d bytes unsent", self.username, self.room, unsent
            )
            self.close_soon(TRY_AGAIN_LATER, "too slow")
            if self.on_slow is not None:
                self.on_slow()
            return False
        transport.write(wire)
        return True

    def send_now(self, payload: bytes) -> None:
        """A frame to this socket alone (errors, its own notices)."""
        self.write(wire_text(payload))

    def close_soon(self, code: int, reason: str) -> None:
        """Close from synchronous code (a broadcast); never blocks the caller."""
        if self.closing:
            return
        self.closing = True
        asyncio.get_running_loop().create_task(self.close(code, reason))

    async def close(self, code: int, reason: str, timeout: float = 2.0) -> None:
        self.closing = True
        transport = self.transport
        try:
            # drain=False: the peer's close reply shows it read everything. And a
            # sender cancelled in aiohttp's drain cancels the drain waiter every
            # writer shares, so draining here could raise CancelledError.
            await asyncio.wait_for(
                self.ws.close(code=code, message=reason.encode(), drain=False), timeout
            )
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():
                raise  # we were cancelled, not just aiohttp's shared drain waiter
            drop_connection(transport)
        except (TimeoutError, ConnectionError, RuntimeError):
            # A peer that does not read cannot take a close frame either.
            drop_connection(transport)


class Hub:
    """Local sockets by room, and the fan-out of each room's frames to them."""

    def __init__(self, on_slow: Callable[[], None] | None = None) -> None:
        self._rooms: dict[str, dict[Connection, None]] = {}
        self._people: dict[str, dict[Connection, None]] = {}  # lower-case username -> sockets
        # Payloads per room waiting for this loop iteration's flush.
        self._pending: dict[str, list[bytes]] = {}
        self._flush_scheduled = False
        self._on_slow = on_slow

    def add(self, conn: Connection, first_frame: bytes) -> None:
        """Register a socket and write `first_frame` to it, ahead of any live frame.

        The room's pending frames go out first, to the sockets already there:
        whoever built `first_frame` (the history) accounted for them.
        """
        self.flush_room(conn.room)
        members = self._rooms.get(conn.room)
        if members is None:
            members = self._rooms[conn.room] = {}
        members[conn] = None
        self._people.setdefault(conn.username.lower(), {})[conn] = None
        conn.on_slow = self._on_slow
        conn.write(wire_text(first_frame))

    def remove(self, conn: Connection) -> bool:
        """Forget a socket; True if its room has no local socket left."""
        members = self._rooms.get(conn.room)
        if members is None or conn not in members:
            return False
        del members[conn]
        person = self._people.get(conn.username.lower())
        if person is not None:
            person.pop(conn, None)
            if not person:
                del self._people[conn.username.lower()]
        if not members:
            del self._rooms[conn.room]
            self._pending.pop(conn.room, None)
            return True
        return False

    def broadcast(self, room: str, payload: bytes) -> int:
        """Queue a payload for every local socket of `room`; return how many get it."""
        members = self._rooms.get(room)
        if not members:
            return 0
        batch = self._pending.get(room)
        if batch is None:
            self._pending[room] = [payload]
            if not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self.flush)
        else:
            batch.append(payload)
        return len(members)

    def broadcast_except(self, room: str, payload: bytes, username: str) -> None:
        """Write a payload now to every local socket of `room` but `username`'s
        (after what is pending, to keep the order)."""
        self.flush_room(room)
        members = self._rooms.get(room)
        if members:
            wire = wire_text(payload)
            skip = username.lower()
            for conn in tuple(members):
                if conn.username.lower() != skip:
                    conn.write(wire)

    def flush(self) -> None:
        """Write what this loop iteration brought: one write per socket per room."""
        self._flush_scheduled = False
        pending, self._pending = self._pending, {}
        for room, payloads in pending.items():
            self._write_room(room, payloads)

    def flush_room(self, room: str) -> None:
        payloads = self._pending.pop(room, None)
        if payloads:
            self._write_room(room, payloads)

    def _write_room(self, room: str, payloads: list[bytes]) -> None:
        members = self._rooms.get(room)
        if not members:
            return
        wire = b"".join([wire_text(p) for p in payloads])  # framed once, shared by every socket
        for conn in tuple(members):
            conn.write(wire)

    def has_room(self, room: str) -> bool:
        return room in self._rooms

    def rooms(self) -> list[str]:
        return list(self._rooms)

    def connections(self, room: str | None = None) -> tuple[Connection, ...]:
        if room is not None:
            return tuple(self._rooms.get(room, ()))
        return tuple(c for members in self._rooms.values() for c in members)

    def connections_of(self, username: str) -> tuple[Connection, ...]:
        """Every local socket of a person (any letter case), in any room."""
        return tuple(self._people.get(username.lower(), ()))

    def socket_count(self) -> int:
        return sum(len(m) for m in self._rooms.values())

    async def close_where(
        self,
        code: int,
        reason: str,
        *,
        room: str | None = None,
        username: str | None = None,
        sessions: set[str] | None = None,
    ) -> int:
        """Close the sockets of a room, a user and/or some sessions; return how many."""
        targets = [
            c
            for c in self.connections(room)
            if (username is None or c.username.lower() == username.lower())
            and (sessions is None or c.session_id in sessions)
        ]
        await asyncio.gather(*(c.close(code, reason) for c in targets))
        return len(targets)
