"""W1x: the W1 shape with message actions. 20 % of the frames sent are reactions and edits.

One room of SOCKETS_PER_ROOM sockets, SENDERS_PER_ROOM of them sending flat out
with a window of WINDOW frames awaiting their echo, like W1. Of the frames a
sender sends, REACT_SHARE are `{"type": "react", "id": N, "emoji": "👍"}` on a
recent message and EDIT_SHARE `{"type": "edit", "id": N, "text": ...}` of one of
its own recent messages; the rest are messages. Every socket receives each
message as a `message` frame and each action as an `update` frame; both count as
delivered.

Each update is timed from its own send: edits only ever change odd ids (the
edit's text carries its send time, like a message's), reactions only even ids,
and each even id gets at most one reaction (its send time kept by id). So an
update's message id says which action it is, and no update is mistaken for
another. A reaction adds 👍 (the frame toggles; adding and removing cost the same
script). chatapp only: the baseline server has no message actions.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import secrets
from array import array
from collections import Counter, deque
from dataclasses import dataclass

from bench.loadgen import (
    _ID,
    _OUR_TEXT,
    MARK,
    Member,
    Meter,
    Stats,
    Target,
    close_many,
    connect_many,
    delivery_report,
    joined_report,
    login_many,
    now,
    percentiles_ms,
    senders_of,
)
from bench.procstat import Probe

_UPDATE_PREFIXES = (b'{"type":"update",', b'{"type": "update", ')
_REV = re.compile(rb'"rev": ?(\d+)')
EMOJI = "👍"


@dataclass(frozen=True)
class ActionsSpec:
    rooms: int = 1
    sockets_per_room: int = 200
    senders_per_room: int = 5
    window: int = 10
    duration: float = 40.0
    users: int = 10
    react_share: float = 0.10
    edit_share: float = 0.10
    recent: int = 50  # actions pick among a sender's latest ids
    drain: float = 10.0
    room_prefix: str = "w1x"


class ActionStats(Stats):
    def __init__(self) -> None:
        super().__init__()
        self.update_latencies = array("d")
        self.message_latencies = array("d")
        self.updates = 0
        self.reacted: dict[tuple[str, int], float] = {}  # (room, id) -> reaction send time


class ActionMember(Member):
    """A socket that also counts and times `update` frames (and, as a sender, acts)."""

    __slots__ = (
        "acting",
        "key",
        "last_rev",
        "own_odd",
        "recent_even",
        "update_dups",
        "updates",
    )

    def __init__(self, room: str, stats: ActionStats) -> None:
        super().__init__(room, stats)
        self.updates = 0
        self.update_dups = 0
        self.last_rev = -1
        self.key: bytes | None = None  # a sender's client_id prefix
        self.acting: Counter[int] | None = None  # a sender's actions awaiting their update
        self.own_odd: deque[int] = deque()
        self.recent_even: deque[int] = deque()

    def on_text(self, payload: bytes) -> None:
        if payload.startswith(_UPDATE_PREFIXES) and self.first.done():
            rev, ident = _REV.search(payload), _ID.search(payload)
            if rev and ident:
                self._update(int(ident[1]), int(rev[1]), payload, now())
                return
        super().on_text(payload)

    def _handle(self, frame: dict, arrived: float) -> None:
        kind = frame.get("type")
        if kind == "update":
            message = frame.get("message") or {}
            rev = frame.get("rev", message.get("rev"))
            if isinstance(message.get("id"), int) and isinstance(rev, int):
                self._update(message["id"], rev, json.dumps(frame).encode(), arrived)
            else:
                self.stats.errors["bad_update_frame"] += 1
            return
        if kind == "error" and self.acting is not None:
            # A refused action or message gets no echo: free its place in the window.
            self.window.release()
        if kind == "history" and isinstance(frame.get("rev"), int):
            self.last_rev = frame["rev"]
        super()._handle(frame, arrived)

    def _update(self, mid: int, rev: int, payload: bytes, arrived: float) -> None:
        if rev <= self.last_rev:
            self.update_dups += 1
            return
        self.last_rev = rev
        self.updates += 1
        stats = self.stats
        stats.frames += 1
        stats.updates += 1
        stats.last_rx = arrived
        if mid % 2:  # an edit: its text holds its send time
            text = _OUR_TEXT.search(payload)
            sent_at = float(text[1]) if text else None
        else:
            sent_at = stats.reacted.get((self.room, mid))
        if sent_at is not None:
            stats.latencies.append(arrived - sent_at)
            stats.update_latencies.append(arrived - sent_at)
        if self.acting is not None and self.acting[mid] > 0:
            self.acting[mid] -= 1
            self.window.release()

    def _count(self, mid: int, sent_at: float, cid: bytes, arrived: float) -> None:
        before = self.received
        super()._count(mid, sent_at, cid, arrived)
        if self.received == before:
            return  # a duplicate
        self.stats.message_latencies.append(arrived - sent_at)
        if self.key is not None:
            if mid % 2 == 0:
                self.recent_even.append(mid)
            elif cid.startswith(self.key):
                self.own_odd.append(mid)


def _unreacted(member: ActionMember, stats: ActionStats) -> int | None:
    """The newest even id this sender saw that nobody has reacted to yet."""
    while member.recent_even:
        mid = member.recent_even.pop()
        if (member.room, mid) not in stats.reacted:
            return mid
    return None


async def action_loop(
    member: ActionMember,
    key: str,
    spec: ActionsSpec,
    sent: Counter,
    acted: Counter,
    kinds: Counter,
    rng: random.Random,
) -> None:
    """Send flat out within the window: messages, and a share of reactions and edits."""
    stats: ActionStats = member.stats
    member.pending = set()
    member.window = asyncio.Semaphore(spec.window)
    member.key = f"{key}:".encode()
    member.acting = Counter()
    member.own_odd = deque(maxlen=spec.recent)
    member.recent_even = deque(maxlen=spec.recent)
    send = member.ws.send_text
    for seq in range(1_000_000):
        await member.window.acquire()
        t = now()
        draw = rng.random()
        frame = None
        if draw < spec.react_share:
            mid = _unreacted(member, stats)
            if mid is not None:
                stats.reacted[(member.room, mid)] = t
                frame = {"type": "react", "id": mid, "emoji": EMOJI}
        elif draw < spec.react_share + spec.edit_share and member.own_odd:
            mid = rng.choice(member.own_odd)
            frame = {"type": "edit", "id": mid, "text": f"{MARK}{t:.6f} {key}:e{seq}"}
        if frame is not None:
            member.acting[mid] += 1
            acted[member.room] += 1
            kinds[frame["type"]] += 1
            send(json.dumps(frame))
            continue
        cid = f"{key}:{seq}"
        member.pending.add(cid)
        sent[member.room] += 1
        kinds["message"] += 1
        send(json.dumps({"type": "message", "text": f"{MARK}{t:.6f} {cid} ", "client_id": cid}))


async def _drained(members: list[ActionMember], sent: Counter, acted: Counter, timeout: float):
    deadline = now() + timeout
    while now() < deadline:
        if all(m.received >= sent[m.room] and m.updates >= acted[m.room] for m in members):
            return
        await asyncio.sleep(0.02)


async def run_actions(target: Target, spec: ActionsSpec, probe: Probe | None = None) -> dict:
    """Connect, send messages and actions for a bounded time, drain, report."""
    stats = ActionStats()
    total = spec.rooms * spec.sockets_per_room
    tag = secrets.token_hex(3)
    t0 = now()
    cookies = await login_many(target, min(spec.users, total), f"x{tag}")
    auth_s = now() - t0
    if probe:
        probe.start_sampling()
    members = [
        ActionMember(f"{spec.room_prefix}{tag}_{r}", stats)
        for r in range(spec.rooms)
        for _ in range(spec.sockets_per_room)
    ]
    t1 = now()
    live: list[ActionMember] = await connect_many(target, members, cookies)
    connect_s = now() - t1
    senders = senders_of(live, spec.senders_per_room)
    await asyncio.sleep(0.2)  # let join-time presence frames settle
    sent: Counter[str] = Counter()
    acted: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    rng = random.Random(7)
    meter = Meter(probe)
    start = now()
    tasks = [
        asyncio.create_task(action_loop(m, f"s{i}", spec, sent, acted, kinds, rng))
        for i, m in enumerate(senders)
    ]
    if not tasks:
        stats.errors["no_sender_connected"] += 1
    else:
        _, running = await asyncio.wait(tasks, timeout=spec.duration)
        for task in running:
            task.cancel()
        for res in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(res, Exception) and not isinstance(res, asyncio.CancelledError):
                stats.errors[f"sender:{type(res).__name__}"] += 1
    send_s = now() - start
    await _drained(live, sent, acted, spec.drain)
    phase = meter.stop(stats.frames, end=stats.last_rx if stats.frames else None)
    rss_kb = probe.rss_kb() if probe else 0
    await close_many(live)
    if probe:
        await probe.stop_sampling()
    report = delivery_report(stats, live, sent, send_s)
    frames_sent = sum(kinds.values())
    updates_expected = sum(acted[m.room] for m in live)
    return {
        **joined_report(spec, total, live, cookies, auth_s, connect_s, stats),
        **report,
        "frames_sent": frames_sent,
        "frames_sent_by_type": dict(kinds),
        "action_share": round((kinds["react"] + kinds["edit"]) / frames_sent, 3)
        if frames_sent
        else None,
        "message_frames": stats.frames - stats.updates,
        "update_frames": stats.updates,
        "updates_expected": updates_expected,
        "updates_lost": max(0, updates_expected - sum(min(m.updates, acted[m.room]) for m in live)),
        "update_duplicates": sum(m.update_dups for m in live),
        "message_latency_ms": percentiles_ms(stats.message_latencies),
        "update_latency_ms": percentiles_ms(stats.update_latencies),
        "delivered_per_s": round(stats.frames / phase["wall_s"], 1),
        **phase,
        "wall_s": round(phase["wall_s"], 3),
        "server_rss_mb": round(rss_kb / 1024, 1),
        "server_peak_rss_mb": round(probe.peak_rss_kb / 1024, 1) if probe else None,
    }
