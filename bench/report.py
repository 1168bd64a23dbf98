"""Render one benchmark run as docs/BENCHMARKS.md and docs/bench.png."""

from pathlib import Path

TARGETS = ("baseline", "chatapp")
# Workloads that deliver messages (W6 and W7 have tables of their own).
THROUGHPUT = ("W1", "W1x", "W2", "W3", "W5")

HOW_TO_RUN = """\
```sh
pip install -e '.[bench]'        # or: pip install -r bench/requirements.txt (matplotlib)
python -m bench --quick          # every workload for a few seconds, both targets
python -m bench                  # the full run: about a minute per workload and target
python -m bench --memcheck       # plus the 5-minute W3 memory-growth check
python -m bench --workloads W2,W4 --target chatapp
python -m bench --workloads W1,W1x,W7 --target chatapp   # message actions; a team's day
python -m bench.report bench/results/latest.json   # re-render docs/ from a results file
python -m bench.profile W1       # py-spy on the server under W1; prints the hot functions
python -m bench.loadgen --url http://127.0.0.1:8080 --sockets 50 --senders 2  # ad hoc
```"""

SETUP = """\
- Every workload gets a fresh server; chatapp also gets a fresh private `redis-server`
  (`--save "" --appendonly no`). chatapp runs as
  `python -m chatapp --config config.yaml` with `CHATAPP_REDIS_URL` pointing at it and
  `CHATAPP_ACCOUNTS_BCRYPT_ROUNDS=4 CHATAPP_CHAT_RATE_LIMIT_MESSAGES=1000000
  CHATAPP_CHAT_MAX_SOCKETS_PER_USER=1000000 CHATAPP_CHAT_ROOMS_PER_HOUR=1000000
  CHATAPP_ACCOUNTS_REGISTRATIONS_PER_ADDRESS=1000000
  CHATAPP_DEMO_SEED_USERS=false` (the generator shares a few users among many sockets).
- The server and its Redis are pinned to CPU 0, the load generator to CPU 1 (`taskset`).
- The runner raises its open-file limit to the hard limit and every process it starts
  inherits it (`resource.setrlimit` before exec): W4 holds 10,000 sockets, so the
  server and the generator each need more than 10,000 descriptors (see `nofile` below).
- Each result records the 1-minute load average before and after it: the machine may be
  shared, and a row measured at a load well above the core count was disturbed.
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
        pinged = res.get("after_heartbeat")
        if pinged:
            rows.append(
                f"| {kind} | same, {_fmt(pinged['after_s'])} s later (every socket pinged) "
                f"| | | | {_fmt(pinged['server_rss_mb'])} | {_fmt(pinged['kb_per_socket'])} | |"
            )
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


def sidebar_table(run: dict) -> list[str]:
    """W6: how fast a sidebar hears of a message elsewhere, and a person of a mention."""
    res = (run["workloads"].get("W6") or {}).get("chatapp")
    if not res or "failed" in res:
        return ["W6 was not run." if not res else f"W6 failed: {res['failed'].splitlines()[0]}"]
    rows = [
        "| frame | received | expected | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for name, count, expected, lat in (
        ("activity (unread count)", res.get("activity_frames"), res.get("activity_expected"),
         res.get("activity_latency_ms") or {}),
        ("notify (mention)", res.get("notify_frames"), res.get("notify_expected_at_most"),
         res.get("notify_latency_ms") or {}),
    ):  # fmt: skip
        cells = [_fmt(count), _fmt(expected)] + [
            _fmt(lat.get(k), 2) for k in ("p50", "p90", "p99", "max")
        ]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    rows += ["", f"Messages sent: {_fmt(res.get('messages_sent'))}; errors: {_errors(res)}."]
    rows[-1] += _apart(res)
    return rows


def _apart(res: dict) -> str:
    """The note on a result carried over from another run (`measured_apart`)."""
    apart = res.get("measured_apart")
    if not apart:
        return ""
    return (
        f" Measured apart from the other workloads: `{apart['command']}`, started "
        f"{apart['started']}, 1-minute load {res.get('loadavg_1min')} on this 2-core machine."
    )


def actions_table(run: dict) -> list[str]:
    """W1x beside W1: what message actions cost the fan-out."""
    w1 = (run["workloads"].get("W1") or {}).get("chatapp")
    w1x = (run["workloads"].get("W1x") or {}).get("chatapp")
    if not w1x:
        return ["W1x was not run."]
    if "failed" in w1x:
        return [f"W1x failed: {w1x['failed'].splitlines()[0]}"]
    rows = [
        "| workload | frames sent | reactions | edits | delivered/s | of them updates "
        "| p50 ms | p99 ms | update p99 ms | lost | twice | CPU µs/frame | gen CPU |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, res in (("W1", w1), ("W1x", w1x)):
        if not res or "failed" in res:
            continue
        kinds = res.get("frames_sent_by_type") or {}
        sent = res.get("frames_sent", res.get("sent"))
        lat = res.get("latency_ms") or {}
        cells = [
            _fmt(sent),
            _fmt(kinds.get("react", 0)),
            _fmt(kinds.get("edit", 0)),
            _fmt(res.get("delivered_per_s"), 0),
            _fmt(res.get("update_frames", 0)),
            _fmt(lat.get("p50"), 2),
            _fmt(lat.get("p99"), 2),
            _fmt(_get(res, "update_latency_ms", "p99"), 2),
            _fmt(_sum(res, "lost", "updates_lost") if name == "W1x" else res.get("lost")),
            _fmt(
                _sum(res, "duplicates", "update_duplicates")
                if name == "W1x"
                else res.get("duplicates")
            ),
            _fmt(res.get("cpu_us_per_frame"), 2),
            _fmt(res.get("generator_cpu_util"), 2),
        ]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    ratio = _div(w1x.get("delivered_per_s"), (w1 or {}).get("delivered_per_s"))
    if ratio is not None and "failed" not in w1:
        rows += ["", f"W1x delivered {_x(ratio)} W1's frames per second in this run."]
    return rows


def teamday_lines(run: dict) -> list[str]:
    """W7: what one worker carries on a team's ordinary day."""
    res = (run["workloads"].get("W7") or {}).get("chatapp")
    if not res:
        return ["W7 was not run."]
    if "failed" in res:
        return [f"W7 failed: {res['failed'].splitlines()[0]}"]
    spec = res.get("spec") or {}
    frames = res.get("frames_received") or {}
    lat, upd, typ = (
        res.get(k) or {} for k in ("latency_ms", "update_latency_ms", "typing_latency_ms")
    )
    wall = res.get("wall_s")
    kinds = ("message", "update", "typing", "presence", "read")
    received = " / ".join(_fmt(frames.get(k, 0)) for k in kinds)
    per_person = _div(res.get("sockets"), res.get("users"))
    lag = res.get("generator_lag_ms") or {}
    load = " / ".join(_fmt(v, 2) for v in res.get("loadavg_1min") or []) or "–"
    return [
        "How many people does one worker carry? Every socket is a different person in its "
        f"conversation (each person has sockets in {_fmt(per_person, 0)}); in each "
        f"conversation a message every {_fmt(spec.get('interval'))} s on average "
        f"(exponential gaps), a `typing` frame {_fmt(spec.get('typing_lead'))} s before it, "
        f"a 👍 from another member on every {_fmt(spec.get('react_every'))}th, read markers "
        f"as people read ({_fmt(spec.get('read_probability', 0) * 100, 0)} % of the "
        "messages a socket receives, at most one per "
        f"{_fmt(spec.get('read_min_interval'), 0)} s), and "
        f"{_fmt(spec.get('reconnect_per_min', 0) * 100, 0)} % of the sockets a minute "
        f"closing and coming back within {_fmt(spec.get('offline'), 0)} s with "
        "`?after=<last id>&rev=<highest rev>`: across those, each socket must get every "
        "message exactly once, and see every reaction (live, in the resume's `updates`, or "
        "in a resumed message's state). Latency is from the send to the frame reaching "
        "each other member (a resume's history is counted, not timed). CPU is utime + "
        "stime of the worker and of Redis over the measured phase (heartbeats, presence "
        "refreshes and the reconnects' joins included).",
        "",
        f"{_fmt(res.get('connected'))} of {_fmt(res.get('sockets'))} sockets connected "
        f"({_fmt(res.get('users'))} people, {_fmt(res.get('conversations'))} conversations of "
        f"{_fmt(spec.get('members'))}; opened in {_fmt(res.get('connect_s'))} s, "
        f"{_fmt(res.get('joins_per_s'), 0)} joins/s), one chatapp worker. Measured over "
        f"{_fmt(wall, 0)} s once all were open: {_fmt(res.get('messages_sent'))} messages "
        f"({_fmt(res.get('messages_per_s'))}/s) after {_fmt(res.get('typing_sent'))} typing "
        "frames, "
        f"{_fmt(res.get('reactions_sent'))} reactions, {_fmt(res.get('reads_sent'))} read "
        f"markers, {_fmt(res.get('reconnects'))} reconnects with `?after=&rev=` "
        f"({_fmt(res.get('resumed_messages'))} messages and "
        f"{_fmt(res.get('resumed_updates'))} changes came in a resume's history).",
        "",
        "| measure | this run | goal |",
        "|---|--:|--:|",
        f"| worker CPU (share of one core) | {_fmt(res.get('worker_cpu_share'), 3)} | ≤ 0.5 |",
        f"| Redis CPU (share of one core) | {_fmt(res.get('redis_cpu_share'), 3)} | |",
        f"| message delivery p50 / p99 / max ms | {_fmt(lat.get('p50'), 2)} / "
        f"{_fmt(lat.get('p99'), 2)} / {_fmt(lat.get('max'), 2)} | p99 ≤ 50 |",
        f"| reaction `update` p50 / p99 ms | {_fmt(upd.get('p50'), 2)} / "
        f"{_fmt(upd.get('p99'), 2)} | |",
        f"| `typing` p50 / p99 ms | {_fmt(typ.get('p50'), 2)} / {_fmt(typ.get('p99'), 2)} | |",
        f"| frames received (message, update, typing, presence, read) | {received} | |",
        f"| lost / twice: messages | {_fmt(res.get('lost'))} / {_fmt(res.get('duplicates'))} "
        "| 0 / 0 |",
        f"| lost / twice: reactions | {_fmt(res.get('updates_lost'))} / "
        f"{_fmt(res.get('update_duplicates'))} | 0 / 0 |",
        f"| server RSS, all open / end of phase MB | {_fmt(res.get('server_rss_connected_mb'))}"
        f" / {_fmt(res.get('server_rss_mb'))} | |",
        f"| generator CPU; its own loop lag p99 / max ms | "
        f"{_fmt(res.get('generator_cpu_util'), 2)}; {_fmt(lag.get('p99'), 2)} / "
        f"{_fmt(lag.get('max'), 2)} | |",
        f"| errors | {_errors(res)} | 0 |",
        f"| 1-minute load average before / after (2 cores) | {load} | |",
    ]


def search_table(run: dict) -> list[str]:
    """W8: search latency at the documented size, and a scroll-back page's."""
    res = (run["workloads"].get("W8") or {}).get("chatapp")
    if not res or "failed" in res:
        return ["W8 was not run." if not res else f"W8 failed: {res['failed'].splitlines()[0]}"]
    spec = res.get("spec") or {}
    rows = [
        f"{_fmt(spec.get('conversations'))} public rooms × {_fmt(spec.get('messages'))} held "
        f"messages ({_fmt(res.get('messages_held'))} messages, {_fmt(res.get('held_mb'))} MB "
        "of stored JSON), all readable by the searcher, so every search scans all of them.",
        "",
        "| request | results | count | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    found = res.get("search_results") or {}
    lines = [
        (f"search: {name}", found.get(name), lat)
        for name, lat in (res.get("search_by_query_ms") or {}).items()
    ]
    lines.append(("search: all of the above", None, res.get("search_ms") or {}))
    lines.append(("scroll-back page (history API, limit=100)", 100, res.get("history_ms") or {}))
    for name, results, lat in lines:  # fmt: skip
        cells = [_fmt(results), _fmt(lat.get("count"))] + [
            _fmt(lat.get(k), 2) for k in ("p50", "p90", "p99", "max")
        ]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    rows += ["", f"Errors: {_errors(res)}." + _apart(res)]
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
        "The baseline writes one frame per socket per message, so the generator spends "
        "more per frame against it (more, smaller reads) than against the ceiling server "
        "or chatapp, which join a loop turn's frames per socket; rows whose `gen CPU` is "
        "near 1.0 were limited by the generator as much as by the server.",
    ]


# (workload, what, how to read the result, the target); `check` returns (value text, met).
def _w1(run):
    app, base = _pair(run, "W1")
    ratio = _div(app.get("delivered_per_s"), base.get("delivered_per_s"))
    cpu = app.get("cpu_us_per_frame")
    return [
        ("W1", "delivered/s vs baseline", "≥ 0.8×", _x(ratio), ratio is not None and ratio >= 0.8,
         _by(ratio, 0.8, "×", low=True)),
        ("W1", "server + Redis CPU per delivered frame", "≤ 12 µs", _us(cpu),
         cpu is not None and cpu <= 12, _by(cpu, 12, " µs")),
    ]  # fmt: skip


def _w2(run):
    app, base = _pair(run, "W2")
    ratio = _div(_get(app, "latency_ms", "p99"), _get(base, "latency_ms", "p99"))
    return [
        (
            "W2",
            "p99 vs baseline",
            "≤ 1.2×",
            _x(ratio),
            ratio is not None and ratio <= 1.2,
            _by(ratio, 1.2, "×"),
        ),
        ("W2", "lost", "0", _fmt(app.get("lost")), app.get("lost") == 0, ""),
    ]


def _w3(run):
    app, _ = _pair(run, "W3")
    p99 = _get(app, "latency_ms", "p99")
    return [
        ("W3", "p99", "< 3 ms", _ms(p99), p99 is not None and p99 < 3, _by(p99, 3, " ms")),
        ("W3", "lost", "0", _fmt(app.get("lost")), app.get("lost") == 0, ""),
    ]


def _w4(run):
    app, _ = _pair(run, "W4")
    kb = app.get("kb_per_socket")
    steps = app.get("steps") or [{}]
    errors = sum((app.get("errors") or {}).values())
    top = steps[-1].get("sockets")
    full = top is not None and steps[-1].get("connected") == top and not errors
    return [
        ("W4", "server RSS per idle socket", "≤ 16 KB", _kb(kb), kb is not None and kb <= 16,
         _by(kb, 16, " KB")),
        ("W4", f"{_fmt(top)} idle sockets on one worker", "no error",
         f"{_fmt(steps[-1].get('connected'))} connected, {errors} errors", full, ""),
    ]  # fmt: skip


def _w5(run):
    app, _ = _pair(run, "W5")
    errors = sum((app.get("errors") or {}).values()) if app else None
    return [
        ("W5", "lost for connected sockets", "0", _fmt(app.get("lost")), app.get("lost") == 0, ""),
        ("W5", "errors", "0", _fmt(errors), errors == 0, ""),
        # Not in the list, but a message twice on one socket is as wrong as a gap.
        ("W5", "duplicates", "0", _fmt(app.get("duplicates")), app.get("duplicates") == 0, ""),
    ]


def _memcheck(run):
    res = run.get("memcheck") or {}
    growth = res.get("rss_growth_after_1min")
    text = (
        f"{_fmt(res.get('rss_after_1min_mb'))} → {_fmt(res.get('rss_end_mb'))} MB ({growth:+.1%})"
        if growth is not None
        else "not measured"
    )
    return [
        ("W3 5 min", "RSS at the end vs after 1 minute", "within 10 %", text,
         growth is not None and abs(growth) <= 0.10, ""),
    ]  # fmt: skip


def _w1x(run):
    app, _ = _pair(run, "W1x")
    lost = _sum(app, "lost", "updates_lost")
    dups = _sum(app, "duplicates", "update_duplicates")
    return [
        ("W1x", "messages and updates lost", "0", _fmt(lost), lost == 0, ""),
        ("W1x", "messages and updates twice", "0", _fmt(dups), dups == 0, ""),
    ]


def _w7(run):
    app, _ = _pair(run, "W7")
    cpu = app.get("worker_cpu_share")
    p99 = _get(app, "latency_ms", "p99")
    lost = _sum(app, "lost", "updates_lost")
    dups = _sum(app, "duplicates", "update_duplicates")
    sockets = app.get("sockets")
    return [
        ("W7", f"worker CPU, {_fmt(sockets)} sockets", "≤ 0.5 core", _core(cpu),
         cpu is not None and cpu <= 0.5, _by(cpu, 0.5, " core")),
        ("W7", "p99 message delivery", "≤ 50 ms", _ms(p99), p99 is not None and p99 <= 50,
         _by(p99, 50, " ms")),
        ("W7", "lost across reconnects (messages, reactions)", "0", _fmt(lost), lost == 0, ""),
        ("W7", "twice across reconnects (messages, reactions)", "0", _fmt(dups), dups == 0, ""),
    ]  # fmt: skip


def _sum(result: dict, *keys: str):
    values = [result.get(k) for k in keys]
    return None if any(v is None for v in values) else sum(values)


TARGETS_CHECKS = {
    "W1": _w1,
    "W1x": _w1x,
    "W2": _w2,
    "W3": _w3,
    "W4": _w4,
    "W5": _w5,
    "W7": _w7,
}


def _pair(run: dict, name: str) -> tuple[dict, dict]:
    by = run["workloads"].get(name) or {}
    app, base = by.get("chatapp") or {}, by.get("baseline") or {}
    return ({} if "failed" in app else app), ({} if "failed" in base else base)


def _div(a, b):
    return a / b if a and b else None


def _by(value, bound, unit: str, low: bool = False) -> str:
    """How far VALUE is past BOUND, as an amount and a share of the bound."""
    if value is None:
        return ""
    over = bound - value if low else value - bound
    if over <= 0:
        return ""
    return f"by {over:.2f}{unit} ({over / bound:.0%})"


def _x(v) -> str:
    return "–" if v is None else f"{v:.2f}×"


def _us(v) -> str:
    return "–" if v is None else f"{v:.2f} µs"


def _ms(v) -> str:
    return "–" if v is None else f"{v:.2f} ms"


def _core(v) -> str:
    return "–" if v is None else f"{v:.3f} core"


def _kb(v) -> str:
    return "–" if v is None else f"{v:.1f} KB"


def targets_table(run: dict) -> list[str]:
    rows = ["| workload | measure | target | this run | |", "|---|---|---|--:|---|"]
    checks = []
    for name, check in TARGETS_CHECKS.items():
        if name in run["workloads"]:
            checks += check(run)
    if run.get("memcheck"):
        checks += _memcheck(run)
    for name, what, target, value, met, by in checks:
        verdict = "met" if met else f"**missed** {by}".strip()
        rows.append(f"| {name} | {what} | {target} | {value} | {verdict} |")
    return rows


def memcheck_lines(run: dict) -> list[str]:
    res = run.get("memcheck")
    if not res:
        return ["Not measured in this run (`--memcheck`)."]
    if "failed" in res:
        return [f"Failed: {res['failed'].splitlines()[0]}"]
    series = res.get("rss_series_mb") or []
    points = ", ".join(f"{t:.0f} s: {mb} MB" for t, mb in series[:: max(1, len(series) // 10)])
    growth = res.get("rss_growth_after_1min")
    return [
        f"W3 on chatapp with a {res['spec']['duration']:.0f} s send phase: "
        f"{_fmt(res.get('delivered_per_s'), 0)} frames/s, p99 "
        f"{_ms(_get(res, 'latency_ms', 'p99'))}, lost {_fmt(res.get('lost'))}, errors "
        f"{_errors(res)}. Server RSS after the first minute "
        f"{_fmt(res.get('rss_after_1min_mb'))} MB, at the end {_fmt(res.get('rss_end_mb'))} MB"
        + (f" ({growth:+.1%})." if growth is not None else "."),
        "",
        f"RSS over the send phase: {points}.",
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
        f"| open files (nofile) for every process of the run | {_fmt(m.get('nofile'))} |",
    ]


def notes(run: dict) -> str:
    """How to read this run's targets, with its own figures."""
    w1, w1b = _pair(run, "W1")
    w3, w3b = _pair(run, "W3")
    w4, w4b = _pair(run, "W4")
    pinged = _kb(_get(w4, "after_heartbeat", "kb_per_socket"))
    pinged_b = _kb(_get(w4b, "after_heartbeat", "kb_per_socket"))
    long_p99 = _ms(_get(run.get("memcheck"), "latency_ms", "p99"))
    return f"""\
Reading the targets:

- **W1**: chatapp delivered {_fmt(w1.get("delivered_per_s"), 0)} frames/s with its core
  {_fmt(w1.get("server_cpu_util"), 2)} busy (server + Redis) while the generator's was
  {_fmt(w1.get("generator_cpu_util"), 2)}: the generator, whose ceiling is above, limits
  this row as much as chatapp does, so its delivered/s is a lower bound. chatapp writes the
  frames that arrive in one event-loop turn to a socket in one `write` (see the hot path
  below); the baseline ({_fmt(w1b.get("delivered_per_s"), 0)} frames/s,
  {_us(w1b.get("cpu_us_per_frame"))} per frame) writes each frame on its own.
- **W3**: chatapp's p99 {_ms(_get(w3, "latency_ms", "p99"))} is a tail over a median of
  {_ms(_get(w3, "latency_ms", "p50"))} (baseline {_ms(_get(w3b, "latency_ms", "p50"))}; a message
  goes through Redis and back), close to the 3 ms line: the same workload over 5 minutes in
  this run (below) had p99 {long_p99}. The tail is pauses of the event loop that no request
  causes, on both servers: the baseline's own p99 in this run was
  {_ms(_get(w3b, "latency_ms", "p99"))}, and it moved between 1.2 and 3.7 ms from run to run on
  this shared 2-core machine (chatapp's between 1.9 and 4.1 ms).
  In chatapp, timing frames against `gc.callbacks` showed the largest single stalls are
  full collections of Python's cyclic garbage collector (12-24 ms, one or two a minute
  with 1,000 sockets open), each delaying the ~10 messages in flight. Start-up objects are
  already frozen out of it; thresholds (5000, 20, 100) and disabling it were tried and
  gave no better p99 within the noise. The rest is the cost of each message on the one
  core the server shares with Redis: `python -m bench.profile W3` (py-spy, 30 s, joins
  included) had the server busy in 57 % of samples, of which 46 % in redis-py (store-and-
  publish, the subscriber, the joins' session, history and presence reads), 25 % writing
  to sockets and 18 % in aiohttp; with one Redis round trip per message already, what
  would cut it further is a cheaper Redis client path than redis-py's per command.
- **W4**: chatapp {_kb(w4.get("kb_per_socket"))} per idle socket against the baseline's
  {_kb(w4b.get("kb_per_socket"))}, read 3 s after the last join. Idle sockets live for hours, so
  the table below also reads RSS once every socket has been pinged and has answered: then
  chatapp {pinged} and the baseline {pinged_b} (a socket's reader keeps a little once it
  has taken a frame, on both; the baseline's aiohttp heartbeat adds the dict below).
  Both hold aiohttp's request, protocol,
  parser and WebSocket reader and writer per socket. `tracemalloc` on 2,000 → 6,000 idle
  sockets (chatapp minus baseline) showed what chatapp added, and two changes took it
  from 17.96 to 15.86 KB at 10,000 sockets (consecutive runs, figures in the commit
  messages): the socket's request keeps nothing of the handshake (no session, user record
  or parsed cookies, no middleware frame: the socket gate is a plain function, and no
  request-cache entry past aiohttp's own five, whose dict would grow), 17.96 → 16.69 KB;
  and one heartbeat task per worker instead of aiohttp's per socket, 16.69 → 15.86 KB.
  aiohttp's keeps two timer handles per socket, and its first ping sets an attribute that
  on CPython 3.11 pushes the `WebSocketResponse`'s attribute dict off the class's shared
  keys: a 1,584-byte dict per socket from then on, which is the baseline's growth after
  its heartbeat. What chatapp still adds: aiohttp's `_fix_request_current_app` frame
  (every app with middlewares, ~0.3 KB), presence records and the `Connection` (~0.3
  KB), an access logger per connection (0.1 KB). Removed earlier (from 26.5 KB): the
  per-socket sender task and queue, four middleware frames, and the security headers
  kept on the 101 response."""


HOT_PATH = """\
## Hot path: what the profile showed and what changed

Measured with `python -m bench.profile W1` (py-spy, non-blocking sampling of the server
under W1) and the full W1 in consecutive runs on this machine; the figures are in the
commit messages.

| W1, 40 s | delivered/s | server + Redis CPU per frame | p99 |
|---|--:|--:|--:|
| chatapp before | 95,354 | 10.3 µs | 123 ms |
| chatapp after | 295,210 | 3.0 µs | 51 ms |
| baseline (same sitting) | 132,605 | 7.4 µs | 91 ms |

Before, py-spy put the fan-out in per-socket machinery: a sender task per socket woken
through an `asyncio.Queue` for every frame, aiohttp's `WebSocketWriter` framing the same
bytes once per socket, and 56 % of samples in `socket.send`, one system call per frame
per socket. Now:

- one serialisation per message per worker: the store's Lua script builds the message
  JSON once; the hub frames it for the wire once and writes the same bytes to every
  socket of the room;
- no per-socket await, task or queue: the hub writes straight to each transport, and the
  frames that arrive in one event-loop turn go to a socket in one `write` (after the
  change, 64 % of the server's samples are in `socket.send` itself);
- one Redis round trip per message: the atomic store-and-publish script (id, history
  append and trim, publish); the subscriber connection delivers it back to every
  worker; hiredis parses replies (`redis[hiredis]`);
- a slow socket is closed (1013) when its unsent bytes pass `chat.send_buffer_bytes`,
  checked before each write, so it never delays the others;
- no permessage-deflate for chat sockets (one copy of each frame serves every socket);
- the presence refresh is one Lua call instead of a 550-command pipeline (it held the
  loop ~9 ms every 5 s), one heartbeat task per worker pings silent sockets (each
  jittered ±20 % so sockets that connected together do not ping together), and start-up
  objects are frozen out of the garbage collector.

uvloop (`server.uvloop: true`, extra `uvloop`) was measured in one sitting: W1
298,069 frames/s at 2.85 µs/frame with asyncio against 213,502 at 4.53 µs with
uvloop 0.23.0, W3 p99 1.93 against 2.96 ms. It does not pay here, so it stays off."""


CLUSTER = "chatapp-cluster"
CLUSTER_ROWS = ("W1", "W2", "W3", "W4", "W5", "W9")


def _ok(result) -> dict:
    return result if isinstance(result, dict) and "failed" not in result else {}


def cluster_table(run: dict) -> list[str]:
    """W1-W5 and W9: chatapp on one Redis beside chatapp on the cluster, and each vs baseline."""
    rows = [
        "| workload | delivered/s single | delivered/s cluster | cluster / single "
        "| p99 ms single | p99 ms cluster | cluster / single | delivered/s vs baseline "
        "(single, cluster) | p99 vs baseline (single, cluster) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name in CLUSTER_ROWS:
        by = run["workloads"].get(name)
        if not by or CLUSTER not in by:
            continue
        one, many, base = (_ok(by.get(k)) for k in ("chatapp", CLUSTER, "baseline"))
        if name == "W4":  # idle sockets: no frames; KB per socket instead
            cells = [
                f"{_kb(one.get('kb_per_socket'))} (idle)",
                f"{_kb(many.get('kb_per_socket'))} (idle)",
                _ratio(many.get("kb_per_socket"), one.get("kb_per_socket")),
                "",
                "",
                "",
                f"{_ratio(one.get('kb_per_socket'), base.get('kb_per_socket'))}, "
                f"{_ratio(many.get('kb_per_socket'), base.get('kb_per_socket'))} (KB/socket)",
                "",
            ]
        else:
            d1, d2, db = (r.get("delivered_per_s") for r in (one, many, base))
            p1, p2, pb = (_get(r, "latency_ms", "p99") for r in (one, many, base))
            cells = [
                _fmt(d1, 0),
                _fmt(d2, 0),
                _ratio(d2, d1),
                _fmt(p1, 2),
                _fmt(p2, 2),
                _ratio(p2, p1),
                f"{_ratio(d1, db)}, {_ratio(d2, db)}" if db else "–",
                f"{_ratio(p1, pb)}, {_ratio(p2, pb)}" if pb else "–",
            ]
        failed = [k for k in ("chatapp", CLUSTER) if "failed" in (by.get(k) or {})]
        if failed:
            cells[-1] += " failed: " + ", ".join(failed)
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows


def shards_table(run: dict) -> list[str]:
    """W9 per Redis primary (the single Redis counts as one), with the spread against the mean."""
    by = run["workloads"].get("W9") or {}
    if not by:
        return ["W9 was not run."]
    rows = [
        "| target | primary (port) | rooms | stored messages | messages vs mean | Redis CPU s "
        "| CPU vs mean | Redis µs / message | less idle: µs / message | its replica's CPU s |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    lines = []
    for kind in ("chatapp", CLUSTER):
        res = by.get(kind)
        if not res:
            continue
        if "failed" in res:
            lines.append(f"W9 on {kind} failed: {res['failed'].splitlines()[0]}")
            continue
        for prim in res.get("primaries") or []:
            cells = [
                kind,
                str(prim["port"]),
                _fmt(prim["rooms"]),
                _fmt(prim["messages"]),
                _pct(prim.get("message_vs_mean_pct")),
                _fmt(prim["cpu_s"], 3),
                _pct(prim.get("cpu_vs_mean_pct")),
                _fmt(prim.get("us_per_message"), 2),
                _fmt(prim.get("net_us_per_message"), 2),
                _fmt(prim.get("replica_cpu_s"), 3) if res.get("cluster") else "–",
            ]
            rows.append("| " + " | ".join(cells) + " |")
        for prim in res.get("primaries") or [] if res.get("cluster") else []:
            top = ", ".join(
                f"{c['command']} {_fmt(c['cpu_s'], 3)} s ({_fmt(c['calls'])} calls)"
                for c in prim.get("top_commands") or []
            )
            keys = ", ".join(prim.get("global_keys") or []) or "none"
            lines.append(
                f"Primary {prim['port']} (global keys: {keys}), its busiest commands since it "
                f"started (joins included): {top}."
            )
        lat = res.get("latency_ms") or {}
        spread = res.get("spread") or {}
        line = (
            f"**{kind}**: {_fmt(res.get('stored'))} messages stored "
            f"({_fmt(res.get('stored_per_s'))}/s), {_fmt(res.get('delivered'))} delivered, "
            f"lost {_fmt(res.get('lost'))}, p50 / p99 {_fmt(lat.get('p50'), 2)} / "
            f"{_fmt(lat.get('p99'), 2)} ms; worker CPU {_fmt(res.get('worker_cpu_share'), 3)} "
            f"core ({_fmt(res.get('worker_us_per_message'), 1)} µs per message, "
            f"{_fmt(res.get('worker_net_us_per_message'), 1)} less idle), Redis CPU "
            f"{_fmt(res.get('redis_cpu_share'), 3)} core in all "
            f"({_fmt(res.get('redis_us_per_message'), 1)} µs per message, "
            f"{_fmt(res.get('redis_net_us_per_message'), 1)} less idle, replicas included)"
        )
        if res.get("cluster"):
            verdict = "met" if spread.get("even") else "**missed**"
            line += (
                f"; spread over the primaries: messages ±{_fmt(spread.get('messages_pct'))} %, "
                f"CPU ±{_fmt(spread.get('cpu_pct'))} % (goal ±"
                f"{_fmt(res.get('spread_goal_pct'), 0)} %: {verdict})"
            )
        lines.append(line + ".")
    return rows + [""] + [x for line in lines for x in (line, "")]


def _pct(v) -> str:
    return "–" if v is None else f"{v:+.1f} %"


def _capacity(c_msg: float, c_list: float, n: int) -> float:
    """Messages/s N primaries carry, each on a core: the busiest one (the listing's) is full."""
    return 1e6 / (c_msg / n + c_list)


def shard_model(run: dict) -> str:
    """What this machine can and cannot show, and the model for N shards, with W9's figures."""
    res = _ok((run["workloads"].get("W9") or {}).get(CLUSTER))
    one = _ok((run["workloads"].get("W9") or {}).get("chatapp"))
    prims = [p for p in res.get("primaries") or [] if p.get("us_per_message")]
    hot = next((p for p in prims if "rooms listing" in (p.get("global_keys") or [])), None)
    rest = [p for p in prims if p is not hot] or prims
    c_msg = sum(p["us_per_message"] for p in rest) / len(rest) if rest else None
    total = res.get("stored")
    c_list = 0.0
    if hot and c_msg and total:
        # What the listing's primary spent beyond its own rooms' messages, per message of all.
        c_list = max(0.0, (hot["cpu_s"] - c_msg * hot["messages"] / 1e6) / total * 1e6)
    worker = res.get("worker_us_per_message")
    if c_msg:
        figures = (
            f"In this run a primary without the global keys spent {_fmt(c_msg, 1)} µs of CPU "
            f"per stored message of its rooms (the single Redis "
            f"{_fmt(one.get('redis_us_per_message'), 1)} µs per message, all keys: six "
            "servers taking turns on one core each do less per wake-up, so c here is an upper "
            "bound for a primary on a core of its own); the "
            f"primary holding `chatapp:rooms` spent {_fmt(c_list, 1)} µs more per message of "
            "any room: the room listing's activity times (`chatapp:rooms`, one key for every "
            "room) are written once a second per worker, one ZADD for all the rooms that had "
            "a message (`chatapp/chat/listing.py`); when every message of a quiet room wrote "
            "its own ZADD, l was 29-37 µs and that primary 31-34 % busier than the others. "
            "With c = "
            f"{_fmt(c_msg, 1)} µs and l = {_fmt(c_list, 1)} µs, N primaries carry about "
            "1 / (c / N + l) messages/s of such rooms: "
            f"{_fmt(_capacity(c_msg, c_list, 1), 0)} for N = 1, "
            f"{_fmt(_capacity(c_msg, c_list, 3), 0)} for 3, "
            f"{_fmt(_capacity(c_msg, c_list, 10), 0)} for 10, never more than "
            f"{_fmt(1e6 / c_list if c_list else None, 0)} (1 / l) however many shards; "
            "without that key (l = 0) it would be N × "
            f"{_fmt(1e6 / c_msg, 0)}. A worker spent {_fmt(worker, 1)} µs per message "
            f"here, about {_fmt(1e6 / worker if worker else None, 0)} messages/s per worker "
            "core, so on this shape workers, not Redis, are what to add first."
        )
    else:
        figures = "W9 did not run on the cluster in this run, so there are no figures for it."
    return f"""\
What this 2-core machine can and cannot show: every Redis server (the single one, or all
six of the cluster: three primaries and their replicas) and the chatapp worker are pinned
to one core (CPU 0), the generator to the other. So the cluster cannot be faster here: its
six servers take turns on the core the worker needs, and a message costs a little more
in all (cluster bus, replication to a replica, a sharded subscriber connection per
primary). The ratios above are what the
cluster costs on one core, not what it gains, and one worker on a shared core cannot load
Redis to its limit: W9 is Redis-bound only in that most of what it costs Redis is per room
and per message. What the run does show is what decides how a cluster scales: the Redis
CPU each stored message costs on the primary that owns its room, and whether that work
spreads evenly over the primaries (W9's 2,000 rooms, each with its own hash tag
`{{room:<name>}}`).

The model for N shards: a room lives on one primary, and a primary's work is its rooms'
messages, so with an even spread Redis carries about N × (1 / Redis CPU per message per
primary) messages/s, each primary on a core of its own, less what a key shared by every
room costs the one primary that holds it. Workers scale apart from Redis: add workers
(each holds one sharded subscriber connection to every primary whose rooms its sockets
are in) until the primaries are the limit. {figures} Replicas take CPU too (the
replication stream, shown per shard) but on cores of their own, and are not on a
message's path unless `redis.wait_replicas` is set."""


def w9_shape(run: dict) -> str:
    by = run["workloads"].get("W9") or {}
    spec = next((r["spec"] for r in by.values() if isinstance(r, dict) and "spec" in r), None)
    if not spec:
        return ""
    rooms = spec["rooms"]
    first = f"{spec['room_prefix']}{1:0{spec['room_digits']}d}"
    last = f"{spec['room_prefix']}{rooms:0{spec['room_digits']}d}"
    return (
        f"{_fmt(rooms)} rooms (`{first}`..`{last}`) × {spec['sockets_per_room']} sockets, one "
        f"sender per room at {spec['rate']:g} message{'' if spec['rate'] == 1 else 's'}/s "
        f"({_fmt(rooms * spec['rate'], 0)} "
        f"messages/s in all) for {spec['duration']:g} s."
    )


def cluster_lines(run: dict) -> list[str]:
    if not any(CLUSTER in by for by in run["workloads"].values()):
        return []
    return [
        "## Redis Cluster",
        "",
        "`python -m bench --redis cluster`: each chatapp workload ran on a fresh single "
        "redis-server (`chatapp`) and on a fresh local Redis Cluster of 3 primaries and 3 "
        "replicas (`chatapp-cluster`, `CHATAPP_REDIS_URL=redis+cluster://...` naming all six, "
        "`bench/cluster.py`), in the same run; all Redis servers pinned to CPU 0 with the "
        "worker, no persistence. Redis CPU is the sum over all six servers; per primary "
        "below. Ratios: cluster / single, and each against the baseline where it ran.",
        "",
        *cluster_table(run),
        "",
        "### W9: the Redis-bound workload per primary",
        "",
        f"{w9_shape(run)} A room's stored messages are its id counter, read on the primary that "
        "owns the room's slot; a primary's CPU is its utime + stime over the send phase "
        "(presence refreshes of its rooms included). Versus mean: the primary's share "
        "against the mean of the three (goal ±15 %). Less idle: before sending, the run "
        "measures every process for a few seconds with all sockets open and nothing sent "
        "(presence refreshes, heartbeats, cluster bus); that CPU per second, times the send "
        "phase, is taken off, leaving what the messages themselves cost.",
        "",
        *shards_table(run),
        shard_model(run),
        "",
    ]


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
        f"`{run['command']}` — started {run['started']}, "
        + _mode(run)
        + " This page was rendered from its results by `python -m bench.report`.",
        "",
        *machine_lines(run),
        "",
        "## Generator ceiling",
        "",
        *ceiling_lines(run),
        "",
        "## Targets",
        "",
        "The issue's targets, each a ratio against the baseline measured in this run "
        "or an absolute bound.",
        "",
        *targets_table(run),
        "",
        notes(run),
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
        "## W6: sidebars",
        "",
        "Each of the 200 people has 20 conversations in their list and one socket on a "
        "room of their own; 10 of the conversations get 5 messages a second each, every "
        "5th mentioning one of the people. Latency is from the sender's send to the frame "
        "reaching the person's socket (chatapp only: the baseline has no conversations).",
        "",
        *sidebar_table(run),
        "",
        "## W1x: message actions beside W1",
        "",
        "The W1 shape (1 room, 200 sockets, 5 senders flat out, window 10) where 10 % of "
        "the frames sent are 👍 reactions on recent messages and 10 % edits of the sender's "
        "own recent messages. Every socket gets each message as a `message` frame and each "
        "action as an `update`; both count as delivered, and both are timed from their own "
        "send (chatapp only: the baseline has no message actions).",
        "",
        *actions_table(run),
        "",
        "## W7: a day in a team's life",
        "",
        *teamday_lines(run),
        "## W8: search and scroll-back",
        "",
        "One person, one request at a time, against histories written straight into the "
        "server's Redis (`bench/search.py`). Search scans every held message of every "
        "conversation the person can read (no index: Debian's redis-server 7.0 has no "
        "Query Engine); the latency is the HTTP round trip.",
        "",
        *search_table(run),
        "",
        "## Memory over 5 minutes",
        "",
        *memcheck_lines(run),
        "",
        *cluster_lines(run),
        HOT_PATH,
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


def main(argv: list[str] | None = None) -> None:
    """Re-render docs/ from a results file (default bench/results/latest.json)."""
    import json
    import sys

    args = sys.argv[1:] if argv is None else argv
    repo = Path(__file__).resolve().parent.parent
    path = Path(args[0]) if args else repo / "bench" / "results" / "latest.json"
    md, png = write(json.loads(path.read_text()), repo / "docs")
    print(f"report: {md} and {png}")


if __name__ == "__main__":
    main()
