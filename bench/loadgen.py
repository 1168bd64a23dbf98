"""Browser-like load generator for the chat contract (shared/PROTOCOL.md).

Users register (or log in) through the HTML forms with their CSRF token;
many sockets may share one user's cookie. Each message text carries its send
time from `time.monotonic()` (CLOCK_MONOTONIC, one clock for the whole
machine), so receivers compute end-to-end latency; the per-room `id` reveals
gaps and duplicates. Run `python -m bench.loadgen --help` for an ad-hoc run.
"""

import argparse
import asyncio
import gc
import html
import json
import re
import resource
import secrets
import sys
import time
from array import array
from collections import Counter
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

import aiohttp

from bench import wsclient
from bench.procstat import Probe, raise_nofile

MARK = "bench "  # prefix of every text we send; other messages are ignored
PASSWORD = "Bench-Pw-7f3k9Q2zX"
_REDIRECTS = (301, 302, 303)
_CSRF_INPUT = re.compile(r"<input[^>]*\bname=[\"']csrf_token[\"'][^>]*>", re.I)
_VALUE = re.compile(r"\bvalue=[\"']([^\"']*)[\"']", re.I)
now = time.monotonic


class AuthError(RuntimeError):
    """The server refused to register or log in a bench user."""


@dataclass(frozen=True)
class Target:
    """A chat server on this machine; loopback only, by design."""

    url: str
    auth: bool = True

    def __post_init__(self) -> None:
        host = urlsplit(self.url).hostname
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError(f"refusing non-loopback target {self.url!r}")

    @property
    def origin(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    def ws_url(self, room: str) -> str:
        return f"{self.origin.replace('http', 'ws', 1)}/ws/chat/{room}/"


# ---------------------------------------------------------------- auth


async def _csrf_token(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as resp:
        page = await resp.text()
    field = _CSRF_INPUT.search(page)
    value = _VALUE.search(field.group(0)) if field else None
    if not value:
        raise AuthError(f"no csrf_token input on {url} (HTTP {resp.status})")
    return html.unescape(value.group(1))


async def _logged_in(session: aiohttp.ClientSession, target: Target) -> bool:
    async with session.get(target.origin + "/chat/", allow_redirects=False) as resp:
        return resp.status == 200


REGISTER_TRIES = 50


async def login(target: Target, username: str, password: str = PASSWORD) -> str:
    """Register USERNAME through the forms (log in if that fails); return its Cookie header."""
    # unsafe=True: the default jar drops cookies set by an IP-address host.
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        form = {"username": username, "password": password, "password2": password}
        form["csrf_token"] = await _csrf_token(session, target.origin + "/register/")
        for _ in range(REGISTER_TRIES):
            async with session.post(
                target.origin + "/register/", data=form, allow_redirects=False
            ) as resp:
                # 503: the server hashes a few new passwords at a time; come back.
                if resp.status != 503:
                    break
            await asyncio.sleep(0.2)
        if not await _logged_in(session, target):
            form = {"username": username, "password": password}
            form["csrf_token"] = await _csrf_token(session, target.origin + "/login/")
            async with session.post(
                target.origin + "/login/", data=form, allow_redirects=False
            ) as resp:
                status = resp.status
            if status not in _REDIRECTS or not await _logged_in(session, target):
                raise AuthError(f"cannot register or log in {username!r} (login HTTP {status})")
        # Every cookie, Secure ones included: they go out by hand on ws_connect.
        return "; ".join(f"{c.key}={c.value}" for c in jar)


async def login_many(target: Target, count: int, prefix: str, concurrency: int = 8) -> list[str]:
    """Return COUNT users' cookie headers (empty strings when auth is off)."""
    if not target.auth:
        return [""] * max(count, 1)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> str:
        async with gate:
            return await login(target, f"{prefix}_{i}")

    return list(await asyncio.gather(*(one(i) for i in range(max(count, 1)))))


# ---------------------------------------------------------------- sockets


class Stats:
    """Counters shared by every socket of one run."""

    def __init__(self) -> None:
        self.latencies = array("d")  # seconds, one per delivered frame
        self.connect_times = array("d")
        self.errors: Counter[str] = Counter()
        self.other: Counter[str] = Counter()  # frames we do not time
        self.frames = 0
        self.last_rx = 0.0


# Fast path for our own message frames: two regex searches instead of a
# json.loads (~1.7 µs, a third of what aiohttp's client spent per frame).
# Anything it does not recognise falls back to json.loads.
_FAST_PREFIXES = (b'{"type": "message", ', b'{"type":"message",')
_ID = re.compile(rb'"id": ?(\d+)')
_OUR_TEXT = re.compile(rb'"text": ?"bench ([0-9.]+) ([^ "]*)')


class Member:
    """One WebSocket in a room: reads every frame, counts and times ours."""

    __slots__ = (
        "closing",
        "dups",
        "first",
        "gaps",
        "last_id",
        "pending",
        "received",
        "room",
        "stats",
        "window",
        "ws",
    )

    def __init__(self, room: str, stats: Stats) -> None:
        self.room = room
        self.stats = stats
        self.ws: wsclient.WSClient | None = None
        self.first: asyncio.Future[dict] | None = None
        self.received = 0
        self.gaps = 0
        self.dups = 0
        self.last_id: int | None = None
        self.closing = False
        self.pending: set[str] | None = None  # a sender's unacknowledged client_ids
        self.window: asyncio.Semaphore | None = None

    async def connect(self, target: Target, cookie: str, timeout: float = 30) -> None:
        """Open the socket and wait for the history frame the contract sends first."""
        headers = {"Origin": target.origin}
        if cookie:
            headers["Cookie"] = cookie
        start = now()
        self.first = first = asyncio.get_running_loop().create_future()
        # A handshake that fails never awaits FIRST; don't let asyncio call it unretrieved.
        first.add_done_callback(lambda f: f.cancelled() or f.exception())
        async with asyncio.timeout(timeout):
            self.ws = await wsclient.connect(
                target.ws_url(self.room), headers, self.on_text, self.on_close
            )
            frame = await first
        self.stats.connect_times.append(now() - start)
        if frame.get("type") != "history":
            self.stats.errors["first_frame_not_history"] += 1

    def on_text(self, payload: bytes) -> None:
        arrived = now()
        first = self.first
        if payload.startswith(_FAST_PREFIXES) and first.done():
            ident, text = _ID.search(payload), _OUR_TEXT.search(payload)
            if ident and text:
                self._count(int(ident[1]), float(text[1]), text[2], arrived)
                return
        try:
            frame = json.loads(payload)
        except ValueError:
            self.stats.errors["bad_json"] += 1
            return
        if not first.done():
            # Handle the history frame here, not when `connect` resumes: live
            # frames parsed from the same read come next and must see its ids.
            self._handle(frame, arrived)
            first.set_result(frame)
        else:
            self._handle(frame, arrived)

    def on_close(self, code: int) -> None:
        if not self.first.done():
            self.first.set_exception(ConnectionError(f"closed before history ({code})"))
        elif not self.closing:
            self.stats.errors[f"closed_by_server:{code}"] += 1

    def _handle(self, frame: dict, arrived: float) -> None:
        kind = frame.get("type")
        if kind == "message":
            text = frame.get("text")
            mid = frame.get("id")
            if isinstance(text, str) and text.startswith(MARK) and isinstance(mid, int):
                _, sent_at, cid = text.split(" ", 3)[:3]
                self._count(mid, float(sent_at), cid.encode(), arrived)
            else:
                self.stats.other["foreign_message"] += 1
        elif kind == "history":
            # Live ids continue after the newest id in history: a gap or an
            # overlap at that seam is a resume bug worth counting.
            ids = [m.get("id") for m in frame.get("messages") or ()]
            ids = [i for i in ids if isinstance(i, int)]
            if ids:
                self.last_id = max(ids)
            self.stats.other["history"] += 1
        elif kind == "error":
            self.stats.errors[f"error_frame:{frame.get('code')}"] += 1
        else:
            self.stats.other[str(kind)] += 1

    def _count(self, mid: int, sent_at: float, cid: bytes, arrived: float) -> None:
        last = self.last_id
        if last is not None:
            if mid <= last:
                self.dups += 1
                return
            self.gaps += mid - last - 1
        self.last_id = mid
        self.received += 1
        stats = self.stats
        stats.frames += 1
        stats.last_rx = arrived
        stats.latencies.append(arrived - sent_at)
        if self.pending is not None:
            key = cid.decode()
            if key in self.pending:
                self.pending.discard(key)
                self.window.release()

    async def close(self) -> None:
        self.closing = True
        if self.ws is not None:
            await self.ws.close()


def connect_error(exc: BaseException) -> str:
    """The error counter a failed connect counts in: its HTTP status or its kind."""
    if isinstance(exc, wsclient.HandshakeError):
        return f"connect:HTTP {exc.status}"
    return f"connect:{type(exc).__name__}"


def senders_of(live: list, per_room: int) -> list:
    """The first `per_room` connected sockets of each room (a refused one is skipped)."""
    by_room: dict[str, list] = {}
    for member in live:
        by_room.setdefault(member.room, []).append(member)
    return [m for room in by_room.values() for m in room[:per_room]]


async def connect_many(
    target: Target, members: list[Member], cookies: list[str], concurrency: int = 100
) -> list[Member]:
    """Connect MEMBERS (user i % len(cookies)); return those that made it."""
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int, member: Member) -> Member | None:
        async with gate:
            try:
                await member.connect(target, cookies[i % len(cookies)])
                return member
            except (OSError, TimeoutError, ValueError) as exc:
                member.stats.errors[connect_error(exc)] += 1
                await member.close()
                return None

    done = await asyncio.gather(*(one(i, m) for i, m in enumerate(members)))
    return [m for m in done if m is not None]


def joined_report(spec, total: int, live: list, cookies: list, auth_s, connect_s, stats) -> dict:
    """What a chat workload's result starts with: its spec and how its sockets joined."""
    return {
        "spec": asdict(spec),
        "sockets": total,
        "connected": len(live),
        "users": len(cookies),
        "auth_s": round(auth_s, 3),
        "connect_s": round(connect_s, 3),
        "connect_ms": percentiles_ms(stats.connect_times),
    }


async def close_many(members: list, concurrency: int = 500) -> None:
    """Close every socket (a Member or anything with an async close()), a few at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one(member) -> None:
        async with gate:
            await member.close()

    await asyncio.gather(*(one(m) for m in members))


async def send_loop(
    member: Member,
    key: str,
    sent: Counter,
    *,
    rate: float = 0.0,
    window: int = 10,
    messages: int = 1_000_000,
    pad: int = 0,
    phase: float = 0.0,
) -> None:
    """Send up to MESSAGES texts, RATE per second (0: as fast as echoes come back).

    At most WINDOW messages await their own echo (matched by client_id), so a
    fast sender measures what the server sustains instead of overrunning it.
    """
    member.pending = set()
    member.window = asyncio.Semaphore(window)
    send = member.ws.send_text
    filler = "x" * pad
    # PHASE (0..1 of an interval) staggers rated senders so rooms do not fire in step.
    next_at = now() + (phase / rate if rate else 0.0)
    for seq in range(messages):
        if rate:
            next_at += 1.0 / rate
            delay = next_at - now()
            if delay > 0:
                await asyncio.sleep(delay)
        await member.window.acquire()
        cid = f"{key}:{seq}"
        t = now()
        member.pending.add(cid)
        frame = {"type": "message", "text": f"{MARK}{t:.6f} {cid} {filler}", "client_id": cid}
        sent[member.room] += 1
        send(json.dumps(frame))


# ---------------------------------------------------------------- measuring


def percentiles_ms(values: array) -> dict:
    """Return p50/p90/p99/max of VALUES (seconds) in milliseconds."""
    if not values:
        return {"count": 0, "p50": None, "p90": None, "p99": None, "max": None}
    ordered = sorted(values)
    n = len(ordered)

    def at(p: float) -> float:
        return round(ordered[min(n - 1, max(0, int(p * n + 0.5) - 1))] * 1000, 3)

    return {
        "count": n,
        "p50": at(0.50),
        "p90": at(0.90),
        "p99": at(0.99),
        "max": round(ordered[-1] * 1000, 3),
    }


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Meter:
    """Wall time and CPU of server, Redis and this generator over one phase."""

    def __init__(self, probe: Probe | None) -> None:
        self.probe = probe
        self.start()

    def start(self) -> None:
        self.t0 = now()
        self.gen0 = _self_cpu()
        self.cpu0 = self.probe.cpu() if self.probe else (0.0, 0.0)
        self.by_pid0 = self.probe.redis_cpu_by_pid() if self.probe else {}

    def stop(self, frames: int, end: float | None = None) -> dict:
        wall = max((end or now()) - self.t0, 1e-9)
        gen = _self_cpu() - self.gen0
        out = {"wall_s": wall, "generator_cpu_util": round(gen / wall, 3)}
        if self.probe:
            cpu = self.probe.cpu()
            server, redis = cpu[0] - self.cpu0[0], cpu[1] - self.cpu0[1]
            out["server_cpu_s"] = round(server, 3)
            out["redis_cpu_s"] = round(redis, 3)
            out["server_cpu_util"] = round((server + redis) / wall, 3)
            if frames:
                out["cpu_us_per_frame"] = round((server + redis) / frames * 1e6, 3)
            if len(self.by_pid0) > 1:  # a Redis Cluster: each node's share
                out["redis_cpu_s_by_pid"] = {
                    str(pid): round(cpu - self.by_pid0.get(pid, 0.0), 3)
                    for pid, cpu in self.probe.redis_cpu_by_pid().items()
                }
        return out


@dataclass(frozen=True)
class ChatSpec:
    """Rooms of sockets, some of which send; the shape of W1, W2 and W3."""

    rooms: int = 1
    sockets_per_room: int = 5
    senders_per_room: int = 1
    rate: float = 0.0  # per sender, messages/s; 0: as fast as the window allows
    window: int = 10
    duration: float = 5.0  # bound on the send phase, seconds
    messages: int = 1_000_000  # bound per sender
    users: int = 10
    pad: int = 0
    drain: float = 10.0  # wait this long at most for the last frames
    room_prefix: str = "bench"
    room_digits: int = 0  # rooms <prefix>0001.. (numbered from 1, this wide) instead of <prefix>0..
    # Seconds with every socket open and nothing sent, measured before the send phase:
    # the CPU that open sockets cost without messages (presence refreshes, heartbeats).
    idle_before: float = 0.0


def room_names(spec: ChatSpec) -> list[str]:
    if spec.room_digits:
        return [f"{spec.room_prefix}{r + 1:0{spec.room_digits}d}" for r in range(spec.rooms)]
    return [f"{spec.room_prefix}{r}" for r in range(spec.rooms)]


async def wait_drained(members: list[Member], sent: Counter, timeout: float) -> None:
    """Wait until every member received all sent to its room, or TIMEOUT passes."""
    deadline = now() + timeout
    while now() < deadline:
        if all(m.received >= sent[m.room] for m in members):
            return
        await asyncio.sleep(0.02)


async def send_phase(
    senders: list[Member],
    stats: Stats,
    *,
    duration: float,
    rate: float = 0.0,
    window: int = 10,
    messages: int = 1_000_000,
    pad: int = 0,
) -> tuple[Counter, float]:
    """Run one send_loop per sender for DURATION at most; return (sent per room, seconds)."""
    sent: Counter[str] = Counter()
    if not senders:
        stats.errors["no_sender_connected"] += 1
        return sent, 0.0
    start = now()
    tasks = [
        asyncio.create_task(
            send_loop(
                m,
                f"s{i}",
                sent,
                rate=rate,
                window=window,
                messages=messages,
                pad=pad,
                phase=i / len(senders),
            )
        )
        for i, m in enumerate(senders)
    ]
    _, running = await asyncio.wait(tasks, timeout=duration)
    elapsed = now() - start
    for task in running:
        task.cancel()
    for res in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(res, Exception):
            stats.errors[f"sender:{type(res).__name__}"] += 1
    return sent, elapsed


def delivery_report(stats: Stats, members: list[Member], sent: Counter, send_s: float) -> dict:
    """Counts every workload reports; MEMBERS stayed connected from first send to drain."""
    expected = sum(sent[m.room] for m in members)
    total = sum(sent.values())
    return {
        "sent": total,
        "send_s": round(send_s, 3),
        "sent_per_s": round(total / send_s, 1) if send_s else 0.0,
        "expected": expected,
        "delivered": stats.frames,
        "lost": expected - sum(min(m.received, sent[m.room]) for m in members),
        "gaps": sum(m.gaps for m in members),
        "duplicates": sum(m.dups for m in members),
        "latency_ms": percentiles_ms(stats.latencies),
        "errors": dict(stats.errors),
        "other_frames": dict(stats.other),
    }


async def run_chat(target: Target, spec: ChatSpec, probe: Probe | None = None) -> dict:
    """Connect, send for a bounded time, drain, and report counts and latency."""
    stats = Stats()
    total = spec.rooms * spec.sockets_per_room
    t0 = now()
    cookies = await login_many(target, min(spec.users, total), f"u{secrets.token_hex(3)}")
    auth_s = now() - t0
    if probe:
        probe.start_sampling()
    members = [Member(r, stats) for r in room_names(spec) for _ in range(spec.sockets_per_room)]
    t1 = now()
    live = await connect_many(target, members, cookies)
    connect_s = now() - t1
    senders = senders_of(live, spec.senders_per_room)
    await asyncio.sleep(0.2)  # let join-time presence frames settle
    idle = {}
    if spec.idle_before:
        meter = Meter(probe)
        await asyncio.sleep(spec.idle_before)
        idle = {"idle": meter.stop(0)}
    meter = Meter(probe)
    sent, send_s = await send_phase(
        senders, stats, duration=spec.duration, rate=spec.rate, window=spec.window,
        messages=spec.messages, pad=spec.pad,
    )  # fmt: skip
    await wait_drained(live, sent, spec.drain)
    phase = meter.stop(stats.frames, end=stats.last_rx if stats.frames else None)
    rss_kb = probe.rss_kb() if probe else 0
    await close_many(live)
    if probe:
        await probe.stop_sampling()
    return {
        **(memory_growth(probe.series, meter.t0) if probe else {}),
        **joined_report(spec, total, live, cookies, auth_s, connect_s, stats),
        **delivery_report(stats, live, sent, send_s),
        "delivered_per_s": round(stats.frames / phase["wall_s"], 1),
        **phase,
        "wall_s": round(phase["wall_s"], 3),
        "server_rss_mb": round(rss_kb / 1024, 1),
        "server_peak_rss_mb": round(probe.peak_rss_kb / 1024, 1) if probe else None,
        **idle,
    }


def memory_growth(series: list[tuple[float, int]], start: float) -> dict:
    """Server RSS over the send phase: after its first minute, at its end, and the change."""
    during = [(t - start, kb) for t, kb in series if t >= start]
    if not during:
        return {}
    after_minute = next((kb for t, kb in during if t >= 60), None)
    end = during[-1][1]
    return {
        "rss_series_mb": [[round(t, 1), round(kb / 1024, 1)] for t, kb in during[::5]],
        "rss_after_1min_mb": round(after_minute / 1024, 1) if after_minute else None,
        "rss_end_mb": round(end / 1024, 1),
        "rss_growth_after_1min": round(end / after_minute - 1, 4) if after_minute else None,
    }


def pid_list(text: str) -> list[int]:
    return [int(p) for p in text.split(",") if p.strip()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    parser.add_argument("--url", required=True, help="http://127.0.0.1:PORT")
    parser.add_argument("--no-auth", action="store_true", help="skip the forms, no cookie")
    parser.add_argument("--server-pids", type=pid_list, default=[])
    parser.add_argument("--redis-pids", type=pid_list, default=[])
    defaults = ChatSpec()
    for field, value in asdict(defaults).items():
        parser.add_argument(f"--{field.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args(argv)
    spec = ChatSpec(**{f: getattr(args, f) for f in asdict(defaults)})
    raise_nofile()
    gc.disable()  # see bench.workloads.main: a collection would count as latency
    probe = Probe(args.server_pids, args.redis_pids) if args.server_pids else None
    result = asyncio.run(run_chat(Target(args.url, auth=not args.no_auth), spec, probe))
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
