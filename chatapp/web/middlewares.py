"""Middlewares: the socket gate, error pages, login guard, CSRF check; security headers."""

from __future__ import annotations

import logging
import time
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp_session import get_session
from redis.exceptions import RedisError

from chatapp import i18n
from chatapp.accounts import csrf as csrf_tokens
from chatapp.accounts.sessions import SEEN_EVERY, end_session, storage_of
from chatapp.appkeys import accounts_key, config_key, session_storage_key, user_key
from chatapp.i18n import N_, _

log = logging.getLogger(__name__)

# The largest request body read (aiohttp's `client_max_size`); larger gets 413.
MAX_BODY = 256 * 1024

# Pages only logged-in people reach; everything else is public.
PROTECTED_PREFIXES = ("/chat/", "/admin/", "/ws/", "/logout/", "/api/", "/account/")
# Paths that never need a session (cheap, and no cookie churn).
SESSIONLESS_PREFIXES = ("/static/", "/i18n/", "/healthz", "/metrics", "/favicon.ico")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}

# Translated where shown (`error_page`), in the request's language.
ERROR_TEXTS = {
    400: (N_("Bad request"), N_("The request could not be understood.")),
    403: (N_("Forbidden"), N_("You are not allowed to see this page.")),
    404: (N_("Page not found"), N_("There is nothing at this address.")),
    405: (N_("Method not allowed"), N_("This page does not accept that kind of request.")),
    413: (N_("Too large"), N_("The request was too large.")),
    429: (N_("Too many requests"), N_("Slow down and try again in a little while.")),
    500: (
        N_("Something went wrong"),
        N_("The server hit an error. It has been logged; try again."),
    ),
    503: (
        N_("Unavailable"),
        N_("The chat cannot reach its data store right now. Try again shortly."),
    ),
}


HSTS = "max-age=31536000; includeSubDomains"


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every response, pages, errors and static files alike.

    No `Server` header (aiohttp names itself and its version). `no-store` on
    whatever is behind login, so no cache (the browser's, a proxy's) keeps a
    page or an answer meant for one person; static files stay cacheable. HSTS
    when the cookie is `session.secure`, that is when the site is served over
    TLS (never on a plain-HTTP deployment, which it would break).
    """
    headers = response.headers
    headers.popall(hdrs.SERVER, None)
    if request.app[config_key].session.secure:
        headers.setdefault("Strict-Transport-Security", HSTS)
    if isinstance(response, web.WebSocketResponse):
        # A 101 carries no document to protect, and its headers live as long as
        # the socket: 1.3 KB per idle socket.
        return
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)
    if _behind_login(request):
        headers["Cache-Control"] = "no-store"


def _behind_login(request: web.Request) -> bool:
    """Whether a response is meant for one person: a protected path or a logged-in asker."""
    path = request.path
    if path.startswith(SESSIONLESS_PREFIXES):
        return False
    return _needs_login(path) or request.get(user_key) is not None


def error_page(request: web.Request, status: int, detail: str | None = None) -> web.Response:
    title, text = ERROR_TEXTS.get(status, (N_("Error"), N_("The request failed.")))
    response = aiohttp_jinja2.render_template(
        "error.html",
        request,
        {"status": status, "title": _(title), "text": detail or _(text), "lang": i18n.current()},
        status=status,
    )
    return response


SOCKET_ROUTE = "chat-socket"  # the name of the `/ws/chat/{room}/` route
DM_SOCKET_ROUTE = "dm-socket"  # ... and of `/ws/dm/{username}/`
SOCKET_ROUTES = frozenset((SOCKET_ROUTE, DM_SOCKET_ROUTE))


@web.middleware
def socket_gate(request: web.Request, handler):
    """Send sockets straight to their handler, past the page middlewares.

    A socket's request lives for hours, and so does every coroutine frame on
    its stack, with what it holds. A socket needs none of the page
    middlewares (no error page: it gets a bare status; no CSRF: a GET), and
    checks its own session before the upgrade (`socket_user`). Not a
    coroutine: returning the next coroutine adds no frame of its own.
    Outermost, so it runs first.
    """
    # By route name, not path: any `request.path`-like access is cached on the
    # request, and a 6th cached entry grows that dict for the socket's life.
    if request.match_info.route.name in SOCKET_ROUTES:
        return request.match_info.handler(request)
    return handler(request)


async def socket_user(request: web.Request) -> tuple[str, str] | None:
    """The logged-in, enabled user of a socket handshake and its session id, or None.

    Keeps nothing on the request (no session, no user record, no parsed
    cookies): the socket never writes its session, and whatever the
    request holds is held for as long as the socket is open.
    """
    session = await request.app[session_storage_key].load_session(request)
    user = await _enabled_user(request, session.get("user"))
    if user is None or session.identity is None or not _of_generation(session, user):
        return None
    return user.username, str(session.identity)


@web.middleware
async def error_pages(request: web.Request, handler):
    """Friendly pages for HTTP errors; a logged traceback and a 500 page for bugs."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or request.path.startswith("/ws/"):
            raise
        # aiohttp's default body is "404: Not Found"; anything else was written for people.
        detail = None if exc.text in (None, f"{exc.status}: {exc.reason}") else exc.text
        response = error_page(request, exc.status, detail)
        for name in ("Allow", "Retry-After"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except RedisError as exc:
        # Redis down or not answering is an outage, not a bug: 503 tells people
        # and load balancers to come back, and one line beats a traceback per request.
        log.warning("503 on %s %s: Redis unavailable (%s)", request.method, request.path, exc)
        response = error_page(request, 503)
        response.headers["Retry-After"] = "5"
        return response
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_page(request, 500)


def _needs_login(path: str) -> bool:
    return path.startswith(PROTECTED_PREFIXES)


async def _enabled_user(request: web.Request, name: str | None):
    """The account a session names, or None if it names none, or one gone or disabled."""
    if not name:
        return None
    user = await request.app[accounts_key].get(name)
    return None if user is None or user.disabled else user


def _of_generation(session, user) -> bool:
    """Whether the session was started after the user's sessions were last all ended."""
    return session.get("gen", 0) == user.sessions_gen


async def _session_user(request: web.Request):
    """The session's user, or None (ending a session whose user is gone or disabled,
    or whose sessions were all ended since it started)."""
    session = await get_session(request)
    name = session.get("user")
    user = await _enabled_user(request, name)
    if user is not None and not _of_generation(session, user):
        user = None
    if user is None and name:
        await end_session(request)
    elif user is not None and time.time() - session.get("seen", 0) >= SEEN_EVERY:
        session["seen"] = time.time()  # "last seen", written at most once a minute
    return user


@web.middleware
async def auth(request: web.Request, handler):
    """Settle who is asking; send anonymous visitors of chat pages to the login form."""
    if request.path.startswith(SESSIONLESS_PREFIXES):
        request[user_key] = None
        return await handler(request)
    # A helper, so this frame (alive as long as a socket is) holds no session.
    user = request[user_key] = await _session_user(request)
    if user is None and _needs_login(request.path):
        if request.path.startswith(("/ws/", "/api/")):
            raise web.HTTPForbidden(text=_("Log in first."))
        if request.method == "GET":
            raise web.HTTPFound(f"/login/?next={quote(request.path_qs, safe='/')}")
        raise web.HTTPFound("/login/")
    return await handler(request)


@web.middleware
async def csrf(request: web.Request, handler):
    """Every unsafe request must carry a valid token in `csrf_token`.

    Logged in: the session's token. Anonymous: the value of the signed CSRF
    cookie (double submit; see chatapp.accounts.csrf).
    """
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return await handler(request)
    session = await get_session(request)
    expected = csrf_tokens.expected_token(request, storage_of(request), session)
    try:
        form = await request.post()
    except web.HTTPRequestEntityTooLarge:
        # Over `client_max_size`: say so, rather than "CSRF" (no token could be read).
        log.warning("413 on %s %s: body over %d bytes", request.method, request.path, MAX_BODY)
        return error_page(
            request,
            413,
            _("The request was too large: a form may send at most {size} KiB.").format(
                size=MAX_BODY // 1024
            ),
        )
    except (ValueError, HttpProcessingError, web.HTTPException):
        # Not a readable form (a malformed multipart part raises InvalidHeader):
        # no token can be read from it.
        form = {}
    if not csrf_tokens.matches(form.get("csrf_token"), expected):
        log.warning("CSRF check failed on %s %s", request.method, request.path)
        return error_page(
            request,
            403,
            _(
                "This form's security token was missing or out of date (CSRF check failed). "
                "Go back, reload the page and try again."
            ),
        )
    return await handler(request)
