"""Operational endpoints: /healthz for load balancers, /metrics for Prometheus."""

from __future__ import annotations

from aiohttp import web

from chatapp.appkeys import config_key, metrics_key, store_key
from chatapp.store.client import StoreUnavailable
from chatapp.web.netutil import is_loopback_or_in, parse_networks

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    try:
        await request.app[store_key].ping(timeout=2.0)
    except StoreUnavailable as exc:
        return web.json_response(
            {"status": "unavailable", "redis": "unavailable", "detail": str(exc)}, status=503
        )
    return web.json_response({"status": "ok", "redis": "ok"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    allowed = parse_networks(request.app[config_key].security.metrics_networks)
    if not is_loopback_or_in(request.remote or "", allowed):
        raise web.HTTPForbidden(text="Metrics are served to loopback and configured networks only.")
    return web.Response(
        text=request.app[metrics_key].render(),
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Prometheus-Format": "0.0.4"},
    )
