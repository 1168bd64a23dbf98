"""Profile a server under one workload with py-spy; print where its time goes.

    python -m bench.profile W1 [--target chatapp] [--duration 15] [--rate 250]

Starts the target (and its Redis) pinned as `python -m bench` does, runs the
workload's generator, and samples the server with `py-spy record --format raw`
for the whole run (non-blocking sampling, so the server is not paused). The
collapsed stacks land in bench/results/logs/<stamp>/; the summary printed here
is the functions with the most samples on top of the stack (self) and
anywhere in it (total), as shares of the samples taken while the server was
not idle in the event loop's `select`.
"""

import argparse
import collections
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.procs import REPO, TARGETS, run_generator, running

IDLE = ("select (selectors.py", "poll (selectors.py", "run (uvloop")


def summarise(raw: Path, top: int = 25) -> str:
    """Self and total shares per function from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    busy = idle = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        if any(frames[-1].startswith(i) for i in IDLE):
            idle += n
            continue
        busy += n
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    if not busy:
        return "no busy samples"
    lines = [f"samples: {busy} busy, {idle} idle ({busy / (busy + idle):.0%} busy)", ""]
    for title, counter in (("self", own), ("total", total)):
        lines.append(f"-- top {top} by {title} (share of busy samples)")
        for frame, n in counter.most_common(top):
            lines.append(f"{n / busy:6.1%}  {frame}")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("workload", nargs="?", default="W1")
    parser.add_argument("--target", choices=TARGETS, default="chatapp")
    parser.add_argument("--duration", type=float, default=15.0, help="send phase, seconds")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy")
    if not spy:
        sys.exit("py-spy is not installed (pip install py-spy)")
    log_dir = REPO / "bench" / "results" / "logs" / time.strftime("%Y%m%dT%H%M%S")
    raw = log_dir / f"{args.workload}-{args.target}.pyspy.txt"
    with running(args.target, log_dir) as target:
        pid = target.server_pids[0]
        argv = [spy, "record", "--pid", str(pid), "--format", "raw", "--nonblocking"]
        argv += ["--rate", str(args.rate), "--output", str(raw)]
        spy_proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            result = run_generator(
                args.workload,
                target,
                log_dir / f"{args.workload}-{args.target}.json",
                quick=False,
                duration=args.duration,
            )
        finally:
            spy_proc.send_signal(2)  # SIGINT: py-spy writes what it has and exits
            _, err = spy_proc.communicate(timeout=60)
    lat = result.get("latency_ms") or {}
    print(
        f"{args.workload} {args.target}: delivered/s={result.get('delivered_per_s')} "
        f"p99={lat.get('p99')} ms lost={result.get('lost')} errors={result.get('errors')} "
        f"cpu_us_per_frame={result.get('cpu_us_per_frame')} "
        f"server_cpu_util={result.get('server_cpu_util')}"
    )
    if not raw.exists():
        sys.exit(f"py-spy wrote nothing: {err.decode(errors='replace')[-500:]}")
    print(f"profile: {raw.relative_to(REPO)}\n")
    print(summarise(raw))


if __name__ == "__main__":
    main()
