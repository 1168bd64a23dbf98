"""One heartbeat for all of a worker's sockets, instead of aiohttp's one per socket.

A socket silent for `interval` seconds (±20 %, see `quiet_limit`) gets a
PING; one that then stays silent for `interval / 2` more is taken for gone and
its connection dropped (its handler then leaves the room as for any
disconnect). Any frame from the peer, a PONG or a message, counts as a sign
of life.

Why not `WebSocketResponse(heartbeat=...)`: it keeps two timer handles per
socket, and on CPython 3.11 its first ping adds an attribute that pushes the
response's attribute dict off the class's shared keys, which costs ~1.9 KB for
every idle socket as long as it stays open (measured with tracemalloc on 500
sockets pinging against not pinging). Here a socket costs two floats, and one
task walks all of them a few times per interval.
"""

from __future__ import annotations

import asyncio
import logging
import time

from chatapp.chat.hub import Connection, Hub
from chatapp.chat.wire import PING, drop_connection

log = logging.getLogger(__name__)

SLICE = 500  # sockets checked between two yields to the event loop


class Heartbeat:
    """Pings this worker's silent sockets and drops those that do not answer."""

    def __init__(self, hub: Hub, interval: float) -> None:
        self._hub = hub
        self.interval = interval
        self.pong_timeout = interval / 2
        # Walk often enough that a ping or a verdict is at most this late.
        self.tick = interval / 8
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            try:
                await self.beat()
            except Exception:  # a bug here must not stop every future heartbeat
                log.exception("heartbeat failed; trying again in %.1f s", self.tick)

    async def beat(self) -> None:
        """Ping the sockets that are due, drop those whose ping went unanswered."""
        connections = self._hub.connections()
        for start in range(0, len(connections), SLICE):
            now = time.monotonic()
            for conn in connections[start : start + SLICE]:
                self._check(conn, now)
            await asyncio.sleep(0)  # thousands of sockets: let messages through

    def _check(self, conn: Connection, now: float) -> None:
        if conn.closing:
            return
        if conn.pong_due is not None:
            if now >= conn.pong_due:
                log.info(
                    "socket of %s in %s: No PONG within %.1f s of a ping; connection dropped",
                    conn.username,
                    conn.room,
                    self.pong_timeout,
                )
                conn.closing = True
                drop_connection(conn.transport)
        elif now - conn.heard_at >= self.quiet_limit(conn) and conn.write(PING):
            conn.pong_due = now + self.pong_timeout

    def quiet_limit(self, conn: Connection) -> float:
        """The silence after which `conn` is pinged: the interval, ±20 % per socket.

        Fixed for a socket's life (from its hash, so it costs no state): sockets
        that connected together, or answered one ping together, are still not
        all pinged in the same walk.
        """
        return self.interval * (0.8 + 0.4 * (hash(conn) % 1024) / 1023)
