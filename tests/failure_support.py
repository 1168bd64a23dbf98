"""Helpers for the failure tests: clients that follow a room across drops, and checks.

A `Follower` behaves like the room page's script: one socket at a time, and
after a drop it reconnects (to the same server or another one) with
`?after=<last id seen>`. It records every message it sees, and notes any
duplicate or gap in the ids, so a test can assert that no acknowledged
message is missing or doubled for anyone.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterable

import aiohttp
import redis.asyncio as aioredis

from chatapp.store.keys import Keys

from .client import Client, Socket
from .support import until


def loop_time() -> float:
    return asyncio.get_running_loop().time()


async def http_status(base: str, path: str, person: Client | None = None) -> int:
    """Status of a GET (redirects not followed); 0 when the server does not answer."""
    client = person or Client(base)
    try:
        return (await client.get(base + path, timeout=aiohttp.ClientTimeout(total=5))).status
    except (aiohttp.ClientError, TimeoutError):
        return 0
    finally:
        if person is None:
            await client.close()


async def status_is(base: str, path: str, status: int) -> bool:
    return await http_status(base, path) == status


async def room_seq(redis_url: str, room: str) -> int:
    client = aioredis.from_url(redis_url)
    try:
        return int(await client.get(Keys.room_seq(room)) or 0)
    finally:
        await client.aclose()


async def stored_messages(redis_url: str, room: str) -> list[dict]:
    client = aioredis.from_url(redis_url)
    try:
        return [json.loads(m) for m in await client.lrange(Keys.room_history(room), 0, -1)]
    finally:
        await client.aclose()


async def held_before(
    person: Client, room: str, frame: dict, since: int, base: str | None = None
) -> list[dict]:
    """The held messages older than a `history` frame's and newer than `since`,
    oldest first, fetched page by page from the history API (a frame with `more`)."""
    out: list[dict] = []
    messages, more = frame["messages"], frame.get("more", False)
    before = messages[0]["id"] if messages else None
    while more and (before is None or before > since + 1):
        query = "limit=100" if before is None else f"limit=100&before={before}"
        async with person.http.get(f"{base or person.base}/api/chat/{room}/history?{query}") as r:
            assert r.status == 200, r.status
            page = await r.json()
        if not page["messages"]:
            break
        out = [m for m in page["messages"] if m["id"] > since] + out
        before, more = page["messages"][0]["id"], page["more"]
    return out


class Follower:
    """One person in one room, reconnecting with ?after= like the browser does."""

    _counter = itertools.count(1)

    def __init__(self, person: Client, room: str, base: str | None = None) -> None:
        self.person = person
        self.name = person.name
        self.room = room
        self.base = base or person.base
        self.fallback: str | None = None  # where to reconnect after a drop (else `base`)
        self.sock: Socket | None = None
        self.last_id = 0
        self.got: dict[str, int] = {}  # client_id -> id, every message seen
        self.arrived: dict[str, float] = {}  # client_id -> loop time first seen
        self.problems: list[str] = []  # duplicates, gaps
        self.sent: dict[str, float] = {}  # my client_ids -> loop time sent
        self.acked: dict[str, float] = {}  # my client_ids seen back (live or on resume)
        self.refused: dict[str, str] = {}  # my client_ids -> error code
        self.refused_at: dict[str, float] = {}  # my client_ids -> loop time of the error
        self.refusals: dict[str, str] = {}  # my client_ids -> the error's detail
        self.histories: list[dict] = []  # each history frame: count, truncated
        self.presence: list[tuple[float, list[str]]] = []
        self.closes: list[int | None] = []
        self.connects = 0
        self.reconnect = True
        self._task: asyncio.Task | None = None
        self.connected = asyncio.Event()

    # -- connection ---------------------------------------------------------------

    async def start(self) -> Follower:
        """Connect, read the history frame, then follow in the background."""
        await self._connect(self.base)
        self._task = asyncio.create_task(self._follow(), name=f"follower-{self.name}")
        return self

    async def _connect(self, base: str) -> None:
        after = self.last_id if self.connects else None
        self.sock = await self.person.join(self.room, after, base=base)
        self.base = base
        self.connects += 1
        first = await self.sock.frame(timeout=10)
        assert first["type"] == "history", first
        if after is not None and first.get("more"):
            # A resume far behind: the frame holds the newest few, the page fetches
            # the rest before them through the history API (PROTOCOL.md).
            since = 0 if first["truncated"] else after
            older = await held_before(self.person, self.room, first, since, base)
            first = {**first, "messages": older + first["messages"]}
        self._handle(first)
        self.connected.set()

    async def _follow(self) -> None:
        while True:
            await self._pump(self.sock)
            self.connected.clear()
            if not self.reconnect or self.person.http.closed:
                return
            target = self.fallback or self.base
            while True:
                try:
                    await self._connect(target)
                    break
                except (aiohttp.ClientError, OSError, TimeoutError, AssertionError):
                    if self.person.http.closed:
                        return
                    await asyncio.sleep(0.1)  # the page's retry delay, not a wait for an event

    async def _pump(self, sock: Socket) -> None:
        async for frame in sock.frames():
            if frame["type"] == "history" and frame.get("more"):
                # A room starting over (Redis lost it) sends a bounded frame too:
                # what it leaves out comes from the history API, as for a resume.
                since = 0 if frame["truncated"] else self.last_id
                older = await held_before(self.person, self.room, frame, since, self.base)
                frame = {**frame, "messages": older + frame["messages"]}
            self._handle(frame)
        self.closes.append(sock.ws.close_code)

    async def stop(self) -> None:
        self.reconnect = False
        if self.sock is not None:
            await self.sock.ws.close()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 5)
            except TimeoutError:
                self._task.cancel()

    # -- frames ---------------------------------------------------------------------

    def _handle(self, frame: dict) -> None:
        kind = frame["type"]
        if kind == "history":
            self.histories.append(
                {"count": len(frame["messages"]), "truncated": frame["truncated"]}
            )
            if frame["truncated"]:
                # The room's history no longer reaches back to our position
                # (e.g. Redis restarted without persistence): start over from it.
                self.last_id = 0
            for message in frame["messages"]:
                self._take(message)
        elif kind == "message":
            self._take(frame)
        elif kind == "error":
            client_id = frame.get("client_id")
            if client_id in self.sent:
                self.refused[client_id] = frame["code"]
                self.refused_at[client_id] = loop_time()
                self.refusals[client_id] = frame["detail"]
        elif kind == "presence":
            self.presence.append((loop_time(), frame["users"]))

    def _take(self, message: dict) -> None:
        mid = message["id"]
        if self.last_id and mid <= self.last_id:
            self.problems.append(f"{self.name}: duplicate id {mid} (had {self.last_id})")
            return
        if self.last_id and mid != self.last_id + 1:
            self.problems.append(f"{self.name}: gap, id {self.last_id} then {mid}")
        self.last_id = mid
        client_id = message.get("client_id")
        if client_id:
            if client_id in self.got:
                self.problems.append(f"{self.name}: {client_id} seen twice")
            self.got[client_id] = mid
            self.arrived.setdefault(client_id, loop_time())
            if message["username"] == self.name and client_id in self.sent:
                self.acked.setdefault(client_id, loop_time())

    # -- sending --------------------------------------------------------------------

    async def send(self, text: str | None = None) -> str | None:
        """Send one message with a fresh client_id; None if the socket was not open."""
        if self.sock is None or not self.connected.is_set() or self.sock.ws.closed:
            return None
        client_id = f"{self.name}-{next(self._counter)}"
        self.sent[client_id] = loop_time()
        try:
            await self.sock.send(text or client_id, client_id)
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            return None
        return client_id

    async def chatter(self, every: float, stop: asyncio.Event, text: str | None = None) -> None:
        """Send a message every `every` seconds while connected, until `stop` is set."""
        while not stop.is_set():
            await self.send(text)
            await asyncio.sleep(every)  # the pace of the talk: the scenario, not a wait

    def users_now(self) -> list[str] | None:
        return self.presence[-1][1] if self.presence else None


def acked_union(followers: Iterable[Follower]) -> dict[str, float]:
    out: dict[str, float] = {}
    for f in followers:
        out.update(f.acked)
    return out


def unanswered(f: Follower) -> set[str]:
    """Messages sent that were neither echoed back nor refused with an error frame."""
    return f.sent.keys() - f.acked.keys() - f.refused.keys()


async def settle(followers: list[Follower], redis_url: str, room: str, timeout: float = 15) -> None:
    """Wait until every follower has caught up with the room's newest id, and every
    message of a follower that never lost its socket got its echo or an error."""

    async def caught_up() -> bool:
        seq = await room_seq(redis_url, room)
        everything = acked_union(followers)
        return all(
            f.connected.is_set()
            and f.last_id == seq
            and everything.keys() <= f.got.keys()
            and (f.connects > 1 or not unanswered(f))
            for f in followers
        )

    try:
        await until(caught_up, timeout, what="every follower to catch up")
    except AssertionError:
        seq = await room_seq(redis_url, room)
        state = [(f.name, f.last_id, f.connects, sorted(unanswered(f))[:5]) for f in followers]
        raise AssertionError(
            f"not settled: seq {seq}; (name, last id, connects, unanswered) {state}"
        ) from None


def check_nothing_lost_or_doubled(followers: list[Follower]) -> int:
    """Assert no duplicate or gap, and every acknowledged message reached everyone.

    Returns how many (message, follower) deliveries were checked.
    """
    problems = [p for f in followers for p in f.problems]
    assert not problems, "\n".join(problems[:20])
    everything = acked_union(followers)
    assert everything, "no message was acknowledged at all"
    for f in followers:
        missing = sorted(everything.keys() - f.got.keys())
        assert not missing, f"{f.name} never got acknowledged {missing[:10]} ({len(missing)})"
    return len(everything) * len(followers)


def cross_delivery(followers: Iterable[Follower], since: float) -> dict[tuple[str, str], float]:
    """Per (sending server, receiving server): seconds from `since` until the first
    message sent at or after `since` on one server was seen by a follower on the other."""
    followers = list(followers)
    out: dict[tuple[str, str], float] = {}
    for sender in followers:
        for client_id, sent_at in sender.sent.items():
            if sent_at < since:
                continue
            for receiver in followers:
                if receiver.base == sender.base or client_id not in receiver.arrived:
                    continue
                delay = receiver.arrived[client_id] - since
                key = (sender.base, receiver.base)
                out[key] = min(out.get(key, delay), delay)
    return out


def now() -> float:
    return time.monotonic()


class TcpProxy:
    """`python -m tests.tcp_proxy` in front of a Redis (see that module)."""

    def __init__(self, target_port: int) -> None:
        from .support import free_port

        self.port = free_port()
        self.target_port = target_port
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> TcpProxy:
        from .support import ROOT

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.tcp_proxy", str(self.port), str(self.target_port)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout.readline().strip() == "ready"
        return self

    def blackhole(self) -> int:
        """Silence every open subscriber connection; return how many there were."""
        self.proc.send_signal(signal.SIGUSR1)
        line = self.proc.stdout.readline()
        return int(line.split()[1])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
