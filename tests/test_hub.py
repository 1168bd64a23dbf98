"""The hub's fan-out, without a network: framing, batching, first frames, slow sockets."""

from __future__ import annotations

import asyncio
import json
import struct

import pytest

from chatapp.chat.hub import Connection, Hub
from chatapp.chat.wire import TRY_AGAIN_LATER, wire_text


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


HISTORY = b'{"type":"history","messages":[],"truncated":false}'


def socket_of(room: str = "lobby", max_buffer: int = 1 << 20) -> Connection:
    return Connection(FakeSocket(), FakeTransport(), "ann", room, max_buffer=max_buffer)


def joined(hub: Hub, room: str = "lobby", **limits) -> Connection:
    conn = socket_of(room, **limits)
    hub.add(conn, HISTORY)
    conn.transport.writes.clear()
    return conn


def received(conn: Connection) -> list[dict]:
    return [f for w in conn.transport.writes for f in payloads(w)]


async def loop_turn() -> None:
    """Let the event loop run once: the hub flushes in a `call_soon` callback."""
    await asyncio.sleep(0)


async def background_tasks_done() -> None:
    """Wait for the tasks the hub started (socket closes), however long they take."""
    await asyncio.gather(*(asyncio.all_tasks() - {asyncio.current_task()}))


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
    await loop_turn()
    for conn in (a, b):
        assert len(conn.transport.writes) == 1
        assert [p["id"] for p in payloads(conn.transport.writes[0])] == [1, 2, 3]


async def test_rooms_do_not_see_each_others_frames():
    hub = Hub()
    lobby, other = joined(hub, "lobby"), joined(hub, "other")
    hub.broadcast("lobby", message(1))
    await loop_turn()
    assert len(lobby.transport.writes) == 1
    assert other.transport.writes == []


async def test_newcomers_first_frame_goes_out_after_what_was_pending_and_before_the_rest():
    """Frames pending when a socket is added were in what its first frame was built
    from, so they go to the sockets already there, and not to the newcomer."""
    hub = Hub()
    old_timer = joined(hub)
    hub.broadcast("lobby", message(1))
    newcomer = socket_of()
    hub.add(newcomer, b'{"type":"history","messages":[' + message(1) + b"]}")
    hub.broadcast("lobby", message(2))
    await loop_turn()
    assert [f.get("id", f["type"]) for f in received(newcomer)] == ["history", 2]
    assert [f["id"] for f in received(old_timer)] == [1, 2]


async def test_last_socket_out_empties_the_room():
    hub = Hub()
    a, b = joined(hub), joined(hub)
    assert hub.remove(a) is False
    assert hub.has_room("lobby")
    assert hub.remove(b) is True
    assert not hub.has_room("lobby")
    assert hub.remove(b) is False  # twice is harmless
    assert hub.broadcast("lobby", message(1)) == 0


async def test_slow_socket_is_closed_and_the_others_still_get_the_frame():
    slow_count = []
    hub = Hub(on_slow=lambda: slow_count.append(1))
    fast, slow = joined(hub), joined(hub, max_buffer=1000)
    slow.transport.unsent = 1001
    hub.broadcast("lobby", message(1))
    await loop_turn()
    await background_tasks_done()
    assert len(fast.transport.writes) == 1
    assert slow.transport.writes == []
    assert slow.ws.close_codes == [TRY_AGAIN_LATER]
    assert slow_count == [1]


async def test_closed_socket_gets_nothing_more():
    hub = Hub()
    conn = joined(hub)
    conn.ws.closed = True
    hub.broadcast("lobby", message(1))
    await loop_turn()
    assert conn.transport.writes == []


async def test_close_where_closes_a_users_sockets_in_any_letter_case():
    hub = Hub()
    ann, other = joined(hub), joined(hub, "other")
    other.username = "bob"
    assert await hub.close_where(1008, "bye", username="ANN") == 1
    assert ann.ws.close_codes == [1008]
    assert other.ws.close_codes == []
