"""A local Redis Cluster: 3 primaries + 3 replicas on free ports of 127.0.0.1.

Used by the bench (`python -m bench --redis cluster`, pinned with the server on
CPU 0) and by the cluster tests (`tests/cluster_support.py`, unpinned).

`LocalCluster.start()` spawns six `redis-server --cluster-enabled yes` (no
persistence) in a temp dir, joins them with `redis-cli --cluster create ...
--cluster-replicas 1` and waits until every node says `cluster_state:ok`.
`cleanup()` always kills them all. A node may be killed (SIGKILL) and
restarted by a test.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

from bench import procs
from bench.procs import StartError, pinned

NODE_TIMEOUT_MS = 1000  # the tests' fast failover; the bench uses Redis's default, 15 s


def until(predicate, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll PREDICATE until it is true; StartError naming WHAT after TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise StartError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def cluster_port(free_port: Callable[[], int] | None = None) -> int:
    """A free port whose cluster bus port (port + 10000) is a valid, free port too.

    FREE_PORT gives candidates (default `bench.procs.free_port`, looked up now)."""
    free_port = free_port or procs.free_port
    for _ in range(1000):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise StartError("no free port pair for a cluster node")


class ClusterNode:
    def __init__(
        self,
        port: int,
        root: Path,
        cpu: str | None = None,
        node_timeout_ms: int = NODE_TIMEOUT_MS,
        log: Path | None = None,
    ) -> None:
        self.port = port
        self.dir = root / str(port)
        self.dir.mkdir()
        self.cpu = cpu
        self.node_timeout_ms = node_timeout_ms
        self.log = log  # None: no log at all
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        # taskset execs redis-server, so the child's pid is the server's.
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--cluster-enabled", "yes"]
        argv += ["--cluster-config-file", str(self.dir / "nodes.conf")]
        argv += ["--cluster-node-timeout", str(self.node_timeout_ms)]
        # Redis 7 waits 5 s for more replicas before a first full sync; a replica that
        # never synced cannot be promoted.
        argv += ["--repl-diskless-sync-delay", "0"]
        argv += ["--appendonly", "no", "--save", "", "--dir", str(self.dir)]
        argv += ["--daemonize", "no", "--loglevel", "warning"]
        if self.log is not None:
            argv += ["--logfile", str(self.log)]
        self.proc = subprocess.Popen(
            pinned(self.cpu, argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def client(self, **kwargs) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=0.5, **kwargs)

    def answers(self) -> bool:
        try:
            with self.client() as c:
                return bool(c.ping())
        except redis.RedisError:
            return False

    def info(self, section: str) -> dict:
        with self.client(socket_timeout=2) as c:
            return c.info(section)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class LocalCluster:
    """PRIMARIES primaries with REPLICAS replicas each, on 127.0.0.1: pinned to CPU if
    given, each node logging to LOG_DIR/redis-cluster-<port>.log if given."""

    def __init__(
        self,
        primaries: int = 3,
        replicas: int = 1,
        cpu: str | None = None,
        node_timeout_ms: int = NODE_TIMEOUT_MS,
        log_dir: Path | None = None,
        free_port: Callable[[], int] | None = None,
    ) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="chatapp-cluster-"))
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
        count = primaries * (1 + replicas)
        self.nodes = []
        for _ in range(count):
            port = cluster_port(free_port)
            log = log_dir / f"redis-cluster-{port}.log" if log_dir is not None else None
            self.nodes.append(ClusterNode(port, self.root, cpu, node_timeout_ms, log))
        self.replicas = replicas

    @property
    def url(self) -> str:
        """The chatapp URL naming every node (any one would do)."""
        return "redis+cluster://" + ",".join(n.address for n in self.nodes)

    @property
    def pids(self) -> list[int]:
        return [n.pid for n in self.nodes if n.pid is not None]

    def start(self) -> LocalCluster:
        try:
            for node in self.nodes:
                node.start()
            for node in self.nodes:
                until(node.answers, 10, f"cluster node {node.port}")
            cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
            argv = [cli, "--cluster", "create", *(n.address for n in self.nodes)]
            argv += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
            subprocess.run(argv, check=True, capture_output=True, timeout=60)
            self.wait_ok()
        except BaseException:
            self.cleanup()
            raise
        return self

    def wait_ok(self, timeout: float = 30) -> None:
        """Until every live node says cluster_state:ok and every live replica is in
        sync with its primary (only a replica that synced can be promoted)."""

        def ok() -> bool:
            for node in self.nodes:
                if not node.alive():
                    continue
                try:
                    with node.client(socket_timeout=1) as c:
                        if b"cluster_state:ok" not in c.execute_command("CLUSTER", "INFO"):
                            return False
                        replication = c.info("replication")
                except redis.RedisError:
                    return False
                if replication.get("role") == "slave" and (
                    replication.get("master_link_status") != "up"
                    or replication.get("master_sync_in_progress")
                ):
                    return False
            return True

        until(ok, timeout, "cluster_state:ok on every node", interval=0.1)

    def topology(self) -> dict[int, dict]:
        """port -> {'role': 'master'|'slave', 'master': port or None, 'slots': [...]},
        as some live node sees it."""
        for node in self.nodes:
            if not node.alive():
                continue
            try:
                with node.client(socket_timeout=1, decode_responses=True) as c:
                    text = c.execute_command("CLUSTER", "NODES")
            except redis.RedisError:
                continue
            if isinstance(text, dict):  # redis-py may parse it already
                raise AssertionError("unexpected parsed CLUSTER NODES")
            ids, out = {}, {}
            rows = [line.split() for line in text.splitlines() if line.strip()]
            for row in rows:
                ids[row[0]] = int(row[1].split("@")[0].rsplit(":", 1)[1])
            for row in rows:
                flags = row[2].split(",")
                port = ids[row[0]]
                out[port] = {
                    "role": "master" if "master" in flags else "slave",
                    "master": ids.get(row[3]),
                    "failed": "fail" in flags or "fail?" in flags,
                    "slots": row[8:],
                }
            return out
        raise AssertionError("no cluster node answers")

    def node(self, port: int) -> ClusterNode:
        return next(n for n in self.nodes if n.port == port)

    def owner(self, slot: int) -> ClusterNode:
        """The primary serving `slot` now."""
        with self.live_node().client(socket_timeout=1) as c:
            for start, end, primary, *_ in c.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end:
                    return self.node(int(primary[1]))
        raise AssertionError(f"slot {slot} not served")

    def live_node(self) -> ClusterNode:
        return next(n for n in self.nodes if n.alive() and n.answers())

    def primaries(self) -> list[ClusterNode]:
        return [self.node(p) for p, t in self.topology().items() if t["role"] == "master"]

    def flushall(self) -> None:
        for node in self.primaries():
            if node.alive():
                with node.client() as c:
                    c.flushall()

    def cleanup(self) -> None:
        for node in self.nodes:
            node.kill()
        shutil.rmtree(self.root, ignore_errors=True)
