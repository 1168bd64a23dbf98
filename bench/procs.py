"""Start and stop the processes of a benchmark run: redis-server, a server, the generator."""

import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SERVER_CPU = "0"
GENERATOR_CPU = "1"
CHATAPP_ENV = {
    "CHATAPP_ACCOUNTS_BCRYPT_ROUNDS": "4",
    "CHATAPP_CHAT_RATE_LIMIT_MESSAGES": "1000000",
    # The generator shares a few users' cookies among thousands of sockets.
    "CHATAPP_CHAT_MAX_SOCKETS_PER_USER": "1000000",
    "CHATAPP_CHAT_ROOMS_PER_HOUR": "1000000",
    "CHATAPP_ACCOUNTS_REGISTRATIONS_PER_ADDRESS": "1000000",
    "CHATAPP_DEMO_SEED_USERS": "false",
    "CHATAPP_SESSION_SECRET_KEY": "bench-secret",
}
TARGETS = ("baseline", "chatapp")
# chatapp on a local 3-primary + 3-replica Redis Cluster (`python -m bench --redis cluster`).
CLUSTER_TARGET = "chatapp-cluster"


class StartError(RuntimeError):
    """A process did not come up; the message carries its log's tail."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(cpu: str | None, argv: list[str]) -> list[str]:
    """Prefix ARGV with taskset (which execs, so the PID stays the program's)."""
    if cpu is None or not shutil.which("taskset") or (os.cpu_count() or 1) < 2:
        return argv
    return ["taskset", "-c", cpu, *argv]


def _max_nofile() -> None:
    # Runs in the child before exec: W4 holds 10,000 sockets open.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Proc:
    """A child process whose output goes to a log file."""

    def __init__(self, argv: list[str], log: Path, env: dict | None = None) -> None:
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as out:
            self.popen = subprocess.Popen(
                argv,
                cwd=REPO,
                # The bench alone configures chatapp: a CHATAPP_ variable of the
                # caller's (CI sets CHATAPP_REQUIRE_BROWSER) is no config key.
                env={
                    **{k: v for k, v in os.environ.items() if not k.startswith("CHATAPP_")},
                    **(env or {}),
                },
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_max_nofile,
            )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 10) -> None:
        if self.alive():
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def _wait(proc: Proc, ready, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise StartError(f"{what} exited with {proc.popen.returncode}:\n{proc.tail()}")
        with contextlib.suppress(OSError, urllib.error.URLError):
            if ready():
                return
        time.sleep(0.05)
    proc.stop()
    raise StartError(f"{what} not ready after {timeout:.0f} s:\n{proc.tail()}")


def _redis_pong(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")


def _healthy(url: str) -> bool:
    try:
        # URL built here from 127.0.0.1 and a port, never from input.
        with urllib.request.urlopen(url + "/healthz", timeout=2) as resp:  # noqa: S310
            return resp.status == 200
    except urllib.error.HTTPError:
        return False


def start_redis(log_dir: Path) -> tuple[Proc, int]:
    """A private redis-server on a free port, no persistence, pinned with the server."""
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
    argv += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
    proc = Proc(pinned(SERVER_CPU, argv), log_dir / f"redis-{port}.log")
    _wait(proc, lambda: _redis_pong(port), "redis-server", 10)
    return proc, port


def start_server(kind: str, log_dir: Path, redis_url: str | None = None) -> tuple[Proc, str]:
    """Start the chatapp, baseline or ceiling server; return it once it answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    host = ["--host", "127.0.0.1", "--port", str(port)]
    env = None
    if kind == "chatapp":
        argv = [sys.executable, "-m", "chatapp", "--config", "config.yaml", *host]
        env = {**CHATAPP_ENV, "CHATAPP_REDIS_URL": redis_url}
    elif kind == "baseline":
        argv = [sys.executable, "-m", "bench.baseline_server", *host]
    elif kind == "ceiling":
        argv = [sys.executable, "-m", "bench.ceiling_server", *host]
    else:
        raise ValueError(kind)
    proc = Proc(pinned(SERVER_CPU, argv), log_dir / f"{kind}-{port}.log", env)
    if kind == "ceiling":  # no HTTP routes at all: a TCP accept is enough
        _wait(proc, lambda: socket.create_connection(("127.0.0.1", port), 1).close() is None,
              kind, 30)  # fmt: skip
    else:
        _wait(proc, lambda: _healthy(url), kind, 30)
    return proc, url


@dataclass
class Running:
    url: str
    server_pids: list[int]
    redis_pids: list[int] = field(default_factory=list)
    redis_url: str | None = None


@contextlib.contextmanager
def running(kind: str, log_dir: Path) -> Iterator[Running]:
    """A fresh server (and Redis, or a Redis Cluster, for chatapp) for one workload, stopped
    afterwards."""
    from bench.cluster import LocalCluster  # bench.cluster imports this module

    procs: list[Proc] = []
    cluster: LocalCluster | None = None
    try:
        redis_pids, redis_url = [], None
        if kind == "chatapp":
            redis, redis_port = start_redis(log_dir)
            procs.append(redis)
            redis_pids = [redis.pid]
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
        elif kind == CLUSTER_TARGET:
            # Six redis-servers pinned where the single one is, no persistence. Redis's
            # default node timeout (15 s), not the tests' 1 s: on a busy shared core a node
            # that misses pings for 1 s is failed over mid-run.
            cluster = LocalCluster(cpu=SERVER_CPU, node_timeout_ms=15000, log_dir=log_dir).start()
            redis_pids, redis_url = cluster.pids, cluster.url
        server_kind = "chatapp" if kind == CLUSTER_TARGET else kind
        server, url = start_server(server_kind, log_dir, redis_url)
        procs.append(server)
        yield Running(url, [server.pid], redis_pids, redis_url)
    finally:
        for proc in reversed(procs):
            proc.stop()
        if cluster is not None:
            cluster.cleanup()


def run_generator(
    workload: str,
    target: Running,
    out: Path,
    *,
    quick: bool,
    auth: bool = True,
    duration: float | None = None,
) -> dict:
    """Run one workload in its own pinned generator process; return its JSON result."""
    argv = [sys.executable, "-m", "bench.workloads", workload, "--url", target.url]
    argv += ["--out", str(out), "--server-pids", ",".join(map(str, target.server_pids))]
    if target.redis_pids:
        argv += ["--redis-pids", ",".join(map(str, target.redis_pids))]
    if target.redis_url:
        argv += ["--redis-url", target.redis_url]
    if quick:
        argv.append("--quick")
    if not auth:
        argv.append("--no-auth")
    if duration is not None:
        argv += ["--duration", str(duration)]
    out.unlink(missing_ok=True)
    log = out.with_suffix(".log")
    proc = Proc(pinned(GENERATOR_CPU, argv), log)
    try:
        proc.popen.wait(timeout=600)
    except subprocess.TimeoutExpired:
        proc.stop()
        return {"workload": workload, "failed": "generator timed out after 600 s"}
    if proc.popen.returncode != 0 or not out.exists():
        return {"workload": workload, "failed": f"generator exit {proc.popen.returncode}",
                "log_tail": proc.tail()}  # fmt: skip
    return json.loads(out.read_text())
