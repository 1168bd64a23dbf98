"""Why a room socket is refused: a question the room page can ask, and the Upgrade check.

`GET /api/socket-check?origin=<the page's origin>` (logged in) answers
whether the socket handshake would accept that Origin, and what Host (and
forwarded scheme) this server sees. The room page asks it when its socket
keeps being refused; a proxy that drops the port from the Host header
(nginx's `$host`) shows up here as `"allowed": false` with the port missing
from `"host"`. The answer comes from the handshake's own check,
`chat_socket.origin_allowed`, run on this request with the Origin replaced.

`upgrade_problem` names the header a proxy failed to pass on, so a refused
handshake says why in the log.
"""

from __future__ import annotations

from aiohttp import hdrs, web
from multidict import CIMultiDict

from chatapp.appkeys import config_key
from chatapp.web.netutil import parse_networks

routes = web.RouteTableDef()


def would_accept_origin(request: web.Request, origin: str) -> bool:
    """Whether a socket handshake like `request`, from `origin`, passes the Origin check."""
    from chatapp.web.chat_socket import origin_allowed  # the handler module imports this one

    headers = CIMultiDict(request.headers)
    headers[hdrs.ORIGIN] = origin
    probe = request.clone(headers=headers)
    security = request.app[config_key].security
    return origin_allowed(probe, security.allowed_origins, parse_networks(security.trusted_proxies))


@routes.get("/api/socket-check")
async def socket_check(request: web.Request) -> web.Response:
    origin = request.query.get("origin", "").strip()
    if not origin:
        raise web.HTTPBadRequest(text="Give the page's origin: ?origin=<location.origin>.")
    config = request.app[config_key]
    return web.json_response(
        {
            "origin": origin,
            "allowed": would_accept_origin(request, origin),
            "host": request.headers.get(hdrs.HOST, ""),
            "forwarded_proto": request.headers.get("X-Forwarded-Proto"),
            "origins_configured": bool(config.security.allowed_origins),
        }
    )


def upgrade_problem(request: web.Request) -> str | None:
    """What a WebSocket handshake lacks (a proxy stripped it), or None when it can upgrade."""
    # The same tests as aiohttp's handshake (`WebSocketResponse._pre_start`).
    upgrade = request.headers.get(hdrs.UPGRADE, "")
    if upgrade.lower().strip() != "websocket":
        return (
            f"no 'Upgrade: websocket' header (got {upgrade!r}): a proxy in front must pass "
            "it on (nginx: proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade)"
        )
    connection = request.headers.get(hdrs.CONNECTION, "")
    if "upgrade" not in connection.lower():
        return (
            f"no 'Connection: upgrade' header (got {connection!r}): a proxy in front must "
            'pass it on (nginx: proxy_set_header Connection "upgrade")'
        )
    return None
