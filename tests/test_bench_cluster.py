"""`python -m bench --redis cluster`: W9, the Redis-bound workload, in --quick mode
against chatapp on a local Redis Cluster, as the runner starts it (`bench.procs`:
six pinned redis-servers, one chatapp worker, the generator in its own process).
It must report each of the three primaries, lose nothing, and count every stored
message on exactly one primary. No speed is asserted.
"""

import pytest

from bench.procs import CLUSTER_TARGET, run_generator, running

# Unpinned, on reserved ports: bench.procs as a test beside other tests runs it.
from .test_bench_loadgen import as_a_test  # noqa: F401

pytestmark = [pytest.mark.cluster, pytest.mark.multiprocess]


def test_w9_reports_every_primary_and_counts_each_stored_message_once(tmp_path):
    with running(CLUSTER_TARGET, tmp_path) as target:
        assert len(target.redis_pids) == 6  # primaries and replicas, measured as a whole
        result = run_generator("W9", target, tmp_path / "W9.json", quick=True)
    assert "failed" not in result, result
    assert result["cluster"] is True
    assert result["connected"] == result["sockets"] == 400
    assert result["lost"] == result["gaps"] == result["duplicates"] == 0
    assert result["errors"] == {}
    primaries = result["primaries"]
    assert len(primaries) == 3
    assert len({p["port"] for p in primaries}) == 3
    assert sum(p["rooms"] for p in primaries) == 200
    # Each stored message is counted on the one primary owning its room's slot.
    assert sum(p["messages"] for p in primaries) == result["stored"] == result["sent"] > 0
    for prim in primaries:
        assert prim["rooms"] > 0 and prim["messages"] > 0
        assert prim["cpu_s"] >= 0 and prim["replica_cpu_s"] >= 0
        assert prim["message_vs_mean_pct"] is not None
    assert sum(p["message_vs_mean_pct"] for p in primaries) == pytest.approx(0, abs=0.2)
    assert set(result["spread"]) == {"messages_pct", "cpu_pct", "even"}
    assert result["redis_cpu_s"] >= sum(p["cpu_s"] for p in primaries) - 0.01
