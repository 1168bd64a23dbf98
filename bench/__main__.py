"""Run the chat benchmarks against chatapp and the baseline; write results and docs.

python -m bench [--quick] [--workloads W1,W1x,W7,...] [--target chatapp|baseline|both]
    [--memcheck] [--redis single|cluster]

With --redis cluster every chatapp workload also runs on a fresh local Redis Cluster
(3 primaries + 3 replicas, target chatapp-cluster), beside the single Redis, in one run.
"""

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

from bench import report
from bench.procs import CLUSTER_TARGET, REPO, TARGETS, StartError, run_generator, running
from bench.procstat import machine_facts, raise_nofile
from bench.workloads import WORKLOADS

RESULTS = REPO / "bench" / "results"


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def one_line(result: dict) -> str:
    if "failed" in result:
        return f"FAILED: {result['failed'].splitlines()[0]}"
    lat = result.get("latency_ms") or {}
    line = (
        f"delivered/s={result.get('delivered_per_s')} p99={lat.get('p99')}ms "
        f"lost={result.get('lost')} errors={sum((result.get('errors') or {}).values())} "
        f"kb/socket={result.get('kb_per_socket')} joins/s={result.get('joins_per_s')}"
    )
    if "updates_lost" in result:
        line += f" updates lost={result['updates_lost']} dup={result.get('update_duplicates')}"
    if "worker_cpu_share" in result:
        line += (
            f" worker CPU={result['worker_cpu_share']} Redis CPU={result.get('redis_cpu_share')}"
            f" connected={result.get('connected')}/{result.get('sockets')}"
        )
    if "primaries" in result:
        shares = " ".join(
            f"{p['port']}:{p['messages']}msg/{p['us_per_message']}µs" for p in result["primaries"]
        )
        line += (
            f" stored={result.get('stored')} Redis µs/msg={result.get('redis_us_per_message')}"
            f" per primary {shares} spread msg/cpu={result['spread']['messages_pct']}"
            f"/{result['spread']['cpu_pct']}%"
        )
    return line


MEMCHECK_S = 300.0  # the memory-growth check: a 5-minute W3


def measure(
    kind: str,
    workload: str,
    log_dir: Path,
    quick: bool,
    auth: bool = True,
    duration: float | None = None,
) -> dict:
    name = workload if duration is None else f"{workload}-{duration:.0f}s"
    load_before = os.getloadavg()[0]
    try:
        with running(kind, log_dir) as target:
            result = run_generator(
                workload,
                target,
                log_dir / f"{name}-{kind}.json",
                quick=quick,
                auth=auth,
                duration=duration,
            )
    except StartError as exc:
        return {"workload": workload, "failed": str(exc)}
    # The machine may be shared: a 1-minute load well above 2 (its cores) means disturbed.
    result["loadavg_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return result


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few seconds per workload")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="e.g. W1,W4")
    parser.add_argument("--target", choices=[*TARGETS, "both"], default="both")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the generator ceiling")
    parser.add_argument("--no-docs", action="store_true", help="leave docs/ untouched")
    parser.add_argument(
        "--redis",
        choices=["single", "cluster"],
        default="single",
        help="cluster: chatapp workloads also run on a local 3-primary Redis Cluster",
    )
    parser.add_argument(
        "--memcheck",
        action="store_true",
        help=f"also run W3 on chatapp for {MEMCHECK_S:.0f} s and report RSS growth",
    )
    args = parser.parse_args(argv)
    names = {w.upper(): w for w in WORKLOADS}  # W1x or w1x or W1X
    asked = [w.strip().upper() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in asked if w not in names]
    if unknown:
        parser.error(f"unknown workloads {unknown}; choose from {sorted(WORKLOADS)}")
    workloads = [names[w] for w in asked]
    targets = list(TARGETS) if args.target == "both" else [args.target]
    if args.redis == "cluster" and "chatapp" in targets:
        targets.append(CLUSTER_TARGET)
    nofile = raise_nofile()

    stamp = time.strftime("%Y%m%dT%H%M%S")
    log_dir = RESULTS / "logs" / stamp
    run = {
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench", *argv]),
        "quick": args.quick,
        "machine": {**machine_facts(), "nofile": nofile},
        "pinning": {"server_and_redis_cpu": "0", "generator_cpu": "1"},
        "redis": args.redis,
        "titles": {w: WORKLOADS[w].title for w in workloads},
        "ceiling": None,
        "workloads": {},
    }
    if not args.no_ceiling:
        log("generator ceiling (W1 shape against bench/ceiling_server.py) ...")
        run["ceiling"] = measure("ceiling", "W1", log_dir, args.quick, auth=False)
        log(f"  {one_line(run['ceiling'])}")
    for workload in workloads:
        run["workloads"][workload] = {}
        for kind in targets:
            if kind == "baseline" and WORKLOADS[workload].chatapp_only:
                continue
            log(f"{workload} {kind} ...")
            result = measure(kind, workload, log_dir, args.quick)
            run["workloads"][workload][kind] = result
            log(f"  {one_line(result)}")
    if args.memcheck:
        log(f"memory check: W3 chatapp for {MEMCHECK_S:.0f} s ...")
        run["memcheck"] = measure("chatapp", "W3", log_dir, False, duration=MEMCHECK_S)
        growth = run["memcheck"].get("rss_growth_after_1min")
        log(f"  {one_line(run['memcheck'])} rss growth after 1 min={growth}")
    run["finished"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")

    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(run, indent=1)
    (RESULTS / f"{stamp}.json").write_text(text)
    (RESULTS / "latest.json").write_text(text)
    log(f"results: {RESULTS / (stamp + '.json')}")
    if not args.no_docs:
        md, png = report.write(run, REPO / "docs")
        log(f"report: {md} and {png}")


if __name__ == "__main__":
    main()
