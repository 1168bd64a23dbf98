"""The bytes chatapp writes to sockets by hand, and how it ends connections.

The hub frames each message once and writes the same bytes to every socket;
the heartbeat writes its own pings. Both use this module, and so does every
place that picks a close code.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

from aiohttp import WSCloseCode

# Close codes of the contract (PROTOCOL.md, "Close codes").
GOING_AWAY = WSCloseCode.GOING_AWAY  # 1001: server shutting down
POLICY = WSCloseCode.POLICY_VIOLATION  # 1008: logged out, disabled, room deleted
TRY_AGAIN_LATER = WSCloseCode.TRY_AGAIN_LATER  # 1013: too slow, resume with ?after=

PING = b"\x89\x00"  # an unmasked PING frame with no payload (RFC 6455 5.5.2)

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
