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


# Headers a proxy adds: a request carrying one came through a proxy, trusted or not.
FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")


def came_through_proxy(request: web.Request) -> bool:
    """Whether the request says it was forwarded (a direct client sends none of these)."""
    return any(name in request.headers for name in FORWARDING_HEADERS)


def may_read_metrics(
    request: web.Request, trusted_proxies: Sequence[Network], networks: Sequence[Network]
) -> bool:
    """Whether /metrics may answer this request.

    The client is `client_address` (the throttle's rule: `X-Forwarded-For`
    believed from trusted proxies only). Loopback counts only for a request
    that did not come through a proxy: behind a proxy on the same machine
    every visitor's socket is loopback. A forwarded request is judged by its
    client address against `networks` alone.
    """
    address = client_address(request, trusted_proxies)
    if came_through_proxy(request):
        return _in(address, networks)
    return is_loopback_or_in(address, networks)


def peer_address(request: web.Request) -> str:
    """The socket's peer address, read from the transport (nothing cached on the request)."""
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(peer, list | tuple) and peer:
        return str(peer[0])
    return str(peer) if peer else "unknown"


def request_scheme(request: web.Request, trusted_proxies: Sequence[Network]) -> str:
    """The scheme ("http", "https"): the connection's, or `X-Forwarded-Proto` from a trusted proxy.

    Of several comma-separated values the last, the one the nearest (trusted)
    proxy wrote. Reads the transport, not `request.scheme`, which is cached
    on the request (see `middlewares.socket_gate`).
    """
    transport = request.transport
    secure = transport is not None and transport.get_extra_info("sslcontext") is not None
    scheme = "https" if secure else "http"
    if trusted_proxies and _in(peer_address(request), trusted_proxies):
        values = request.headers.get("X-Forwarded-Proto", "").split(",")
        forwarded = values[-1].strip().lower()
        if forwarded in ("http", "https"):
            scheme = forwarded
    return scheme


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
