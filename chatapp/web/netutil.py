"""Request facts that need care: the client's address and safe redirect targets."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Sequence[str]) -> list[Network]:
    return [ipaddress.ip_network(v, strict=False) for v in values]


def _in(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_address(request: web.Request, trusted_proxies: Sequence[Network]) -> str:
    """The client's IP: `X-Forwarded-For` is believed only from trusted proxies.

    Walks the header from the right (the hop nearest us) and returns the first
    address that is not itself a trusted proxy.
    """
    remote = request.remote or "unknown"
    if not trusted_proxies or not _in(remote, trusted_proxies):
        return remote
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _in(hop, trusted_proxies):
            return hop
    return hops[0] if hops else remote


def is_loopback_or_in(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.is_loopback or any(ip in net for net in networks)


def safe_next(target: str | None, default: str = "/chat/") -> str:
    """`target` if it is a path on this site, else `default` (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    if any(ch in target for ch in "\\\r\n\t") or any(ord(ch) < 0x20 for ch in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target
