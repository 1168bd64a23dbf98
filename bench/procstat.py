"""Read CPU time and memory of other processes from /proc (Linux only)."""

import asyncio
import os
import platform
import resource
import subprocess
import sys
from importlib import metadata

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """Return utime + stime of one process, in seconds (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return 0.0
    # The command name may hold spaces; the fields start after its ')'.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def status_kb(pid: int, key: str) -> int:
    """Return one kB field of /proc/PID/status (VmRSS, VmHWM), 0 if unknown."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak(pid: int) -> None:
    """Reset VmHWM so the next peak covers only what follows (needs ptrace rights)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def raise_nofile() -> int:
    """Raise this process's open-file limit to the hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Probe:
    """Watch the server (and Redis) processes during one workload."""

    def __init__(self, server_pids: list[int], redis_pids: list[int]) -> None:
        self.server_pids = server_pids
        self.redis_pids = redis_pids
        self.peak_rss_kb = 0
        self.series: list[tuple[float, int]] = []  # (monotonic time, RSS kB), ~1 per second
        self._task: asyncio.Task | None = None

    def cpu(self) -> tuple[float, float]:
        """Return (server CPU s, Redis CPU s) consumed so far."""
        return (
            sum(cpu_seconds(p) for p in self.server_pids),
            sum(cpu_seconds(p) for p in self.redis_pids),
        )

    def redis_cpu_by_pid(self) -> dict[int, float]:
        """CPU s consumed so far by each Redis process (a cluster's nodes one by one)."""
        return {p: cpu_seconds(p) for p in self.redis_pids}

    def rss_kb(self) -> int:
        return sum(status_kb(p, "VmRSS") for p in self.server_pids)

    def hwm_kb(self) -> int:
        return sum(status_kb(p, "VmHWM") for p in self.server_pids)

    def start_sampling(self, every: float = 0.1) -> None:
        # VmHWM is per process and covers start-up too; sampling the sum of
        # VmRSS gives the peak of this workload across all server processes.
        for pid in self.server_pids:
            reset_peak(pid)
        self._task = asyncio.get_running_loop().create_task(self._sample(every))

    async def _sample(self, every: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            rss = self.rss_kb()
            self.peak_rss_kb = max(self.peak_rss_kb, rss)
            now = loop.time()
            if not self.series or now - self.series[-1][0] >= 1.0:
                self.series.append((now, rss))
            await asyncio.sleep(every)

    async def stop_sampling(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.peak_rss_kb = max(self.peak_rss_kb, self.rss_kb())


def machine_facts() -> dict:
    """Describe the machine and software a result was measured on."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        out = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, timeout=5
        ).stdout
        redis_version = out.split("v=")[1].split()[0] if "v=" in out else out.strip()
    except (OSError, subprocess.SubprocessError):
        redis_version = "unknown"

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "absent"

    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "aiohttp": version("aiohttp"),
        "redis_py": version("redis"),
        "hiredis": version("hiredis"),
        "redis_server": redis_version,
        "mem_total_mb": os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20,
    }
