"""Render one benchmark run as docs/BENCHMARKS.md and docs/bench.png."""

from pathlib import Path

TARGETS = ("baseline", "chatapp")
THROUGHPUT = ("W1", "W2", "W3", "W5")  # workloads that deliver messages

HOW_TO_RUN = """\
```sh
pip install -e '.[bench]'        # or: pip install -r bench/requirements.txt (matplotlib)
python -m bench --quick          # every workload for a few seconds, both targets
python -m bench                  # the full run: about a minute per workload and target
python -m bench --workloads W2,W4 --target chatapp
python -m bench.loadgen --url http://127.0.0.1:8080 --sockets 50 --senders 2  # ad hoc
```"""

SETUP = """\
- Every workload gets a fresh server; chatapp also gets a fresh private `redis-server`
  (`--save "" --appendonly no`). chatapp runs as
  `python -m chatapp --config config.yaml` with `CHATAPP_REDIS_URL` pointing at it and
  `CHATAPP_ACCOUNTS_BCRYPT_ROUNDS=4 CHATAPP_CHAT_RATE_LIMIT_MESSAGES=1000000
  CHATAPP_DEMO_SEED_USERS=false`.
- The server and its Redis are pinned to CPU 0, the load generator to CPU 1 (`taskset`).
- **baseline** is `bench/baseline_server.py`: plain aiohttp, same URLs and frames, no
  Redis, no accounts (stub forms), no presence; each message serialised once and written
  straight to every socket, a socket more than 1 MiB behind is closed with 1013.
- The generator (`bench/loadgen.py`, one asyncio process) registers users through the
  forms with their CSRF token, shares each user's cookie among several sockets, and opens
  `/ws/chat/{room}/` with `Origin`. Its WebSocket client is `bench/wsclient.py`, a lean
  protocol that parses frames in `data_received`: aiohttp's client cost ~5 µs per frame
  and capped the generator below the baseline server.
- Every text carries its send time (`time.monotonic()`); latency is arrival minus that,
  for every delivered frame. Senders keep a window of messages awaiting their own echo
  (matched by `client_id`). `lost` = expected − received for sockets connected the whole
  time, plus id gaps seen by sockets that churned.
- CPU per frame = (server + Redis utime+stime during the send phase) / delivered frames.
  `gen CPU` is the generator's own CPU share: near 1.0 means the generator, not only the
  server, limited that row."""


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _errors(result: dict) -> str:
    errors = result.get("errors") or {}
    if not errors:
        return "0"
    top = ", ".join(f"{k} ×{v}" for k, v in sorted(errors.items(), key=lambda kv: -kv[1])[:3])
    return f"{sum(errors.values())} ({top})"


def _ratio(a, b) -> str:
    if not a or not b:
        return "–"
    return f"{a / b:.2f}"


def _get(result: dict | None, *path):
    for key in path:
        if not isinstance(result, dict):
            return None
        result = result.get(key)
    return result


def results_table(run: dict) -> list[str]:
    rows = [
        "| workload | target | delivered/s | p50 ms | p90 ms | p99 ms | max ms | lost "
        "| errors | CPU µs/frame | server CPU | gen CPU | peak RSS MB |",
        "|---|---|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|",
    ]
    for name, by_target in run["workloads"].items():
        for kind, res in by_target.items():
            if "failed" in res:
                reason = res["failed"].splitlines()[0]
                rows.append(f"| {name} | {kind} | failed: {reason} |" + " |" * 10)
                continue
            lat = res.get("latency_ms") or {}
            rows.append(
                "| "
                + " | ".join(
                    [
                        name,
                        kind,
                        _fmt(res.get("delivered_per_s"), 0),
                        _fmt(lat.get("p50"), 2),
                        _fmt(lat.get("p90"), 2),
                        _fmt(lat.get("p99"), 2),
                        _fmt(lat.get("max"), 2),
                        _fmt(res.get("lost")),
                        _errors(res),
                        _fmt(res.get("cpu_us_per_frame"), 2),
                        _fmt(res.get("server_cpu_util"), 2),
                        _fmt(res.get("generator_cpu_util"), 2),
                        _fmt(res.get("server_peak_rss_mb")),
                    ]
                )
                + " |"
            )
    return rows


def ratio_table(run: dict) -> list[str]:
    rows = [
        "| workload | delivered/s | p99 latency | CPU per frame | peak RSS | KB per idle socket "
        "| joins/s |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for name, by_target in run["workloads"].items():
        app, base = by_target.get("chatapp"), by_target.get("baseline")
        if not app or not base or "failed" in app or "failed" in base:
            continue
        cells = [
            _ratio(app.get("delivered_per_s"), base.get("delivered_per_s")),
            _ratio(_get(app, "latency_ms", "p99"), _get(base, "latency_ms", "p99")),
            _ratio(app.get("cpu_us_per_frame"), base.get("cpu_us_per_frame")),
            _ratio(app.get("server_peak_rss_mb"), base.get("server_peak_rss_mb")),
            _ratio(app.get("kb_per_socket"), base.get("kb_per_socket")),
            _ratio(app.get("joins_per_s"), base.get("joins_per_s")),
        ]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows


def idle_table(run: dict) -> list[str]:
    rows = [
        "| target | sockets | connected | connect s | joins/s | server RSS MB | KB/socket "
        "| marginal KB/socket |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for kind, res in (run["workloads"].get("W4") or {}).items():
        if "failed" in res:
            rows.append(f"| {kind} | failed: {res['failed'].splitlines()[0]} |" + " |" * 6)
            continue
        rows.append(f"| {kind} | before | | | | {_fmt(res.get('server_rss_before_mb'))} | | |")
        for step in res.get("steps", []):
            cells = [
                step["sockets"],
                step["connected"],
                step["connect_s"],
                step["joins_per_s"],
                step["server_rss_mb"],
                step["kb_per_socket"],
                step["marginal_kb_per_socket"],
            ]
            rows.append(f"| {kind} | " + " | ".join(_fmt(c) for c in cells) + " |")
    return rows


def churn_table(run: dict) -> list[str]:
    rows = [
        "| target | joins | joins/s | connect p99 ms | lost | churner gaps | duplicates | errors |",
        "|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    for kind, res in (run["workloads"].get("W5") or {}).items():
        if "failed" in res:
            continue
        cells = [
            _fmt(res.get("joins")),
            _fmt(res.get("joins_per_s")),
            _fmt(_get(res, "connect_ms", "p99"), 2),
            _fmt(res.get("lost")),
            _fmt(res.get("churner_gaps")),
            _fmt(res.get("duplicates")),
            _errors(res),
        ]
        rows.append(f"| {kind} | " + " | ".join(cells) + " |")
    return rows


def ceiling_lines(run: dict) -> list[str]:
    res = run.get("ceiling")
    if not res:
        return ["Not measured in this run (`--no-ceiling`)."]
    if "failed" in res:
        return [f"Failed: {res['failed'].splitlines()[0]}"]
    return [
        "The W1 shape (1 room, 200 sockets, 5 senders, window 10) against "
        "`bench/ceiling_server.py`, a raw-asyncio server that joins each loop iteration's "
        "frames into one write per socket and so costs a fraction of the generator:",
        "",
        f"- **{_fmt(res.get('delivered_per_s'), 0)} frames/s** received and timed, "
        f"generator CPU {_fmt(res.get('generator_cpu_util'), 2)}, "
        f"ceiling-server CPU {_fmt(res.get('server_cpu_util'), 2)}, "
        f"lost {_fmt(res.get('lost'))}, p99 {_fmt(_get(res, 'latency_ms', 'p99'), 2)} ms.",
        "",
        "A real server writes one frame per socket per message, so the generator spends "
        "more per frame against it (more, smaller reads); rows whose `gen CPU` is near "
        "1.0 were limited by both sides.",
    ]


def machine_lines(run: dict) -> list[str]:
    m = run["machine"]
    return [
        "| | |",
        "|---|---|",
        f"| CPUs (nproc) | {m['nproc']} × {m['cpu_model']} |",
        f"| memory | {_fmt(m['mem_total_mb'])} MB |",
        f"| kernel | {m['kernel']} |",
        f"| Python | {m['python']} |",
        f"| aiohttp | {m['aiohttp']} |",
        f"| redis-py / hiredis | {m['redis_py']} / {m['hiredis']} |",
        f"| redis-server | {m['redis_server']} |",
    ]


def _mode(run: dict) -> str:
    if run["quick"]:
        return "**quick mode**: seconds per workload, indicative only."
    return "full durations."


def _mode(run: dict) -> str:
    if run["quick"]:
        return "**quick mode**: seconds per workload, indicative only."
    return "full durations."


def render_markdown(run: dict, png_name: str) -> str:
    titles = "\n".join(f"- **{w}** {t}" for w, t in run["titles"].items())
    parts = [
        "# Benchmarks",
        "",
        "Generated by `python -m bench` (`bench/report.py`); rerun it rather than edit "
        "this file. Raw numbers: `bench/results/latest.json`.",
        "",
        "## How to run",
        "",
        HOW_TO_RUN,
        "",
        "## Workloads",
        "",
        titles,
        "",
        "## Setup",
        "",
        SETUP,
        "",
        "## This run",
        "",
        f"`{run['command']}` — started {run['started']}, " + _mode(run),
        "",
        *machine_lines(run),
        "",
        "## Generator ceiling",
        "",
        *ceiling_lines(run),
        "",
        "## Results",
        "",
        f"![delivered/s and p99 latency per workload]({png_name})",
        "",
        *results_table(run),
        "",
        "## chatapp / baseline",
        "",
        "Above 1 means chatapp has more of it (good for delivered/s and joins/s, bad for "
        "the rest).",
        "",
        *ratio_table(run),
        "",
        "## W4: idle sockets",
        "",
        "KB/socket is (RSS − RSS before the first socket) / sockets; marginal is against "
        "the previous step.",
        "",
        *idle_table(run),
        "",
        "## W5: churn",
        "",
        *churn_table(run),
        "",
    ]
    return "\n".join(parts)


def plot(run: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    work = run["workloads"]
    names = [w for w in THROUGHPUT if w in work]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    width = 0.38
    colours = {"baseline": "#999999", "chatapp": "#2f6fb0"}
    panels = [
        (axes[0], "delivered frames/s (log)", lambda r: r.get("delivered_per_s"), True),
        (axes[1], "p99 latency, ms (log)", lambda r: _get(r, "latency_ms", "p99"), True),
    ]
    for ax, title, value, log in panels:
        for i, kind in enumerate(TARGETS):
            xs, ys = [], []
            for j, name in enumerate(names):
                res = work[name].get(kind)
                if res and "failed" not in res and value(res):
                    xs.append(j + (i - 0.5) * width)
                    ys.append(value(res))
            ax.bar(xs, ys, width, label=kind, color=colours[kind])
        ax.set_xticks(range(len(names)), names)
        ax.set_title(title)
        if log:
            ax.set_yscale("log")
        ax.legend()
    ax = axes[2]
    for kind in TARGETS:
        res = (work.get("W4") or {}).get(kind)
        if res and "failed" not in res:
            steps = res.get("steps", [])
            ax.plot(
                [s["connected"] for s in steps],
                [s["server_rss_mb"] for s in steps],
                marker="o",
                label=kind,
                color=colours[kind],
            )
    ax.set_title("W4: server RSS MB vs idle sockets")
    ax.set_xlabel("sockets")
    ax.legend()
    mode = "quick" if run["quick"] else "full"
    fig.suptitle(f"chatapp vs baseline ({mode} run, {run['started']})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(run: dict, docs: Path) -> tuple[Path, Path]:
    docs.mkdir(parents=True, exist_ok=True)
    png = docs / "bench.png"
    plot(run, png)
    md = docs / "BENCHMARKS.md"
    md.write_text(render_markdown(run, png.name))
    return md, png
