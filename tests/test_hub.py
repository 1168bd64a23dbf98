"""The hub's fan-out, without a network: framing, batching, newcomers, slow sockets."""

from __future__ import annotations

import asyncio
import json
import struct

import pytest

from chatapp.chat.hub import TRY_AGAIN_LATER, Connection, Hub, wire_text


class FakeTransport:
    def __init__(self, unsent: int = 0) -> None:
        self.writes: list[bytes] = []
        self.unsent = unsent
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def get_write_buffer_size(self) -> int:
        return self.unsent

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True


class FakeSocket:
    closed = False

    def __init__(self) -> None:
        self.close_codes: list[int] = []

    async def close(self, *, code: int, message: bytes = b"", drain: bool = True) -> None:
        self.close_codes.append(code)
        self.closed = True


def payloads(data: bytes) -> list[dict]:
    """Parse unmasked server frames back into JSON payloads."""
    out = []
    while data:
        assert data[0] == 0x81  # FIN + text
        n, pos = data[1], 2
        if n == 126:
            n, pos = struct.unpack("!H", data[2:4])[0], 4
        elif n == 127:
            n, pos = struct.unpack("!Q", data[2:10])[0], 10
        out.append(json.loads(data[pos : pos + n]))
        data = data[pos + n :]
    return out


def message(i: int) -> bytes:
    return b'{"type":"message","id":%d,"ts":1.0,"text":"m%d"}' % (i, i)


def joined(hub: Hub, room: str = "lobby", last_id: int = 0, **limits) -> Connection:
    conn = Connection(
        FakeSocket(),
        FakeTransport(),
        "ann",
        room,
        max_buffer=limits.get("max_buffer", 1 << 20),
        max_held=limits.get("max_held", 100),
    )
    hub.add(conn)
    hub.start(conn, b'{"type":"history","messages":[],"truncated":false}', last_id)
    conn.transport.writes.clear()
    return conn


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_wire_frame_carries_any_payload_length(size):
    text = "x" * max(0, size - len('{"t":""}'))
    payload = json.dumps({"t": text}, separators=(",", ":")).encode()
    assert payloads(wire_text(payload)) == [{"t": text}]


async def test_one_loop_iteration_is_one_write_per_socket_in_order():
    hub = Hub()
    a, b = joined(hub), joined(hub)
    for i in range(1, 4):
        assert hub.broadcast("lobby", message(i)) == 2
    assert a.transport.writes == []  # not before the loop turns
    await asyncio.sleep(0)
    for conn in (a, b):
        assert len(conn.transport.writes) == 1
        assert [p["id"] for p in payloads(conn.transport.writes[0])] == [1, 2, 3]


async def test_rooms_do_not_see_each_others_frames():
    hub = Hub()
    lobby, other = joined(hub, "lobby"), joined(hub, "other")
    hub.broadcast("lobby", message(1))
    await asyncio.sleep(0)
    assert len(lobby.transport.writes) == 1
    assert other.transport.writes == []


async def test_newcomer_gets_history_then_only_what_history_missed():
    hub = Hub()
    joined(hub)
    newcomer = Connection(FakeSocket(), FakeTransport(), "ben", "lobby", max_buffer=1 << 20,
                          max_held=100)  # fmt: skip
    hub.add(newcomer)
    hub.broadcast("lobby", message(1))  # pending when history is read (it holds id 1) ...
    hub.broadcast("lobby", message(2))  # ... and id 2 came after
    hub.start(newcomer, b'{"type":"history","messages":[' + message(1) + b"]}", 1)
    hub.broadcast("lobby", message(3))
    await asyncio.sleep(0)
    frames = [f for w in newcomer.transport.writes for f in payloads(w)]
    assert frames[0]["type"] == "history"
    assert [f["id"] for f in frames[1:]] == [2, 3]


async def test_message_in_history_and_still_on_its_way_reaches_a_newcomer_once():
    """Stored just before the history read, published to this worker just after it."""
    hub = Hub()
    old_timer = joined(hub)
    newcomer = Connection(FakeSocket(), FakeTransport(), "ben", "lobby", max_buffer=1 << 20,
                          max_held=100)  # fmt: skip
    hub.add(newcomer)
    history = b'{"type":"history","messages":[' + message(1) + b"," + message(2) + b"]}"
    hub.start(newcomer, history, 2)
    hub.broadcast("lobby", message(2))  # arrives from the subscriber after the read
    hub.broadcast("lobby", b'{"type":"presence","users":["ann","ben"],"count":2}')
    hub.broadcast("lobby", message(3))
    await asyncio.sleep(0)
    hub.broadcast("lobby", message(4))
    await asyncio.sleep(0)
    frames = [f for w in newcomer.transport.writes for f in payloads(w)]
    assert [f.get("id", f["type"]) for f in frames] == ["history", "presence", 3, 4]
    assert not newcomer.at_seam  # past the seam: back on the shared, pre-framed path
    assert [f.get("id") for w in old_timer.transport.writes for f in payloads(w)] == [
        2,
        None,
        3,
        4,
    ]


async def test_slow_socket_is_closed_and_the_others_still_get_the_frame():
    slow_count = []
    hub = Hub(on_slow=lambda: slow_count.append(1))
    fast, slow = joined(hub), joined(hub, max_buffer=1000)
    slow.transport.unsent = 1001
    hub.broadcast("lobby", message(1))
    await asyncio.sleep(0.01)  # the close runs in its own task
    assert len(fast.transport.writes) == 1
    assert slow.transport.writes == []
    assert slow.ws.close_codes == [TRY_AGAIN_LATER]
    assert slow_count == [1]


async def test_socket_that_holds_too_much_while_joining_is_closed():
    hub = Hub()
    conn = Connection(FakeSocket(), FakeTransport(), "ann", "lobby", max_buffer=1 << 20,
                      max_held=2)  # fmt: skip
    hub.add(conn)
    for i in range(1, 4):
        hub.broadcast("lobby", message(i))
    await asyncio.sleep(0.01)  # the close runs in its own task
    assert conn.ws.close_codes == [TRY_AGAIN_LATER]


async def test_closed_socket_gets_nothing_more():
    hub = Hub()
    conn = joined(hub)
    conn.ws.closed = True
    hub.broadcast("lobby", message(1))
    await asyncio.sleep(0)
    assert conn.transport.writes == []
