"""Test helpers: private redis-server processes, app processes, form helpers."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import inspect
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import redis
from yarl import URL

if TYPE_CHECKING:
    from .client import Client

ROOT = Path(__file__).resolve().parent.parent


# Ports for the servers tests start. A port asked of the kernel (bind to 0, close,
# hand the number to a child) is free only for a moment: the kernel may give the
# same number to the next bind to 0 or to an outgoing connection of another
# process (another xdist worker, another run) before the child binds it. So the
# numbers come from below the kernel's ephemeral range, where it hands out none,
# and each is reserved for the life of this process by a lock on byte `port` of
# one lock file (fcntl record locks: across processes, dropped when a process
# ends). A cluster node's bus port (port + 10000) stays below the range too.
PORTS = range(12000, 22000)
_LOCKS = Path(tempfile.gettempdir()) / "chatapp-test-ports.lock"
_lock_fd: int | None = None
_given: set[int] = set()


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port no other process holds now and no other test process will be given."""
    global _lock_fd
    if _ephemeral_start() < PORTS.stop + 10000:  # no room below the ephemeral range
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    if _lock_fd is None:
        _lock_fd = os.open(_LOCKS, os.O_RDWR | os.O_CREAT, 0o666)
    start = random.randrange(len(PORTS))
    for i in range(len(PORTS)):
        port = PORTS[(start + i) % len(PORTS)]
        if port in _given:
            continue
        try:
            fcntl.lockf(_lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port)
        except OSError:
            continue  # another test process has it
        _given.add(port)
        if _bindable(port):
            return port
    raise AssertionError(f"no free port left in {PORTS}")


class WaitTimeout(AssertionError):
    """A condition polled with `until`/`until_sync` did not come true in time."""


def _timed_out(what: str, timeout: float, last: object) -> WaitTimeout:
    return WaitTimeout(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")


def until_sync(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll `predicate()` until it returns a truthy value, and return that value.

    After `timeout` seconds raise WaitTimeout naming `what` and the last value seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout, value)
        time.sleep(interval)


async def until(predicate, timeout: float, what: str, interval: float = 0.05):
    """The async twin of `until_sync`: `predicate` may be sync or return an awaitable."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise _timed_out(what, timeout, value)
        await asyncio.sleep(interval)


class RedisServer:
    """A private redis-server on a free port, which a test may kill and restart."""

    def __init__(
        self, port: int | None = None, appendonly: bool = False, appendfsync: str = "always"
    ) -> None:
        self.port = port or free_port()
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.dir = tempfile.mkdtemp(prefix="chatapp-redis-")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            self.dir,
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ]
        if self.appendonly:
            args += ["--appendfsync", self.appendfsync]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)

        def answers():
            try:
                return client.ping()
            except redis.ConnectionError:
                return False

        until_sync(answers, 10, f"redis-server on {self.port}")
        client.close()
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)

    def kill(self) -> None:
        """SIGKILL: the way a crash or an OOM kill looks."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def app_env(redis_url: str, **extra: str) -> dict[str, str]:
    """Environment for an app process under test: fast bcrypt, a fixed secret."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATAPP_")}
    env.update(
        CHATAPP_REDIS_URL=redis_url,
        CHATAPP_ACCOUNTS_BCRYPT_ROUNDS="4",
        CHATAPP_SESSION_SECRET_KEY="test-secret",
        CHATAPP_DEMO_SEED_USERS="false",
        # Every test person registers from 127.0.0.1.
        CHATAPP_ACCOUNTS_REGISTRATIONS_PER_ADDRESS="100000",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str], input: str | None = None, timeout: float = 30):
    """Run `python -m chatapp ARGS` and return the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "chatapp", *args],
        cwd=ROOT,
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class AppProcess:
    """`python -m chatapp` serving on a free port, for tests across processes."""

    def __init__(self, redis_url: str, port: int | None = None, **env: str) -> None:
        self.port = port or free_port()
        self.env = app_env(redis_url, **env)
        self.proc: subprocess.Popen | None = None
        self.log_path = Path(tempfile.mkstemp(prefix="chatapp-app-", suffix=".log")[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "chatapp",
            "--config",
            str(ROOT / "config.yaml"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]

    def launch(self) -> AppProcess:
        """Start the process without waiting for it to listen (`start_apps` starts several)."""
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(),
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    def start(self, timeout: float = 15) -> AppProcess:
        self.launch()
        return self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 15) -> AppProcess:
        until_sync(self._ready, timeout, f"app on port {self.port}", interval=0.05)
        return self

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"app exited with {self.proc.returncode}:\n{self.log()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 15) -> int:
        return self.proc.wait(timeout)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_kb(self) -> int:
        """Resident memory of the process (VmRSS in /proc/<pid>/status), in KiB."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "_log", None):
            self._log.close()


def start_apps(*apps: AppProcess, timeout: float = 20) -> tuple[AppProcess, ...]:
    """Start several app processes at once (each takes a second or two to import)."""
    for app in apps:
        app.launch()
    for app in apps:
        app.wait_ready(timeout)
    return apps


@contextlib.contextmanager
def app_pair(redis_url: str, **env: str) -> Iterator[tuple[AppProcess, AppProcess]]:
    """Two app processes on one Redis, started together, always both stopped."""
    first, second = AppProcess(redis_url, **env), AppProcess(redis_url, **env)
    try:
        yield start_apps(first, second)
    finally:
        first.stop()
        second.stop()


class RawSocket:
    """A WebSocket opened by hand with a tiny receive buffer, that never reads.

    aiohttp's client keeps reading into its own buffer; this one lets the
    kernel buffers fill so the server sees a peer that does not keep up.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    async def open(cls, client: Client, room: str) -> RawSocket:
        """Open `room`'s chat socket with `client`'s cookie and its page's Origin."""
        url = URL(client.base)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # Non-blocking: the server may run on this very event loop (aiohttp_server).
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        request = (
            f"GET /ws/chat/{room}/ HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nOrigin: {client.base}\r\n"
            f"Cookie: {client.cookie_header()}\r\n\r\n"
        )
        head = b""
        try:
            await loop.sock_connect(sock, (url.host, url.port))
            await loop.sock_sendall(sock, request.encode())
            while b"\r\n\r\n" not in head:
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 1), 10)
                if not chunk:
                    raise AssertionError("server closed during handshake")
                head += chunk
        except BaseException:
            sock.close()
            raise
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(sock)

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    async def closed_by_server(self, timeout: float) -> bool:
        """Read (and drop) what comes; True if the server ends the connection in time."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                while await loop.sock_recv(self.sock, 65536):
                    pass
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.sock.close()


class GunicornProcess(AppProcess):
    """`gunicorn 'chatapp:create_app()'` with aiohttp's worker, N workers, on a free port."""

    def __init__(self, redis_url: str, workers: int = 2, **env: str) -> None:
        super().__init__(redis_url, **env)
        self.workers = workers
        self.env.setdefault("CHATAPP_CONFIG", str(ROOT / "config.yaml"))

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "chatapp:create_app()",
            "--worker-class",
            "aiohttp.GunicornWebWorker",
            "-w",
            str(self.workers),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--graceful-timeout",
            "10",
            "--no-control-socket",
        ]

    def worker_pids(self) -> list[int]:
        """The live worker processes (children of the gunicorn master)."""
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return [int(pid) for pid in path.read_text().split()]
        except FileNotFoundError:
            return []


def socket_owner(server_port: int, client_port: int, pids: list[int]) -> int | None:
    """Which of `pids` holds the server end of the TCP connection from `client_port`.

    Read from /proc: the connection's inode in /proc/net/tcp, then the process
    whose file descriptors include that socket.
    """
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if local_port == server_port and remote_port == client_port:
                inode = fields[9]
    if inode is None:
        return None
    wanted = f"socket:[{inode}]"
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            for fd in fd_dir.iterdir():
                try:
                    if os.readlink(fd) == wanted:
                        return pid
                except OSError:
                    continue
        except FileNotFoundError:
            continue
    return None
