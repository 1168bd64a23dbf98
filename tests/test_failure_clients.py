"""Slow and stuck clients in a busy room: the others stay fast, the server stays small."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from .client import CLOSED_TYPES, Client, Socket
from .failure_support import Follower, loop_time
from .support import ROOT, AppProcess, RawSocket, until

pytestmark = [pytest.mark.failure, pytest.mark.multiprocess]

HISTORY = 20
HEARTBEAT = 2.0
ENV = {
    "CHATAPP_CHAT_RATE_LIMIT_MESSAGES": "1000000",
    # 30 kB messages: a client that stops reading falls megabytes behind in seconds,
    # so a server that kept what it could not send would show it in its memory.
    "CHATAPP_CHAT_MAX_MESSAGE_LENGTH": "30000",
    # Pings every 2 s (default 20) so the frozen clients are closed within seconds.
    "CHATAPP_CHAT_HEARTBEAT_SECONDS": str(HEARTBEAT),
    # chat.send_buffer_bytes stays at its default (1 MiB unsent per socket).
    # A newcomer's history frame holds 20 of them (600 kB), not 1000 (30 MB).
    "CHATAPP_CHAT_HISTORY_LIMIT": str(HISTORY),
}
EVERY = 0.02  # the sender's pace: 50 messages a second
TEXT = "x" * 30000
WINDOW = 3.0  # seconds of each run without the bad clients (150 messages x 3 receivers)


def server_side_state(server_port: int, client_port: int) -> str | None:
    """TCP state (hex, /proc/net/tcp) of the server's end of a loopback connection."""
    local, remote = f":{server_port:04X}", f":{client_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(local) and fields[2].endswith(remote):
            return fields[3]
    return None


def closed_by_server(server_port: int, client_port: int) -> bool:
    # 01 ESTABLISHED, 08 CLOSE_WAIT: the server still holds the connection open.
    return server_side_state(server_port, client_port) not in ("01", "08")


async def read_one_per_second(sock: Socket) -> int | None:
    """Read one frame a second until the server closes the socket; its close code."""
    while True:
        msg = await sock.ws.receive()
        if msg.type in CLOSED_TYPES or msg.type == aiohttp.WSMsgType.ERROR:
            return sock.ws.close_code
        await asyncio.sleep(1.0)  # the scenario: a reader that takes a second per frame


def latencies(sender: Follower, receivers: list[Follower], start: float, end: float):
    """Send-to-receive seconds of every message sent in [start, end), for every receiver."""
    out = []
    for client_id, sent in sender.sent.items():
        if start <= sent < end:
            out += [r.arrived[client_id] - sent for r in receivers if client_id in r.arrived]
    return out


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


async def test_slow_and_stuck_clients_do_not_slow_the_others(redis_url, figure):
    """Break: three bad clients join a room where one person sends 50 messages of 30 kB a
    second to three others: one never reads (its kernel buffers fill), one reads one
    frame a second, one runs in a process frozen with SIGSTOP (no pong, no close).

    Must hold: the others' median latency (send to receive) while the bad clients are
    there stays within 2x of the runs without them (3 s before they come, 3 s after they
    are gone, measured the same way); the server's memory (VmRSS) stays bounded: it grows
    by far less than what the stuck clients were sent; the server closes all three
    (heartbeat timeout, or 1013 once more than chat.send_buffer_bytes are unsent) and
    lets go of their connections. chat.heartbeat_seconds is lowered to 2 s (default 20)
    so this happens within seconds.
    """
    app = AppProcess(redis_url, **ENV)
    frozen: subprocess.Popen | None = None
    try:
        await asyncio.to_thread(app.start)
        names = ["sam", "rob", "ria", "rex", "never", "slow", "frozen"]
        people = {n: await Client(app.url, n).__aenter__() for n in names}
        try:
            sender = await Follower(people["sam"], "lobby").start()
            receivers = [await Follower(people[n], "lobby").start() for n in ("rob", "ria", "rex")]
            rss: list[tuple[float, int]] = []

            async def sample_rss() -> None:
                while True:
                    rss.append((loop_time(), app.rss_kb()))
                    await asyncio.sleep(0.1)  # a sample every 0.1 s

            sampler = asyncio.create_task(sample_rss())
            stop = asyncio.Event()
            talk = asyncio.create_task(sender.chatter(EVERY, stop, TEXT))
            # The scenario: measured windows of talk (sleeping is what they are made of).
            await asyncio.sleep(1.0)  # warm up
            before = (loop_time(), loop_time() + WINDOW)
            await asyncio.sleep(WINDOW)

            # The bad clients come.
            joined_at = loop_time()
            never = await RawSocket.open(people["never"], "lobby")
            slow = await people["slow"].join("lobby")
            slow_reader = asyncio.create_task(read_one_per_second(slow))
            frozen = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.stuck_client",
                    app.url,
                    "lobby",
                    people["frozen"].cookie_header(),
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            ready = (await asyncio.to_thread(frozen.stdout.readline)).split()
            assert ready[0] == "ready", ready
            os.kill(frozen.pid, signal.SIGSTOP)
            ports = {
                "never": never.port,
                "slow": slow.port,
                "frozen": int(ready[1]),
            }
            closed_at: dict[str, float] = {}

            def all_closed() -> bool:
                for name, port in ports.items():
                    if name not in closed_at and closed_by_server(app.port, port):
                        closed_at[name] = loop_time() - joined_at
                return len(closed_at) == len(ports)

            try:
                await until(all_closed, 30, "the server to close the bad clients", 0.05)
            except AssertionError:
                states = {n: server_side_state(app.port, p) for n, p in ports.items()}
                raise AssertionError(
                    f"server still holds bad clients: closed {closed_at}, tcp states {states}"
                ) from None
            during = (joined_at, loop_time())
            after = (loop_time(), loop_time() + WINDOW)
            await asyncio.sleep(WINDOW)  # the window after the bad clients are gone
            stop.set()
            await talk
            sampler.cancel()
            # It learns of the close only once it has read what it had buffered.
            slow_code = slow_reader.result() if slow_reader.done() else "not seen yet"
            slow_reader.cancel()

            metrics = (await people["sam"].get("/metrics")).body
            for f in (sender, *receivers):
                await f.stop()
            never.close()
            await slow.ws.close()
        finally:
            for person in people.values():
                await person.__aexit__(None, None, None)
        base = latencies(sender, receivers, *before) + latencies(sender, receivers, *after)
        bad = latencies(sender, receivers, *during)
        ratio = statistics.median(bad) / statistics.median(base)
        assert ratio <= 2.0, f"median latency {ratio:.2f}x of the run without the bad clients"
        peak_before = max(kb for t, kb in rss if before[0] <= t < before[1])
        peak_during = max(kb for t, kb in rss if during[0] <= t < after[1])
        growth_mb = (peak_during - peak_before) / 1024
        sent_to_bad_mb = sum(closed_at.values()) / EVERY * len(TEXT) / 2**20
        assert growth_mb < 16, f"server memory grew by {growth_mb:.1f} MB"
        assert growth_mb < sent_to_bad_mb / 2, f"grew {growth_mb:.1f} of {sent_to_bad_mb:.1f} MB"
        log = app.log()
        how = {
            name: " + ".join(
                why
                for pattern, why in (
                    (f"closing slow socket of {name} ", "send buffer overflow"),
                    (f"socket of {name} in lobby: No PONG", "heartbeat timeout"),
                    (f"dropped the connection of {name} ", "reset"),
                )
                if pattern in log
            )
            for name in ports
        }
        assert all(how.values()), how
        assert "chatapp_sockets 4" in metrics  # the sender and three receivers, no more
        assert "Traceback" not in app.log(), app.log()[-4000:]
        figure("median latency without the bad clients (ms)", statistics.median(base) * 1000)
        figure("median latency with them (ms)", statistics.median(bad) * 1000)
        figure("median latency ratio (must be <= 2)", ratio)
        figure(
            "p95 latency without / with them (ms)",
            f"{p95(base) * 1000:.1f} / {p95(bad) * 1000:.1f}",
        )
        figure(
            "seconds until closed: never-reading / 1 frame/s / SIGSTOPped",
            " / ".join(f"{closed_at[n]:.1f}" for n in ("never", "slow", "frozen")),
        )
        figure("how the server closed them", ", ".join(f"{n}: {w}" for n, w in how.items()))
        figure("close the 1 frame/s reader saw by the end", slow_code)
        figure(
            "server VmRSS before / peak with them (MB)",
            f"{peak_before / 1024:.1f} / {peak_during / 1024:.1f}",
        )
        figure("MB the bad clients were sent while connected", round(sent_to_bad_mb, 1))
    finally:
        if frozen is not None:
            frozen.kill()
            frozen.wait(5)
            frozen.stdout.close()
        app.stop()
