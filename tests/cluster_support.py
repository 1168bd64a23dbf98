"""A local Redis Cluster for tests: 3 primaries + 3 replicas on free ports.

The cluster itself lives in `bench/cluster.py`, shared with the bench
(`python -m bench --redis cluster`); the tests run it unpinned.
`LocalCluster().start()` spawns and joins the six nodes and waits for
`cluster_state:ok`; `cleanup()` always kills them all. A node may be killed
(SIGKILL) and restarted by a test.
"""

from bench.cluster import NODE_TIMEOUT_MS, ClusterNode, LocalCluster, cluster_port

__all__ = ["NODE_TIMEOUT_MS", "ClusterNode", "LocalCluster", "cluster_port"]
