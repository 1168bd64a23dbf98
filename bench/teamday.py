"""W7: a day in a team's life. How many people does one worker carry?

CONVERSATIONS rooms of MEMBERS sockets each, every socket a different person in
its room (USERS people in all, each holding sockets in CONVERSATIONS * MEMBERS /
USERS rooms, as a person has several conversations). In each room, about every
INTERVAL seconds (exponential gaps) a connected member sends `{"type": "typing"}`,
then, TYPING_LEAD seconds later, the message. Every REACT_EVERY-th message of a
room gets a 👍 from another member a little later. A member that receives a
message marks it read (`{"type": "read", "id": N}`) with probability
READ_PROBABILITY, at most once per READ_MIN_INTERVAL seconds, a few seconds later
(as people read). RECONNECT_PER_MIN of the sockets a minute close and come back
after up to OFFLINE seconds with `?after=<last id>&rev=<highest rev>`.

Measured over the send phase (all sockets open, settled): the worker's and
Redis's CPU share (fraction of one core), the latency of every message frame
(send -> arrival at each other member), of the reactions' `update` frames and of
`typing` frames. And the promise of resume: every socket, across its
reconnects, must get every message of its room exactly once (`lost`,
`duplicates`) and see every reaction (live, in the resume's `updates`, or in a
resumed message's present state): `updates_lost`, `update_duplicates`.
chatapp only.
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
from bench.loadgen import (
    Meter,
    Target,
    close_many,
    connect_error,
    login_many,
    now,
    percentiles_ms,
)
from bench.procstat import Probe

MARK = "w7 "
SLOW_S = 0.05  # the goal's p99: frames slower than this are counted per 5 s of the phase
EMOJI = "👍"


@dataclass(frozen=True)
class TeamDaySpec:
    conversations: int = 500
    members: int = 20  # sockets per conversation, each a different person
    users: int = 2000  # a multiple of MEMBERS; each person is in CONVERSATIONS*MEMBERS/USERS
    interval: float = 10.0  # mean seconds between two messages of one conversation
    typing_lead: float = 1.5  # typing frame this long before its message
    react_every: int = 5
    read_probability: float = 0.1
    read_min_interval: float = 30.0  # per socket
    read_delay: float = 5.0  # a read marker goes out uniform(0.5, READ_DELAY) s after arrival
    reconnect_per_min: float = 0.01  # share of the sockets reconnecting each minute
    offline: float = 5.0  # a reconnecting socket is away uniform(0, OFFLINE) seconds
    duration: float = 150.0  # the measured send phase
    settle: float = 10.0  # after the last socket opened
    drain: float = 10.0
    connect_concurrency: int = 100


class Room:
    """One conversation: its sockets and the truth the generator knows about it."""

    def __init__(self, index: int, name: str) -> None:
        self.index = index
        self.name = name
        self.sockets: list[Sock] = []
        self.echo: dict[str, asyncio.Future] = {}  # client_id -> future of the message id
        self.top_id = 0  # highest message id seen by any socket
        self.final_rev: dict[int, int] = {}  # message id -> highest rev of its updates seen
        self.reacted_at: dict[int, float] = {}  # message id -> reaction send time
        self.typing_at = 0.0
        self.sent = 0

    def connected(self) -> list[Sock]:
        return [s for s in self.sockets if s.ws is not None and not s.away]


class Sock:
    """One member's socket in one room, kept across its reconnects."""

    __slots__ = (
        "away",
        "closing",
        "cookie",
        "dups",
        "gaps",
        "history",
        "last_id",
        "last_read",
        "max_rev",
        "received",
        "room",
        "run",
        "seen_rev",
        "update_dups",
        "updates",
        "user",
        "ws",
    )

    def __init__(self, run: Run, room: Room, user: str, cookie: str) -> None:
        self.run = run
        self.room = room
        self.user = user
        self.cookie = cookie
        self.ws: wsclient.WSClient | None = None
        self.history: asyncio.Future | None = None
        self.away = False
        self.closing = False
        self.last_id: int | None = None  # highest message id received (None: not yet opened)
        self.max_rev = 0
        self.seen_rev: dict[int, int] | None = None  # message id -> rev of the state seen
        self.received = 0
        self.dups = 0
        self.gaps = 0
        self.updates = 0
        self.update_dups = 0
        self.last_read = -1e9

    async def open(self, target: Target, timeout: float = 60) -> None:
        self.history = asyncio.get_running_loop().create_future()
        self.history.add_done_callback(lambda f: f.cancelled() or f.exception())
        url = target.ws_url(self.room.name)
        if self.last_id is not None:
            url += f"?after={self.last_id}&rev={self.max_rev}"
        headers = {"Origin": target.origin, "Cookie": self.cookie}
        self.closing = False
        start = now()
        async with asyncio.timeout(timeout):
            ws = await wsclient.connect(url, headers, self.on_text, self.on_close)
            self.ws = ws
            await self.history
        self.run.connect_times.append(now() - start)

    async def close(self) -> None:
        self.closing = True
        ws, self.ws = self.ws, None
        if ws is not None:
            await ws.close()

    def send(self, frame: dict) -> None:
        if self.ws is not None:
            self.ws.send_text(json.dumps(frame, ensure_ascii=False))

    def on_close(self, code: int) -> None:
        if self.history is not None and not self.history.done():
            self.history.set_exception(ConnectionError(f"closed before history ({code})"))
        if not self.closing:
            self.run.errors[f"closed_by_server:{code}"] += 1
            self.ws = None
            self.run.dropped.add(self)

    def on_text(self, payload: bytes) -> None:
        arrived = now()
        frame = json.loads(payload)
        kind = frame.get("type")
        run = self.run
        run.frames[kind] += 1
        if kind == "message":
            self._message(frame, arrived, live=True)
        elif kind == "update":
            message = frame.get("message") or {}
            self._update(message, frame.get("rev", message.get("rev")), arrived)
        elif kind == "typing":
            if self.room.typing_at:
                run.typing_s.append(arrived - self.room.typing_at)
        elif kind == "history" and self.history is not None and not self.history.done():
            self._history(frame)
            self.history.set_result(None)
        elif kind == "error":
            run.errors[f"error_frame:{frame.get('code')}"] += 1

    def _history(self, frame: dict) -> None:
        messages = frame.get("messages") or []
        rev = frame.get("rev")
        if self.last_id is None:  # first open: where this socket's count starts
            ids = [m["id"] for m in messages if isinstance(m.get("id"), int)]
            self.last_id = max(ids, default=0)
            self.max_rev = rev if isinstance(rev, int) else 0
            return
        run = self.run
        run.resumes += 1
        if frame.get("truncated"):
            run.errors["resume_truncated"] += 1
        if frame.get("more"):
            run.errors["resume_more"] += 1  # would need the history API: not expected here
        for message in messages:
            self._message(message, 0.0, live=False)
        for message in frame.get("updates") or []:
            run.resumed_updates += 1
            self._update(message, message.get("rev"), 0.0)
        if isinstance(rev, int):
            self.max_rev = max(self.max_rev, rev)

    def _message(self, message: dict, arrived: float, live: bool) -> None:
        mid = message.get("id")
        if not isinstance(mid, int):
            self.run.errors["message_without_id"] += 1
            return
        if mid <= self.last_id:
            self.dups += 1
            return
        self.gaps += mid - self.last_id - 1
        self.last_id = mid
        self.received += 1
        room, run = self.room, self.run
        room.top_id = max(room.top_id, mid)
        rev = message.get("rev")
        if isinstance(rev, int):  # changed since it was sent: this is its present state
            self.max_rev = max(self.max_rev, rev)
            self._seen(mid, rev)
        text = message.get("text") or ""
        if not text.startswith(MARK):
            return
        _, sent_at, cid = text.split(" ", 2)
        echo = room.echo.pop(cid, None)
        if echo is not None and not echo.done():
            echo.set_result(mid)
        if not live:
            run.resumed_messages += 1
            return
        latency = arrived - float(sent_at)
        run.message_s.append(latency)
        if latency > SLOW_S:
            run.slow[int((arrived - run.phase_start) // 5) * 5] += 1
        if message.get("username") == self.user:
            return
        # A person reads now and then, never more than once per READ_MIN_INTERVAL.
        spec = run.spec
        if arrived - self.last_read >= spec.read_min_interval and (
            run.rng.random() < spec.read_probability
        ):
            self.last_read = arrived
            delay = run.rng.uniform(0.5, spec.read_delay)
            asyncio.get_running_loop().call_later(delay, self._read, mid)

    def _read(self, mid: int) -> None:
        if self.ws is not None and not self.away and not self.run.stopping:
            self.send({"type": "read", "id": mid})
            self.run.reads_sent += 1

    def _seen(self, mid: int, rev: int) -> bool:
        """Record that this socket saw message MID at REV; False if it had seen that already."""
        if self.seen_rev is None:
            self.seen_rev = {}
        if rev <= self.seen_rev.get(mid, -1):
            return False
        self.seen_rev[mid] = rev
        return True

    def _update(self, message: dict, rev, arrived: float) -> None:
        mid = message.get("id")
        if not isinstance(mid, int) or not isinstance(rev, int):
            self.run.errors["bad_update_frame"] += 1
            return
        room = self.room
        room.final_rev[mid] = max(room.final_rev.get(mid, -1), rev)
        self.max_rev = max(self.max_rev, rev)
        if not self._seen(mid, rev):
            self.update_dups += 1
            return
        self.updates += 1
        if arrived:
            sent_at = room.reacted_at.get(mid)
            if sent_at is not None:
                self.run.update_s.append(arrived - sent_at)


class Run:
    def __init__(self, spec: TeamDaySpec) -> None:
        self.spec = spec
        self.rng = random.Random(7)
        self.message_s = array("d")
        self.slow: Counter[int] = Counter()  # 5-s bucket of the phase -> messages over SLOW_S
        self.phase_start = 0.0
        self.lag_s = array("d")  # the generator's own event-loop lateness
        self.update_s = array("d")
        self.typing_s = array("d")
        self.connect_times = array("d")
        self.frames: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.dropped: set[Sock] = set()
        self.sent: Counter[str] = Counter()
        self.reads_sent = 0
        self.resumes = 0
        self.resumed_messages = 0
        self.resumed_updates = 0  # changes a resume's `updates` held
        self.reconnects = 0
        self.stopping = False


async def _open_many(target: Target, socks: list[Sock], limit: int) -> list[Sock]:
    gate = asyncio.Semaphore(limit)

    async def one(sock: Sock) -> Sock | None:
        async with gate:
            try:
                await sock.open(target)
                return sock
            except (OSError, TimeoutError, ValueError) as exc:
                sock.run.errors[connect_error(exc)] += 1
                await sock.close()
                sock.last_id = None
                return None

    done = await asyncio.gather(*(one(s) for s in socks))
    return [s for s in done if s is not None]


async def _conversation(run: Run, room: Room, deadline: float) -> None:
    """Typing, then a message, about every INTERVAL s; a reaction to every REACT_EVERY-th."""
    spec, rng = run.spec, run.rng
    loop = asyncio.get_running_loop()
    reactions: list[asyncio.Task] = []
    count = 0
    await asyncio.sleep(rng.uniform(0, spec.interval))
    while now() < deadline:
        present = room.connected()
        if not present:
            await asyncio.sleep(1.0)
            continue
        writer = rng.choice(present)
        writer.send({"type": "typing"})
        room.typing_at = now()
        run.sent["typing"] += 1
        await asyncio.sleep(spec.typing_lead)
        if writer.ws is None or writer.away:  # went away while typing: someone else writes
            present = room.connected()
            if not present:
                continue
            writer = rng.choice(present)
        count += 1
        cid = f"{room.index}:{count}"
        echo = room.echo[cid] = loop.create_future()
        writer.send({"type": "message", "text": f"{MARK}{now():.6f} {cid}", "client_id": cid})
        room.sent += 1
        run.sent["message"] += 1
        if count % spec.react_every == 0:
            reactions.append(asyncio.create_task(_react(run, room, writer, echo)))
        gap = rng.expovariate(1.0 / spec.interval) - spec.typing_lead
        await asyncio.sleep(max(0.0, min(gap, deadline - now())))
    await asyncio.gather(*reactions)


async def _react(run: Run, room: Room, writer: Sock, echo: asyncio.Future) -> None:
    try:
        mid = await asyncio.wait_for(echo, 10)
    except TimeoutError:
        run.errors["message_not_echoed"] += 1
        return
    await asyncio.sleep(run.rng.uniform(0.5, 3.0))
    others = [s for s in room.connected() if s.user != writer.user]
    if not others or run.stopping:
        return
    room.reacted_at[mid] = now()
    run.rng.choice(others).send({"type": "react", "id": mid, "emoji": EMOJI})
    run.sent["react"] += 1


async def _reconnects(run: Run, target: Target, socks: list[Sock], deadline: float) -> None:
    """Close a random socket now and then; it comes back with ?after=&rev= (resume)."""
    spec, rng = run.spec, run.rng
    rate = len(socks) * spec.reconnect_per_min / 60.0
    tasks: list[asyncio.Task] = []

    async def bounce(sock: Sock) -> None:
        sock.away = True
        await sock.close()
        await asyncio.sleep(rng.uniform(0, spec.offline))
        try:
            await sock.open(target)
            run.reconnects += 1
        except (OSError, TimeoutError, ValueError) as exc:
            run.errors[f"reconnect:{type(exc).__name__}"] += 1
            run.dropped.add(sock)
            await sock.close()
        sock.away = False

    if rate > 0:
        while True:
            await asyncio.sleep(rng.expovariate(rate))
            if now() >= deadline:
                break
            sock = rng.choice(socks)
            if sock.ws is not None and not sock.away:
                tasks.append(asyncio.create_task(bounce(sock)))
    await asyncio.gather(*tasks)


async def _lag(run: Run, deadline: float, every: float = 0.01) -> None:
    """How late the generator's own loop wakes up: a stalled generator would be
    measured as the server's latency."""
    while now() < deadline:
        due = now() + every
        await asyncio.sleep(every)
        run.lag_s.append(max(0.0, now() - due))


async def run_teamday(target: Target, spec: TeamDaySpec, probe: Probe | None = None) -> dict:
    if spec.users % spec.members or spec.users < spec.members:
        raise ValueError("users must be a multiple of members")
    tag = secrets.token_hex(3)
    run = Run(spec)
    t0 = now()
    cookies = await login_many(target, spec.users, f"w7{tag}")
    auth_s = now() - t0
    names = [f"w7{tag}_{i}" for i in range(spec.users)]  # as login_many names them
    groups = spec.users // spec.members
    rooms = [Room(c, f"w7_{tag}_{c}") for c in range(spec.conversations)]
    socks: list[Sock] = []
    for room in rooms:
        for j in range(spec.members):
            user = (room.index % groups) * spec.members + j
            sock = Sock(run, room, names[user], cookies[user])
            room.sockets.append(sock)
            socks.append(sock)
    if probe:
        probe.start_sampling()
    t1 = now()
    live = await _open_many(target, socks, spec.connect_concurrency)
    connect_s = now() - t1
    rss_connected = probe.rss_kb() if probe else 0
    for room in rooms:
        room.sockets = [s for s in room.sockets if s.last_id is not None]
    await asyncio.sleep(spec.settle)  # join-time presence, then the heartbeat's rhythm

    meter = Meter(probe)
    run.phase_start = now()
    deadline = now() + spec.duration
    tasks = [asyncio.create_task(_conversation(run, room, deadline)) for room in rooms]
    tasks.append(asyncio.create_task(_reconnects(run, target, live, deadline)))
    tasks.append(asyncio.create_task(_lag(run, deadline)))
    await asyncio.sleep(max(0.0, deadline - now()))
    frames_in_phase = run.frames["message"] + run.frames["update"]
    phase = meter.stop(frames_in_phase)
    rss_kb = probe.rss_kb() if probe else 0
    run.stopping = True
    await asyncio.gather(*tasks)  # the last reactions and reconnects

    # Drain: every socket that is still open holds its room's newest id and reactions.
    end = now() + spec.drain
    kept = [s for s in live if s not in run.dropped]
    while now() < end:
        if all(
            s.last_id >= s.room.top_id
            and all((s.seen_rev or {}).get(m, -1) >= r for m, r in s.room.final_rev.items())
            for s in kept
        ):
            break
        await asyncio.sleep(0.1)
    if probe:
        await probe.stop_sampling()
    await close_many(live)

    lost = sum(s.gaps + (s.room.top_id - s.last_id) for s in kept)
    updates_lost = sum(
        1 for s in kept for m, r in s.room.final_rev.items() if (s.seen_rev or {}).get(m, -1) < r
    )
    wall = phase["wall_s"]
    worker = phase.get("server_cpu_s")
    redis = phase.get("redis_cpu_s")
    messages_stored = sum(r.top_id for r in rooms)
    return {
        "spec": asdict(spec),
        "sockets": len(socks),
        "connected": len(live),
        "users": spec.users,
        "conversations": spec.conversations,
        "auth_s": round(auth_s, 1),
        "connect_s": round(connect_s, 1),
        "joins_per_s": round(len(live) / connect_s, 1) if connect_s else None,
        "connect_ms": percentiles_ms(run.connect_times),
        "messages_sent": run.sent["message"],
        "messages_stored": messages_stored,
        "typing_sent": run.sent["typing"],
        "reactions_sent": run.sent["react"],
        "reads_sent": run.reads_sent,
        "reconnects": run.reconnects,
        "resumes": run.resumes,
        "resumed_messages": run.resumed_messages,
        "resumed_updates": run.resumed_updates,
        "messages_per_s": round(run.sent["message"] / wall, 2),
        "frames_received": dict(run.frames),
        "delivered_per_s": round(frames_in_phase / wall, 1),
        "latency_ms": percentiles_ms(run.message_s),
        "slow_messages_by_5s": {str(k): v for k, v in sorted(run.slow.items())},
        "generator_lag_ms": percentiles_ms(run.lag_s),
        "update_latency_ms": percentiles_ms(run.update_s),
        "typing_latency_ms": percentiles_ms(run.typing_s),
        "lost": lost,
        "gaps": sum(s.gaps for s in kept),
        "duplicates": sum(s.dups for s in kept),
        "updates_lost": updates_lost,
        "update_duplicates": sum(s.update_dups for s in kept),
        "dropped_sockets": len(run.dropped),
        "errors": dict(run.errors),
        **phase,
        "wall_s": round(wall, 3),
        "worker_cpu_share": round(worker / wall, 3) if worker is not None else None,
        "redis_cpu_share": round(redis / wall, 3) if redis is not None else None,
        "server_rss_connected_mb": round(rss_connected / 1024, 1),
        "server_rss_mb": round(rss_kb / 1024, 1),
        "server_peak_rss_mb": round(probe.peak_rss_kb / 1024, 1) if probe else None,
        "goal": {"worker_cpu_share": 0.5, "p99_ms": 50.0},
    }
