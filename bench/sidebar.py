"""W6: sidebars. People with many conversations, a few of them busy, some mentions.

PEOPLE people each have CONVERSATIONS rooms in their list (they opened each
once) and one socket open on a room of their own; BUSY of those rooms get
RATE messages a second each from senders outside the crowd, and every
MENTION_EVERY-th message mentions one of the people. Measured, per frame
that reached a person's socket:
- `activity` latency: a message in a conversation of their list reaching
  their sidebar (send time from the sender's echo, matched by room and id);
- `notify` latency: a mention reaching the person it names.
chatapp only: the baseline server has no conversations.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
from array import array
from collections import Counter
from dataclasses import asdict, dataclass

from bench import wsclient
from bench.loadgen import Target, login_many, now, percentiles_ms
from bench.procstat import Probe

MARK = "w6 "


@dataclass(frozen=True)
class SidebarSpec:
    people: int = 200
    conversations: int = 20
    busy: int = 10
    rate: float = 5.0  # messages per second per busy conversation
    mention_every: int = 5
    duration: float = 40.0
    settle: float = 5.0  # after the sockets open: sidebars are followed in the background
    drain: float = 5.0


class Socket:
    """One socket of a person or a sender, timing what matters to W6."""

    def __init__(self, run: Run, room: str) -> None:
        self.run = run
        self.room = room
        self.ws: wsclient.WSClient | None = None
        self.history: asyncio.Future | None = None

    async def open(self, target: Target, cookie: str) -> None:
        loop = asyncio.get_running_loop()
        self.history = loop.create_future()
        headers = {"Origin": target.origin, "Cookie": cookie}
        url = target.ws_url(self.room) + "?sidebar=1"  # as the page's socket asks
        self.ws = await wsclient.connect(url, headers, self.on_text, self.on_close)
        await asyncio.wait_for(self.history, 30)

    def on_text(self, payload: bytes) -> None:
        arrived = now()
        frame = json.loads(payload)
        kind = frame.get("type")
        run = self.run
        if kind == "history" and not self.history.done():
            self.history.set_result(frame)
        elif kind == "activity":
            run.activity.append((frame["conversation"], frame["id"], arrived))
        elif kind == "notify":
            text = frame["message"]["text"]
            if text.startswith(MARK):
                run.notify_s.append(arrived - float(text.split()[1]))
        elif kind == "message" and frame.get("username") in run.senders:
            text = frame.get("text", "")
            if text.startswith(MARK) and run.is_sender(self):
                run.sent_at[(frame["room"], frame["id"])] = float(text.split()[1])
        elif kind == "error":
            run.errors[f"error_frame:{frame.get('code')}"] += 1

    def on_close(self, code: int) -> None:
        if not self.run.closing:
            self.run.errors[f"closed_by_server:{code}"] += 1


class Run:
    def __init__(self, spec: SidebarSpec) -> None:
        self.spec = spec
        self.activity: list[tuple[str, int, float]] = []
        self.notify_s = array("d")  # seconds from send to a mention's notify
        self.sent_at: dict[tuple[str, int], float] = {}
        self.errors: Counter[str] = Counter()
        self.senders: set[str] = set()
        self.sender_sockets: set[Socket] = set()
        self.closing = False

    def is_sender(self, sock: Socket) -> bool:
        return sock in self.sender_sockets


async def _open_many(target: Target, socks: list[Socket], cookies: list[str], limit: int = 50):
    gate = asyncio.Semaphore(limit)

    async def one(sock: Socket, cookie: str) -> None:
        async with gate:
            await sock.open(target, cookie)

    await asyncio.gather(*(one(s, c) for s, c in zip(socks, cookies, strict=True)))


async def run_sidebar(target: Target, spec: SidebarSpec, probe: Probe | None = None) -> dict:
    tag = secrets.token_hex(3)
    rooms = [f"w6_{tag}_{i}" for i in range(spec.conversations)]
    busy = rooms[: spec.busy]
    run = Run(spec)
    people = await login_many(target, spec.people, f"w6p{tag}")
    senders = await login_many(target, spec.busy, f"w6s{tag}")
    names = [f"w6p{tag}_{i}" for i in range(spec.people)]  # as login_many names them
    run.senders = {f"w6s{tag}_{i}" for i in range(spec.busy)}

    # Each person opens each conversation once: that puts it in their list.
    start = now()
    for room in rooms:
        visits = [Socket(run, room) for _ in people]
        await _open_many(target, visits, people)
        run.closing = True
        await asyncio.gather(*(s.ws.close() for s in visits))
        run.closing = False
    setup_s = now() - start
    # Then one socket each on a room of their own, following the others.
    homes = [Socket(run, f"w6_{tag}_home{i}") for i in range(spec.people)]
    await _open_many(target, homes, people)
    writers = [Socket(run, room) for room in busy]
    run.sender_sockets = set(writers)
    await _open_many(target, writers, senders)
    await asyncio.sleep(spec.settle)  # a benchmark's settle time, not a test's sync

    if probe:
        probe.start_sampling()
    rng = random.Random(1)
    deadline = now() + spec.duration
    sent = 0

    async def send_loop(sock: Socket, phase: float) -> None:
        nonlocal sent
        count = 0
        next_at = now() + phase / spec.rate
        while now() < deadline:
            next_at += 1.0 / spec.rate
            delay = next_at - now()
            if delay > 0:
                await asyncio.sleep(delay)
            count += 1
            mention = f" @{rng.choice(names)}" if count % spec.mention_every == 0 else ""
            text = f"{MARK}{now():.6f}{mention}"
            sock.ws.send_text(json.dumps({"type": "message", "text": text}))
            sent += 1

    await asyncio.gather(*(send_loop(w, i / len(writers)) for i, w in enumerate(writers)))
    await asyncio.sleep(spec.drain)  # frames still on their way
    if probe:
        await probe.stop_sampling()
    run.closing = True
    await asyncio.gather(*(s.ws.close() for s in [*homes, *writers]))

    activity_s = array("d")
    unmatched = 0
    for room, mid, arrived in run.activity:
        sent_at = run.sent_at.get((room, mid))
        if sent_at is None:
            unmatched += 1
        else:
            activity_s.append(arrived - sent_at)
    expected_activity = sent * spec.people
    mentions_sent = sent // spec.mention_every
    return {
        "spec": asdict(spec),
        "sockets": spec.people + spec.busy,
        "setup_s": round(setup_s, 1),
        "messages_sent": sent,
        "activity_frames": len(run.activity),
        "activity_expected": expected_activity,
        "activity_unmatched": unmatched,
        "activity_latency_ms": percentiles_ms(activity_s),
        "notify_frames": len(run.notify_s),
        "notify_expected_at_most": mentions_sent,
        "notify_latency_ms": percentiles_ms(run.notify_s),
        "latency_ms": percentiles_ms(activity_s),
        "errors": dict(run.errors),
        "lost": max(0, expected_activity - len(run.activity)),
        "server_peak_rss_mb": round(probe.peak_rss_kb / 1024, 1) if probe else None,
    }
