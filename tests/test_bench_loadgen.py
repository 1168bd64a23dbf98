"""The bench load generator counts deliveries correctly against the baseline server,
and the message-action workloads (W1x, W7) run in --quick mode against chatapp.

The servers and the generator run as subprocesses from the repository root, the
way `python -m bench` runs them; the chatapp tests start them through
`bench.procs`, as the runner does (a private redis-server and one chatapp
worker). No speed is asserted.
"""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bench import procs
from bench.procs import run_generator, running

from . import support
from .support import free_port, until_sync

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def baseline_url():
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.baseline_server", "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def listening() -> bool:
        if proc.poll() is not None:
            pytest.fail("baseline server exited")
        try:  # run_app listens once the app is set up
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    try:
        until_sync(listening, 10, "the baseline server to listen")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def run_loadgen(url: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.loadgen", "--url", url, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(out.stdout)


def test_loadgen_counts_every_frame_sent_to_every_socket(baseline_url):
    result = run_loadgen(
        baseline_url,
        *("--sockets-per-room", "5", "--senders-per-room", "1", "--messages", "50"),
        *("--rate", "100", "--duration", "5", "--users", "2"),
    )
    assert result["connected"] == 5
    assert result["sent"] == 50
    assert result["delivered"] == 5 * 50
    assert result["lost"] == 0
    assert result["gaps"] == 0
    assert result["duplicates"] == 0
    assert result["errors"] == {}
    latency = result["latency_ms"]
    assert latency["count"] == 5 * 50
    assert 0 <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]


def test_loadgen_counts_a_refused_handshake_as_an_error(baseline_url):
    # A room name starting with a digit breaks the rule: the server answers 404.
    result = run_loadgen(baseline_url, "--room-prefix", "9bad", "--sockets-per-room", "3")
    assert result["connected"] == 0
    assert result["errors"]["connect:HTTP 404"] == 3
    assert result["delivered"] == 0


@pytest.fixture(autouse=True)
def as_a_test(monkeypatch):
    """bench.procs as a test runs it: beside other tests (pytest-xdist workers).

    The bench pins the server and Redis to CPU 0 and the generator to CPU 1 so a
    measurement is not disturbed; here nothing is measured, and pinned beside
    other tests the server would get a share of one core however idle the other
    one is. Its ports come from tests.support.free_port, reserved against the
    other test processes, not from a bind to port 0 that another worker's
    process may take before the server binds it.
    """
    monkeypatch.setattr(procs, "SERVER_CPU", None)
    monkeypatch.setattr(procs, "GENERATOR_CPU", None)
    monkeypatch.setattr(procs, "free_port", support.free_port)


def run_quick(workload: str, log_dir: Path, duration: float | None = None) -> dict:
    """WORKLOAD in --quick mode on a fresh chatapp worker and Redis, as `python -m bench` does
    (`duration`: a shorter send phase, enough for what a test checks)."""
    with running("chatapp", log_dir) as target:
        result = run_generator(
            workload, target, log_dir / f"{workload}.json", quick=True, duration=duration
        )
    assert "failed" not in result, result
    return result


def percentiles(latency: dict) -> None:
    assert latency["count"] > 0
    assert 0 <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]


@pytest.mark.multiprocess
def test_w1x_delivers_every_message_and_update_once(tmp_path):
    result = run_quick("W1x", tmp_path)
    assert result["workload"] == "W1x"
    assert result["connected"] == result["sockets"] == 200
    kinds = result["frames_sent_by_type"]
    assert kinds["message"] > 0 and kinds["react"] > 0 and kinds["edit"] > 0
    assert 0.1 <= result["action_share"] <= 0.3
    # Every socket got each message and each action's update, once.
    assert result["delivered"] == result["expected"] + result["updates_expected"]
    assert result["update_frames"] == result["updates_expected"] > 0
    assert result["lost"] == result["updates_lost"] == 0
    assert result["duplicates"] == result["update_duplicates"] == result["gaps"] == 0
    assert result["errors"] == {}
    percentiles(result["latency_ms"])
    percentiles(result["update_latency_ms"])
    assert result["delivered_per_s"] > 0


@pytest.mark.multiprocess
def test_w7_resumes_miss_nothing_and_repeat_nothing(tmp_path):
    result = run_quick("W7", tmp_path, duration=8.0)  # about 25 resumes, 40 reactions
    assert result["workload"] == "W7"
    assert result["connected"] == result["sockets"] == 1000
    assert result["messages_sent"] > 0
    assert result["messages_stored"] == result["messages_sent"]
    assert result["reactions_sent"] > 0 and result["reads_sent"] > 0
    # Sockets did come back with ?after=&rev=, and some missed messages meanwhile.
    assert result["reconnects"] > 0 and result["resumes"] == result["reconnects"]
    frames = result["frames_received"]
    assert frames["message"] > 0 and frames["update"] > 0 and frames["typing"] > 0
    assert result["lost"] == result["duplicates"] == result["gaps"] == 0
    assert result["updates_lost"] == result["update_duplicates"] == 0
    assert result["dropped_sockets"] == 0
    assert result["errors"] == {}
    for key in ("latency_ms", "update_latency_ms", "typing_latency_ms"):
        percentiles(result[key])
    assert result["worker_cpu_share"] > 0
    assert result["redis_cpu_share"] >= 0
