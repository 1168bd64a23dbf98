"""A lean WebSocket client (a subset of RFC 6455) so the generator out-runs the servers.

aiohttp's client costs about 5 µs per received frame on this machine (a
WSMessage, a queue, a task wake-up per receive), which capped the generator
below the baseline server. This protocol parses frames inside
`data_received` and hands each text payload to a callback. It speaks what
the chat needs: text frames (fragmented ones joined), ping/pong and close.
Client frames use the all-zero masking key: legal framing, no XOR cost.
"""

import asyncio
import base64
import hashlib
import os
import struct
from collections.abc import Callable
from urllib.parse import urlsplit

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
ZERO_MASK = b"\0\0\0\0"


class HandshakeError(ConnectionError):
    """The server answered the upgrade with something other than 101."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"handshake refused: HTTP {status} {reason}")
        self.status = status


def client_frame(payload: bytes, opcode: int = 1) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + ZERO_MASK + payload


class WSClient(asyncio.Protocol):
    """One client socket; call `connect()` rather than building it."""

    def __init__(self, on_text: Callable[[bytes], None], on_close: Callable[[int], None]) -> None:
        self.on_text = on_text
        self.on_close = on_close
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.open = False
        self.close_code = 1006  # abnormal until a close frame says otherwise
        self.fragments: list[bytes] = []
        loop = asyncio.get_running_loop()
        self.handshake: asyncio.Future[bytes] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(exc or ConnectionError("closed during handshake"))
        if not self.closed.done():
            self.closed.set_result(None)
            self.on_close(self.close_code)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.open:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end])
            del self.buf[: end + 4]
            parts = head.split(b"\r\n", 1)[0].split(b" ", 2)
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            if status != 101:
                reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
                self.handshake.set_exception(HandshakeError(status, reason))
                self.transport.close()
                return
            self.open = True
            self.handshake.set_result(head)
        self._frames()

    def _frames(self) -> None:
        buf = self.buf
        while len(buf) >= 2:
            b0, n = buf[0], buf[1] & 0x7F
            pos = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, pos = struct.unpack_from("!H", buf, 2)[0], 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, pos = struct.unpack_from("!Q", buf, 2)[0], 10
            if len(buf) < pos + n:
                return
            payload = bytes(buf[pos : pos + n])  # servers never mask
            del buf[: pos + n]
            opcode = b0 & 0x0F
            if opcode in (0, 1, 2):
                if not b0 & 0x80:  # not the final fragment
                    self.fragments.append(payload)
                    continue
                if self.fragments:
                    payload = b"".join([*self.fragments, payload])
                    self.fragments.clear()
                self.on_text(payload)
            elif opcode == 8:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                self.transport.write(client_frame(payload[:2], 8))
                self.transport.close()
                return
            elif opcode == 9:
                self.transport.write(client_frame(payload, 10))

    def send_text(self, text: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(text.encode()))

    async def close(self, code: int = 1000, timeout: float = 5.0) -> None:
        """Send a close frame, wait for the server's, then drop the connection."""
        if self.transport is None:
            return
        if not self.transport.is_closing():
            self.transport.write(client_frame(struct.pack("!H", code), 8))
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except TimeoutError:
            self.transport.abort()


async def connect(
    url: str,
    headers: dict[str, str],
    on_text: Callable[[bytes], None],
    on_close: Callable[[int], None],
) -> WSClient:
    """Open ws://host:port/path with extra HEADERS; return once upgraded."""
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(
        lambda: WSClient(on_text, on_close), parts.hostname, parts.port or 80
    )
    key = base64.b64encode(os.urandom(16)).decode()
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    client.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    try:
        head = await client.handshake
    except BaseException:
        client.transport.abort()
        raise
    accept = base64.b64encode(hashlib.sha1(key.encode() + GUID, usedforsecurity=False).digest())
    if accept not in head:
        client.transport.abort()
        raise HandshakeError(101, "bad Sec-WebSocket-Accept")
    return client
