"""W9, the Redis-bound workload: many rooms of two sockets, every room sending.

Each room's keys and channel carry the hash tag `{room:<name>}`, so on a Redis
Cluster all of a room's traffic lands on the primary owning that slot. After
the chat phase the generator asks Redis who owns what (`CLUSTER SLOTS`, each
node's `process_id` from `INFO server`), reads each room's id counter on its
owner (the messages stored there), and reports per primary: stored messages,
CPU seconds over the phase, µs of Redis CPU per stored message, and how far each
primary's share of messages and of CPU is from the mean (the goal: ±15 %).
On a single Redis the same report has one primary.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import redis
from redis.cluster import key_slot

from bench.loadgen import ChatSpec, Target, room_names, run_chat
from bench.procstat import Probe
from chatapp.store.keys import Keys

SPREAD_GOAL_PCT = 15.0


@dataclass(frozen=True)
class ShardSpec(ChatSpec):
    """The ChatSpec shape, reported per Redis primary."""


def first_node(redis_url: str) -> tuple[str, int]:
    """(host, port) of the first node a `redis://` or `redis+cluster://` URL names."""
    netloc = urlsplit(redis_url).netloc.rsplit("@", 1)[-1]
    host, _, port = netloc.split(",")[0].rpartition(":")
    return host or "127.0.0.1", int(port or 6379)


def _pid(host: str, port: int) -> int:
    with redis.Redis(host=host, port=port, socket_timeout=5) as c:
        return int(c.info("server")["process_id"])


def layout(redis_url: str) -> list[dict]:
    """The primaries: [{'port', 'pid', 'slots': [(start, end)], 'replicas': [{'port', 'pid'}]}]."""
    host, port = first_node(redis_url)
    with redis.Redis(host=host, port=port, socket_timeout=5) as c:
        enabled = c.info("cluster").get("cluster_enabled")
        ranges = c.execute_command("CLUSTER", "SLOTS") if enabled else None
    if not ranges:  # a single Redis owns every slot
        return [{"port": port, "pid": _pid(host, port), "slots": [(0, 16383)], "replicas": []}]
    primaries: dict[int, dict] = {}
    for start, end, primary, *replicas in ranges:
        p_host, p_port = primary[0].decode(), int(primary[1])
        entry = primaries.setdefault(
            p_port,
            {
                "port": p_port,
                "pid": _pid(p_host, p_port),
                "slots": [],
                "replicas": [
                    {"port": int(r[1]), "pid": _pid(r[0].decode(), int(r[1]))} for r in replicas
                ],
            },
        )
        entry["slots"].append((int(start), int(end)))
    return sorted(primaries.values(), key=lambda e: e["port"])


# Keys outside any room's hash tag that a message or a join may touch: whichever primary
# owns them does that work for every room.
GLOBAL_KEYS = {
    "rooms listing": Keys.rooms,
    "conversations listing": Keys.private_conversations,
    "room names": Keys.room_names,
    "users": Keys.users,
}


def slot_owner(shards: list[dict], key: str) -> dict:
    slot = key_slot(key.encode())
    return next(s for s in shards if any(a <= slot <= b for a, b in s["slots"]))


def owner(shards: list[dict], room: str) -> dict:
    return slot_owner(shards, Keys.room_seq(room))


def top_commands(host: str, port: int, count: int = 5) -> list[dict]:
    """The commands this node spent most CPU on since it started (INFO commandstats)."""
    with redis.Redis(host=host, port=port, socket_timeout=5) as c:
        stats = c.info("commandstats")
    rows = [
        {"command": name.removeprefix("cmdstat_"), "calls": v["calls"], "cpu_s": v["usec"] / 1e6}
        for name, v in stats.items()
    ]
    rows.sort(key=lambda r: -r["cpu_s"])
    return [{**r, "cpu_s": round(r["cpu_s"], 3)} for r in rows[:count]]


def stored_by_room(host: str, shards: list[dict], rooms: list[str]) -> dict[str, int]:
    """Each room's id counter, read on the primary owning its slot: the messages it stored."""
    out: dict[str, int] = {}
    for shard in shards:
        mine = [r for r in rooms if owner(shards, r) is shard]
        with redis.Redis(host=host, port=shard["port"], socket_timeout=10) as c:
            pipe = c.pipeline(transaction=False)
            for room in mine:
                pipe.get(Keys.room_seq(room))
            out.update({r: int(v or 0) for r, v in zip(mine, pipe.execute(), strict=True)})
    return out


def _by_pid(result: dict, shards: list[dict]) -> dict[str, float]:
    """CPU s per Redis pid in a phase's result (a single Redis: its total)."""
    by_pid = result.get("redis_cpu_s_by_pid") or {}
    if len(shards) == 1 and not by_pid:
        by_pid = {str(shards[0]["pid"]): result.get("redis_cpu_s") or 0.0}
    return by_pid


def _vs_mean(values: list[float]) -> list[float | None]:
    mean = sum(values) / len(values) if values else 0
    return [round((v / mean - 1) * 100, 1) if mean else None for v in values]


def per_primary(
    result: dict, shards: list[dict], stored: dict[str, int], host: str = "127.0.0.1"
) -> dict:
    """Per primary: rooms, stored messages, CPU, µs per message, shares against the mean."""
    by_pid = _by_pid(result, shards)
    idle = result.get("idle") or {}
    idle_by_pid = _by_pid(idle, shards) if idle else {}
    # The idle phase's CPU per second, over the send phase's wall time: what the open
    # sockets cost a primary without messages (presence refreshes, cluster bus).
    scale = result.get("wall_s", 0) / idle["wall_s"] if idle.get("wall_s") else 0.0
    rows = []
    for shard in shards:
        mine = [r for r in stored if owner(shards, r) is shard]
        messages = sum(stored[r] for r in mine)
        cpu = by_pid.get(str(shard["pid"]), 0.0)
        fixed = idle_by_pid.get(str(shard["pid"]), 0.0) * scale
        replica_cpu = sum(by_pid.get(str(r["pid"]), 0.0) for r in shard["replicas"])
        rows.append(
            {
                "port": shard["port"],
                "rooms": len(mine),
                "messages": messages,
                "cpu_s": round(cpu, 3),
                "replica_cpu_s": round(replica_cpu, 3),
                "us_per_message": round(cpu / messages * 1e6, 2) if messages else None,
                "idle_cpu_s": round(fixed, 3) if idle else None,
                "net_us_per_message": (
                    round((cpu - fixed) / messages * 1e6, 2) if messages and idle else None
                ),
                "global_keys": [
                    name for name, key in GLOBAL_KEYS.items() if slot_owner(shards, key) is shard
                ],
                # Since the node started: the joins are in it too.
                "top_commands": top_commands(host, shard["port"]),
            }
        )
    for key, share in (("messages", "message_vs_mean_pct"), ("cpu_s", "cpu_vs_mean_pct")):
        for row, pct in zip(rows, _vs_mean([r[key] for r in rows]), strict=True):
            row[share] = pct
    spread = {
        "messages_pct": max((abs(r["message_vs_mean_pct"] or 0) for r in rows), default=None),
        "cpu_pct": max((abs(r["cpu_vs_mean_pct"] or 0) for r in rows), default=None),
    }
    spread["even"] = len(rows) > 1 and all(
        v is not None and v <= SPREAD_GOAL_PCT for v in (spread["messages_pct"], spread["cpu_pct"])
    )
    return {"primaries": rows, "spread": spread, "spread_goal_pct": SPREAD_GOAL_PCT}


async def run_shards(
    target: Target, spec: ShardSpec, probe: Probe | None = None, redis_url: str | None = None
) -> dict:
    if not redis_url:
        raise SystemExit("W9 reads each room's stored messages from its Redis: --redis-url")
    result = await run_chat(target, spec, probe)
    shards = layout(redis_url)
    stored = stored_by_room(first_node(redis_url)[0], shards, room_names(spec))
    total = sum(stored.values())
    wall = result.get("wall_s") or 0
    worker, redis_cpu = result.get("server_cpu_s"), result.get("redis_cpu_s")
    idle = result.get("idle") or {}
    scale = wall / idle["wall_s"] if idle.get("wall_s") else None

    def per(cpu: float | None, idle_cpu: float | None = None) -> float | None:
        if not total or cpu is None:
            return None
        if idle_cpu is not None:
            if scale is None:
                return None
            cpu -= idle_cpu * scale
        return round(cpu / total * 1e6, 2)

    return {
        **result,
        "cluster": len(shards) > 1,
        "stored": total,
        "stored_per_s": round(total / wall, 1) if wall else None,
        "worker_cpu_share": round(worker / wall, 3) if wall and worker is not None else None,
        "redis_cpu_share": round(redis_cpu / wall, 3) if wall and redis_cpu is not None else None,
        "worker_us_per_message": per(worker),
        "redis_us_per_message": per(redis_cpu),  # every Redis process, replicas included
        # Less what the open sockets cost with nothing sent (the idle phase, per second).
        "worker_net_us_per_message": per(worker, idle.get("server_cpu_s", 0.0)),
        "redis_net_us_per_message": per(redis_cpu, idle.get("redis_cpu_s", 0.0)),
        **per_primary(result, shards, stored, first_node(redis_url)[0]),
    }
