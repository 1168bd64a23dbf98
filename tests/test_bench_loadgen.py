"""The bench load generator counts deliveries correctly against the baseline server.

Both run as subprocesses from the repository root, the way `python -m bench`
runs them, so the test needs no import path for `bench/`. No speed is asserted.
"""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

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
