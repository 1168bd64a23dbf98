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
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable, Iterable

from aiohttp import WSCloseCode, web

from chatapp.chat import frames

log = logging.getLogger(__name__)

TRY_AGAIN_LATER = 1013  # WSCloseCode.TRY_AGAIN_LATER: too slow, resume with ?after=

_SHORT = struct.Struct("!BB").pack
_MEDIUM = struct.Struct("!BBH").pack
_LONG = struct.Struct("!BBQ").pack


def wire_text(payload: bytes) -> bytes:
    """One unmasked, uncompressed WebSocket text frame (RFC 6455 5.2), as a server sends it."""
    n = len(payload)
    if n < 126:
        return _SHORT(0x81, n) + payload
    if n < 65536:
        return _MEDIUM(0x81, 126, n) + payload
    return _LONG(0x81, 127, n) + payload


class Connection:
    """One socket: its user, its room, and what it is owed before its history goes out."""

    __slots__ = (
        "_floor",
        "_held",
        "_max_buffer",
        "_max_held",
        "closing",
        "heard_at",
        "on_slow",
        "pong_due",
        "room",
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
        max_held: int,
    ) -> None:
        self.ws = ws
        self.transport = transport
        self.username = username
        self.room = room
        self._max_buffer = max_buffer
        self._max_held = max_held
        # Payloads that arrive before the history frame went out (see `start`).
        self._held: list[bytes] | None = []
        # The newest id in that history frame, until a live message passes it: a
        # message stored just before the history read can still be on its way
        # from the subscriber, and must not reach this socket twice.
        self._floor = 0
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

    @property
    def ready(self) -> bool:
        return self._held is None

    def write(self, wire: bytes) -> bool:
        """Write framed bytes now; close the socket if too much is still unsent."""
        if self.closing or self.ws.closed:
            return False
        transport = self.transport
        if transport.is_closing():
            return False
        unsent = transport.get_write_buffer_size()
        if unsent > self._max_buffer:
            self._too_slow(f"{unsent} bytes unsent")
            return False
        transport.write(wire)
        return True

    def _too_slow(self, detail: str) -> None:
        log.warning("closing slow socket of %s in %s: %s", self.username, self.room, detail)
        self.close_soon(TRY_AGAIN_LATER, "too slow")
        if self.on_slow is not None:
            self.on_slow()

    def hold(self, payloads: Iterable[bytes]) -> None:
        """Keep live payloads until the history frame is out; too many closes the socket."""
        held = self._held
        if held is None or self.closing:
            return
        held.extend(payloads)
        if len(held) > self._max_held:
            self._too_slow(f"{len(held)} frames held while joining")

    def start(self, history: bytes, last_id: int) -> None:
        """Send the history frame first, then the held payloads it does not cover."""
        held, self._held = self._held or [], None
        self._floor = last_id
        self.write(wire_text(history) + self._past_floor(held))

    @property
    def at_seam(self) -> bool:
        """True until the first live message newer than the history frame went out."""
        return self._floor > 0

    def write_past_floor(self, payloads: list[bytes]) -> None:
        """Write the payloads the history frame did not already carry."""
        wire = self._past_floor(payloads)
        if wire:
            self.write(wire)

    def _past_floor(self, payloads: Iterable[bytes]) -> bytes:
        out = []
        for payload in payloads:
            message_id = frames.message_id(payload)
            if message_id is None:
                out.append(wire_text(payload))
            elif message_id > self._floor:
                out.append(wire_text(payload))
                # Ids reach a worker in publish order (one Lua script stores and
                # publishes), so nothing older follows: back to the shared path.
                self._floor = 0
        return b"".join(out)

    def forget_floor(self) -> None:
        """The room's ids started over (Redis lost its data): stop filtering by them."""
        self._floor = 0

    def send_now(self, payload: bytes) -> None:
        """A frame to this socket alone (errors, its own notices)."""
        if self._held is not None:
            self.hold((payload,))
        else:
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


def drop_connection(transport: asyncio.Transport | None) -> None:
    """Reset a connection now, unsent data and all: RST rather than FIN, so the
    kernel does not keep an orphaned connection probing a peer's zero window."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class Hub:
    """Local sockets by room, and the fan-out of each room's frames to them."""

    def __init__(self, on_slow: Callable[[], None] | None = None) -> None:
        self._rooms: dict[str, dict[Connection, None]] = {}
        # Payloads per room waiting for this loop iteration's flush.
        self._pending: dict[str, list[bytes]] = {}
        self._flush_scheduled = False
        self._on_slow = on_slow

    def add(self, conn: Connection) -> bool:
        """Register a socket; True if it is the first of its room on this worker."""
        members = self._rooms.get(conn.room)
        if members is None:
            members = self._rooms[conn.room] = {}
        members[conn] = None
        conn.on_slow = self._on_slow
        return len(members) == 1

    def remove(self, conn: Connection) -> bool:
        """Forget a socket; True if its room has no local socket left."""
        members = self._rooms.get(conn.room)
        if members is None:
            return False
        members.pop(conn, None)
        if not members:
            del self._rooms[conn.room]
            self._pending.pop(conn.room, None)
            return True
        return False

    def start(self, conn: Connection, history: bytes, last_id: int) -> None:
        """Send a newcomer its history, then every live frame history did not cover.

        The room's pending frames are flushed first, so each of them either is
        held by the newcomer (and filtered by id) or reached it already.
        """
        self._flush_room(conn.room)
        conn.start(history, last_id)

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

    def flush(self) -> None:
        """Write what this loop iteration brought: one write per socket per room."""
        self._flush_scheduled = False
        pending, self._pending = self._pending, {}
        for room, payloads in pending.items():
            self._write_room(room, payloads)

    def _flush_room(self, room: str) -> None:
        payloads = self._pending.pop(room, None)
        if payloads:
            self._write_room(room, payloads)

    def _write_room(self, room: str, payloads: list[bytes]) -> None:
        members = self._rooms.get(room)
        if not members:
            return
        wire = None
        for conn in tuple(members):
            if conn._held is not None:
                conn.hold(payloads)
            elif conn.at_seam:
                conn.write_past_floor(payloads)
            else:
                if wire is None:  # framed once, shared by every socket
                    wire = b"".join([wire_text(p) for p in payloads])
                conn.write(wire)

    def rooms(self) -> list[str]:
        return list(self._rooms)

    def connections(self, room: str | None = None) -> tuple[Connection, ...]:
        if room is not None:
            return tuple(self._rooms.get(room, ()))
        return tuple(c for members in self._rooms.values() for c in members)

    def users_in(self, room: str) -> set[str]:
        return {c.username for c in self._rooms.get(room, ())}

    def socket_count(self) -> int:
        return sum(len(m) for m in self._rooms.values())

    async def close_where(self, code: int, reason: str, *, room=None, username=None) -> int:
        """Close the sockets of a room and/or a user; return how many."""
        targets = [
            c
            for c in self.connections(room)
            if username is None or c.username.lower() == username.lower()
        ]
        await asyncio.gather(*(c.close(code, reason) for c in targets))
        return len(targets)


GOING_AWAY = WSCloseCode.GOING_AWAY
POLICY = WSCloseCode.POLICY_VIOLATION
