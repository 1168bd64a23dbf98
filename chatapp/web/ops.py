"""Operational endpoints: /healthz for load balancers, /metrics for Prometheus."""

from __future__ import annotations

import logging

from aiohttp import web

from chatapp.appkeys import config_key, metrics_key, store_key
from chatapp.store.client import StoreUnavailable
from chatapp.web.netutil import may_read_metrics, parse_networks

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    try:
        await request.app[store_key].ping(timeout=2.0)
    except StoreUnavailable as exc:
        # Anyone may ask: the answer names the failing part, the log keeps the
        # detail (the Redis URL, the error), which is for the operator only.
        log.warning("/healthz: Redis unavailable (%s)", exc)
        return web.json_response({"status": "unavailable", "redis": "unavailable"}, status=503)
    return web.json_response({"status": "ok", "redis": "ok"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    security = request.app[config_key].security
    trusted = parse_networks(security.trusted_proxies)
    if not may_read_metrics(request, trusted, parse_networks(security.metrics_networks)):
        raise web.HTTPForbidden(text="Metrics are served to loopback and configured networks only.")
    return web.Response(
        text=request.app[metrics_key].render(),
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Prometheus-Format": "0.0.4"},
    )
