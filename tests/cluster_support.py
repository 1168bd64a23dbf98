"""A local Redis Cluster for tests: 3 primaries + 3 replicas on free ports.

The cluster itself lives in `bench/cluster.py`, shared with the bench
(`python -m bench --redis cluster`); the tests run it unpinned, on ports from
`tests.support.free_port` (reserved against the other test processes).
`LocalCluster().start()` spawns and joins the six nodes and waits for
`cluster_state:ok`; `cleanup()` always kills them all. A node may be killed
(SIGKILL) and restarted by a test.
"""

from bench import cluster
from bench.cluster import NODE_TIMEOUT_MS, ClusterNode

from .support import free_port

__all__ = ["NODE_TIMEOUT_MS", "ClusterNode", "LocalCluster", "cluster_port"]


def cluster_port() -> int:
    return cluster.cluster_port(free_port)


class LocalCluster(cluster.LocalCluster):
    """3 primaries with one replica each, on 127.0.0.1, unpinned."""

    def __init__(self, primaries: int = 3, replicas: int = 1) -> None:
        super().__init__(primaries, replicas, free_port=free_port)
