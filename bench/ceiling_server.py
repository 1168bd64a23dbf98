"""The cheapest server that speaks the chat frames: finds the generator's ceiling.

Raw asyncio, no aiohttp, no auth. It answers the WebSocket handshake, sends
an empty history frame, and broadcasts each message to its room, joining all
frames queued in one loop iteration into a single write per socket. Its cost
per delivered frame is a fraction of the generator's, so delivered/s against
it is what the generator itself can take in (run it on its own core).

    python -m bench.ceiling_server --port 8082
"""

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import re
import struct
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PATH = re.compile(r"/ws/chat/([A-Za-z_][A-Za-z0-9_]{0,63})/(?:\?.*)?")
HISTORY = json.dumps({"type": "history", "messages": [], "truncated": False}).encode()


def frame(payload: bytes, opcode: int = 1) -> bytes:
    """Build one unmasked server frame."""
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x80 | opcode, n) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


def unmask(payload: bytes, mask: bytes) -> bytes:
    n = len(payload)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


class Room:
    def __init__(self, name: str) -> None:
        self.name = name
        self.members: set[Conn] = set()
        self.out: list[bytes] = []
        self.next_id = 0

    def publish(self, text: object, client_id: object) -> None:
        self.next_id += 1
        message = {
            "type": "message",
            "id": self.next_id,
            "room": self.name,
            "username": "anon",
            "text": text,
            "ts": time.time(),
            "client_id": client_id,
        }
        if not self.out:
            asyncio.get_running_loop().call_soon(self.flush)
        self.out.append(frame(json.dumps(message).encode()))

    def flush(self) -> None:
        chunk = b"".join(self.out)
        self.out.clear()
        for conn in self.members:
            conn.transport.write(chunk)


class Conn(asyncio.Protocol):
    def __init__(self, rooms: dict[str, Room]) -> None:
        self.rooms = rooms
        self.room: Room | None = None
        self.buf = bytearray()

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.room:
            self.room.members.discard(self)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.room is None and not self._handshake():
            return
        self._frames()

    def _handshake(self) -> bool:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        del self.buf[: end + 4]
        headers = dict(
            (k.strip().lower(), v.strip())
            for k, _, v in (line.partition(":") for line in lines[1:])
        )
        parts = lines[0].split(" ")
        match = PATH.fullmatch(parts[1]) if len(parts) == 3 else None
        key = headers.get("sec-websocket-key")
        if not match or not key:
            self.transport.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            self.transport.close()
            return False
        accept = base64.b64encode(
            hashlib.sha1(key.encode() + GUID, usedforsecurity=False).digest()
        ).decode()
        self.transport.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
            + frame(HISTORY)
        )
        name = match.group(1)
        self.room = self.rooms.get(name) or self.rooms.setdefault(name, Room(name))
        self.room.members.add(self)
        return True

    def _frames(self) -> None:
        buf = self.buf
        while len(buf) >= 2:
            opcode, n, pos = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, pos = struct.unpack_from("!H", buf, 2)[0], 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, pos = struct.unpack_from("!Q", buf, 2)[0], 10
            masked = buf[1] & 0x80
            mask = bytes(buf[pos : pos + 4]) if masked else b""
            pos += len(mask)
            if len(buf) < pos + n:
                return
            payload = bytes(buf[pos : pos + n])
            del buf[: pos + n]
            if masked:
                payload = unmask(payload, mask)
            if opcode == 1:
                self._on_text(payload)
            elif opcode == 8:
                self.transport.write(frame(payload[:2], 8))
                self.transport.close()
                return
            elif opcode == 9:
                self.transport.write(frame(payload, 10))

    def _on_text(self, payload: bytes) -> None:
        with contextlib.suppress(ValueError, AttributeError):
            msg = json.loads(payload)
            self.room.publish(msg.get("text", msg.get("message")), msg.get("client_id"))


async def serve(host: str, port: int) -> None:
    rooms: dict[str, Room] = {}
    server = await asyncio.get_running_loop().create_server(
        lambda: Conn(rooms), host, port, backlog=1024
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
