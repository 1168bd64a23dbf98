"""This worker's sockets by room, and local fan-out; knows nothing of Redis.

A broadcast never awaits a socket: it puts the same bytes on each socket's
bounded queue, drained by that socket's own sender task. A socket whose queue
overflows is closed with 1013 (it can resume with `?after=`), so one slow
reader never delays the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections import defaultdict
from collections.abc import Iterable

from aiohttp import WSCloseCode, WSMsgType, web

from . import frames
from .tasks import cancel_and_wait

log = logging.getLogger(__name__)

TRY_AGAIN_LATER = 1013  # WSCloseCode.TRY_AGAIN_LATER: too slow, resume with ?after=


class Connection:
    """One socket: its user, its room and its outgoing queue."""

    __slots__ = ("_buffer", "_queue", "_sender", "closing", "room", "username", "ws")

    def __init__(self, ws: web.WebSocketResponse, username: str, room: str, queue_size: int):
        self.ws = ws
        self.username = username
        self.room = room
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(queue_size)
        # Live frames that arrive before the history frame went out (see `start`).
        self._buffer: list[bytes] | None = []
        self._sender: asyncio.Task | None = None
        self.closing = False

    def push(self, data: bytes) -> None:
        """Queue a frame without waiting; close the socket if it cannot keep up."""
        if self.closing:
            return
        if self._buffer is not None:
            if len(self._buffer) >= self._queue.maxsize:
                self.close_soon(TRY_AGAIN_LATER, "too slow")
            else:
                self._buffer.append(data)
            return
        try:
            self._queue.put_nowait(data)
        except asyncio.QueueFull:
            log.warning(
                "closing slow socket of %s in %s: %d frames queued",
                self.username,
                self.room,
                self._queue.qsize(),
            )
            self.close_soon(TRY_AGAIN_LATER, "too slow")

    def start(self, history: bytes, last_id: int) -> None:
        """Send the history frame first, then the live frames that came meanwhile."""
        buffered, self._buffer = self._buffer or [], None
        self._queue.put_nowait(history)
        for data in buffered:
            message_id = frames.message_id(data)
            if message_id is None or message_id > last_id:
                self.push(data)
        self._sender = asyncio.create_task(self._send_loop())

    async def _send_loop(self) -> None:
        ws, queue = self.ws, self._queue
        try:
            while True:
                data = await queue.get()
                await ws.send_frame(data, WSMsgType.TEXT)
        except (ConnectionError, RuntimeError):
            pass  # the peer went away; the reader sees it and cleans up

    def send_now(self, data: bytes) -> None:
        """Queue a frame to this socket alone (errors, its own notices)."""
        self.push(data)

    def close_soon(self, code: int, reason: str) -> None:
        """Close from synchronous code (a broadcast); never blocks the caller."""
        if self.closing:
            return
        self.closing = True
        asyncio.get_running_loop().create_task(self.close(code, reason))

    async def close(self, code: int, reason: str, timeout: float = 2.0) -> None:
        self.closing = True
        if self._sender is not None:
            self._sender.cancel()
        transport = self.ws._req.transport if self.ws._req else None
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

    async def finish(self) -> None:
        await cancel_and_wait(self._sender)


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
    """Local sockets by room and by user."""

    def __init__(self) -> None:
        self._rooms: dict[str, set[Connection]] = defaultdict(set)

    def add(self, conn: Connection) -> bool:
        """Register a socket; True if it is the first of its room on this worker."""
        members = self._rooms[conn.room]
        members.add(conn)
        return len(members) == 1

    def remove(self, conn: Connection) -> bool:
        """Forget a socket; True if its room has no local socket left."""
        members = self._rooms.get(conn.room)
        if members is None:
            return False
        members.discard(conn)
        if not members:
            del self._rooms[conn.room]
            return True
        return False

    def broadcast(self, room: str, data: bytes) -> None:
        for conn in tuple(self._rooms.get(room, ())):
            conn.push(data)

    def rooms(self) -> list[str]:
        return list(self._rooms)

    def connections(self, room: str | None = None) -> Iterable[Connection]:
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
