"""The benchmark workloads W1-W9 (and W1x) and the generator process that runs one of them.

    python -m bench.workloads W2 --url http://127.0.0.1:8080 [--quick] \\
        [--server-pids 123] [--redis-pids 456] [--redis-url URL] [--out result.json]
"""

import argparse
import asyncio
import gc
import json
import random
import secrets
import sys
from dataclasses import asdict, dataclass, replace

from bench.actions import ActionsSpec, run_actions
from bench.loadgen import (
    ChatSpec,
    Member,
    Meter,
    Stats,
    Target,
    close_many,
    connect_many,
    delivery_report,
    login_many,
    now,
    percentiles_ms,
    pid_list,
    run_chat,
    send_phase,
    wait_drained,
)
from bench.procstat import Probe, raise_nofile
from bench.search import SearchSpec, run_search
from bench.shards import ShardSpec, run_shards
from bench.sidebar import SidebarSpec, run_sidebar
from bench.teamday import TeamDaySpec, run_teamday


@dataclass(frozen=True)
class IdleSpec:
    """W4: connect idle sockets in steps and read the server's RSS at each."""

    steps: tuple[int, ...] = (2000, 10000)
    sockets_per_room: int = 50  # presence goes to the whole room on every join
    users: int = 50
    settle: float = 3.0
    # Then one more reading once every socket has been pinged: idle sockets live
    # for hours, and a server's heartbeat may cost memory from its first ping on
    # (aiohttp's does; see docs/BENCHMARKS.md). Longer than both servers' interval.
    after_heartbeat: float = 40.0


@dataclass(frozen=True)
class ChurnSpec:
    """W5: a chatting room while other sockets join and leave without pause."""

    stable: int = 20
    churners: int = 25  # concurrent join-dwell-leave loops
    dwell: float = 0.1  # each stay lasts uniform(0, dwell) seconds
    rate: float = 20.0
    duration: float = 40.0
    users: int = 10
    drain: float = 10.0


@dataclass(frozen=True)
class Workload:
    title: str
    full: ChatSpec | IdleSpec | ChurnSpec | SidebarSpec | ActionsSpec | TeamDaySpec | SearchSpec
    quick: ChatSpec | IdleSpec | ChurnSpec | SidebarSpec | ActionsSpec | TeamDaySpec | SearchSpec
    chatapp_only: bool = False  # the baseline has no such feature


_W1 = ChatSpec(rooms=1, sockets_per_room=200, senders_per_room=5, window=10, duration=40)
_W2 = ChatSpec(rooms=1, sockets_per_room=500, senders_per_room=1, rate=50, window=50, duration=40)
_W3 = ChatSpec(rooms=50, sockets_per_room=20, senders_per_room=1, rate=5, window=5, duration=40)
_W4 = IdleSpec()
_W5 = ChurnSpec()
_W6 = SidebarSpec()
_W1X = ActionsSpec(rooms=1, sockets_per_room=200, senders_per_room=5, window=10, duration=40)
_W7 = TeamDaySpec()
_W8 = SearchSpec()
# Redis-bound: 2,000 rooms x 2 sockets, each room's one sender at 0.25 message/s (500
# stored messages/s in all, each delivered to both sockets), named room_0001..room_2000.
_W9 = ShardSpec(
    rooms=2000,
    sockets_per_room=2,
    senders_per_room=1,
    rate=0.25,
    window=5,
    duration=40,
    users=20,
    room_prefix="room_",
    room_digits=4,
    idle_before=5.0,  # one presence refresh (every 5 s) with the 4,000 sockets open
)
QUICK_S = 4.0  # send phase of every --quick workload
WORKLOADS = {
    "W1": Workload("fan-out: 1 room, 200 sockets, 5 senders flat out", _W1,
                   replace(_W1, duration=QUICK_S)),
    "W1x": Workload("actions: the W1 shape, 20 % of the frames reactions and edits", _W1X,
                    replace(_W1X, duration=QUICK_S), chatapp_only=True),
    "W2": Workload("latency: 1 room, 500 sockets, 1 sender at 50/s", _W2,
                   replace(_W2, duration=QUICK_S)),
    "W3": Workload("many rooms: 50 rooms x 20 sockets, 5/s per room", _W3,
                   replace(_W3, duration=QUICK_S)),
    "W4": Workload("idle memory: 2,000 then 10,000 idle sockets", _W4,
                   replace(_W4, steps=(500, 2000), settle=1.0, after_heartbeat=0.0)),
    "W5": Workload("churn: 20 chatting + 25 sockets joining/leaving", _W5,
                   replace(_W5, duration=QUICK_S)),
    "W6": Workload("sidebars: 200 people x 20 conversations, 10 busy, mentions", _W6,
                   replace(_W6, people=40, duration=QUICK_S, settle=2.0, drain=2.0),
                   chatapp_only=True),
    # Quick: 1,000 sockets, busier (a message per room every 2 s, so that about 75
    # get a reaction in 15 s), and 20 % of the sockets reconnecting a minute (about
    # 50 resumes; the full run's 1 % would give 2 or 3 in 15 s).
    "W7": Workload("a team's day: 10,000 sockets in 500 conversations, one worker", _W7,
                   replace(_W7, conversations=50, users=200, interval=2.0, typing_lead=0.5,
                           duration=15.0, settle=2.0, drain=5.0, reconnect_per_min=0.2),
                   chatapp_only=True),
    "W8": Workload("search and scroll-back: 50 rooms x 1,000 held messages", _W8,
                   replace(_W8, conversations=20, messages=200, searches=5, pages=20),
                   chatapp_only=True),
    "W9": Workload("Redis-bound: 2,000 rooms x 2 sockets, every room sending (0.25/s each)", _W9,
                   # 200 rooms at 2/s each: a send phase of 4 s must see several a room.
                   replace(_W9, rooms=200, rate=2.0, duration=QUICK_S), chatapp_only=True),
}  # fmt: skip


async def run_idle(target: Target, spec: IdleSpec, probe: Probe | None = None) -> dict:
    """Connect idle sockets step by step; report server RSS per socket at each step."""
    stats = Stats()
    cookies = await login_many(target, spec.users, f"u{secrets.token_hex(3)}")
    await asyncio.sleep(spec.settle)
    rss0 = probe.rss_kb() if probe else 0
    live: list[Member] = []
    steps: list[dict] = []
    for count in spec.steps:
        new = [Member(f"idle{i // spec.sockets_per_room}", stats) for i in range(len(live), count)]
        start = now()
        joined = await connect_many(target, new, cookies)
        connect_s = now() - start
        live += joined
        await asyncio.sleep(spec.settle)  # join-time presence storms, then memory settles
        rss = probe.rss_kb() if probe else 0
        # Marginal cost against the previous step: start-up heap growth is spread less.
        prev_n, prev_rss = (steps[-1]["connected"], steps[-1]["rss_kb"]) if steps else (0, rss0)
        steps.append(
            {
                "sockets": count,
                "connected": len(live),
                "connect_s": round(connect_s, 3),
                "joins_per_s": round(len(joined) / connect_s, 1) if connect_s else None,
                "server_rss_mb": round(rss / 1024, 1),
                "rss_kb": rss,
                "kb_per_socket": round((rss - rss0) / len(live), 2) if live and probe else None,
                "marginal_kb_per_socket": (
                    round((rss - prev_rss) / (len(live) - prev_n), 2)
                    if probe and len(live) > prev_n
                    else None
                ),
            }
        )
    pinged = None
    if spec.after_heartbeat and probe and live:
        await asyncio.sleep(spec.after_heartbeat)
        rss = probe.rss_kb()
        pinged = {
            "after_s": spec.after_heartbeat,
            "server_rss_mb": round(rss / 1024, 1),
            "kb_per_socket": round((rss - rss0) / len(live), 2),
        }
    peak = probe.hwm_kb() if probe else 0
    await close_many(live)
    return {
        "spec": asdict(spec),
        "sockets": spec.steps[-1],
        "connected": len(live),
        "server_rss_before_mb": round(rss0 / 1024, 1),
        "steps": steps,
        "kb_per_socket": steps[-1]["kb_per_socket"],
        "after_heartbeat": pinged,
        "connect_ms": percentiles_ms(stats.connect_times),
        "errors": dict(stats.errors),
        "other_frames": dict(stats.other),
        "server_peak_rss_mb": round(peak / 1024, 1),
        "lost": 0,
    }


async def run_churn(target: Target, spec: ChurnSpec, probe: Probe | None = None) -> dict:
    """Chat in one room while churners join and leave; count joins and losses."""
    stats = Stats()
    cookies = await login_many(target, spec.users, f"u{secrets.token_hex(3)}")
    if probe:
        probe.start_sampling()
    stable = await connect_many(
        target, [Member("churn", stats) for _ in range(spec.stable)], cookies
    )
    joins, stays = 0, []
    deadline = now() + spec.duration

    async def churner(n: int) -> None:
        nonlocal joins
        rng = random.Random(n)
        while now() < deadline:
            member = Member("churn", stats)
            if not await connect_many(target, [member], cookies[n % len(cookies) :]):
                await asyncio.sleep(0.05)  # refused: back off instead of spinning
                continue
            joins += 1
            await asyncio.sleep(rng.uniform(0, spec.dwell))
            await member.close()
            stays.append(member)

    meter = Meter(probe)
    loops = [asyncio.create_task(churner(n)) for n in range(spec.churners)]
    sent, send_s = await send_phase(stable[:1], stats, duration=spec.duration, rate=spec.rate)
    await asyncio.gather(*loops)
    await wait_drained(stable, sent, spec.drain)
    phase = meter.stop(stats.frames, end=stats.last_rx if stats.frames else None)
    await close_many(stable)
    if probe:
        await probe.stop_sampling()
    report = delivery_report(stats, stable, sent, send_s)
    # A churner is owed every id between its first and last: count holes there.
    report["lost"] += sum(m.gaps for m in stays)
    report["churner_gaps"] = sum(m.gaps for m in stays)
    report["duplicates"] += sum(m.dups for m in stays)
    return {
        "spec": asdict(spec),
        "sockets": spec.stable + spec.churners,
        "connected": len(stable),
        "joins": joins,
        "joins_per_s": round(joins / phase["wall_s"], 1),
        "connect_ms": percentiles_ms(stats.connect_times),
        **report,
        "delivered_per_s": round(stats.frames / phase["wall_s"], 1),
        **phase,
        "wall_s": round(phase["wall_s"], 3),
        "server_peak_rss_mb": round(probe.peak_rss_kb / 1024, 1) if probe else None,
    }


async def run(
    name: str,
    target: Target,
    quick: bool,
    probe: Probe | None,
    duration: float | None = None,
    redis_url: str | None = None,
) -> dict:
    workload = WORKLOADS[name]
    spec = workload.quick if quick else workload.full
    if duration is not None and hasattr(spec, "duration"):
        spec = replace(spec, duration=duration)
    if isinstance(spec, IdleSpec):
        result = await run_idle(target, spec, probe)
    elif isinstance(spec, ChurnSpec):
        result = await run_churn(target, spec, probe)
    elif isinstance(spec, SidebarSpec):
        result = await run_sidebar(target, spec, probe)
    elif isinstance(spec, ActionsSpec):
        result = await run_actions(target, spec, probe)
    elif isinstance(spec, TeamDaySpec):
        result = await run_teamday(target, spec, probe)
    elif isinstance(spec, SearchSpec):
        result = await run_search(target, spec, probe, redis_url)
    elif isinstance(spec, ShardSpec):
        result = await run_shards(target, spec, probe, redis_url)
    else:
        result = await run_chat(target, spec, probe)
    return {"workload": name, "title": workload.title, **result}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.workloads", description=__doc__)
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("--url", required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-auth", action="store_true")
    parser.add_argument("--duration", type=float, help="override the send phase, seconds")
    parser.add_argument("--server-pids", type=pid_list, default=[])
    parser.add_argument("--redis-pids", type=pid_list, default=[])
    parser.add_argument("--redis-url", help="the server's Redis (W8 writes histories there)")
    parser.add_argument("--out", help="write the JSON result here (default: stdout)")
    args = parser.parse_args(argv)
    raise_nofile()
    # A full collection in the generator (~100 ms with 1,000 sockets) would be
    # measured as the server's latency. A run is bounded; its cycles can wait.
    gc.disable()
    probe = Probe(args.server_pids, args.redis_pids) if args.server_pids else None
    target = Target(args.url, auth=not args.no_auth)
    result = asyncio.run(
        run(args.workload, target, args.quick, probe, args.duration, args.redis_url)
    )
    text = json.dumps(result, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
