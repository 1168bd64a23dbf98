"""The W8 benchmark (search and scroll-back) runs against a real app and reports its
figures in the shape docs/BENCHMARKS.md reads. Run as a subprocess from the
repository root, the way `python -m bench` runs it. No speed is asserted."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.report import search_table

from .support import AppProcess

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def app_url(redis_url):
    app = AppProcess(redis_url).start()
    try:
        yield app.url
    finally:
        app.stop()


def test_w8_quick_reports_search_and_scroll_back_percentiles(app_url, redis_url):
    out = subprocess.run(
        [sys.executable, "-m", "bench.workloads", "W8", "--quick", "--url", app_url,
         "--redis-url", redis_url],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    result = json.loads(out.stdout)
    assert result["workload"] == "W8"
    assert result["errors"] == {}
    spec = result["spec"]
    assert result["messages_held"] == spec["conversations"] * spec["messages"]
    queries = result["search_by_query_ms"]
    assert set(queries) == {"rare word", "two common words", "cyrillic word", "no match"}
    for latency in [*queries.values(), result["search_ms"], result["history_ms"]]:
        assert latency["count"] > 0
        assert 0 <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert result["search_ms"]["count"] == 4 * spec["searches"]
    assert result["history_ms"]["count"] == spec["pages"]
    assert result["search_results"]["no match"] == 0
    assert result["search_results"]["two common words"] == 50  # the limit: plenty match
    assert result["search_results"]["cyrillic word"] == 50
    table = "\n".join(search_table({"workloads": {"W8": {"chatapp": result}}}))
    assert "scroll-back page" in table and "search: rare word" in table
