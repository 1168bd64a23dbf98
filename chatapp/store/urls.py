"""Redis URLs chatapp takes (no redis import here: the config checks them quickly)."""

from __future__ import annotations

CLUSTER_SCHEME = "redis+cluster"


def is_cluster_url(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEME + "://")


def cluster_nodes(url: str) -> list[tuple[str, int]]:
    """The host:port pairs of a `redis+cluster://` URL (port 6379 when left out)."""
    netloc = url.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]
    nodes = []
    for part in netloc.split(","):
        host, _, port = part.strip().rpartition(":") if ":" in part else (part, "", "6379")
        nodes.append((host.strip("[]") or "127.0.0.1", int(port or 6379)))
    return nodes
