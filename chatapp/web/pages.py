"""The HTML pages: register, login, logout and the front door."""

from __future__ import annotations

import logging

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import get_session

from chatapp import i18n
from chatapp.accounts import audit
from chatapp.accounts.csrf import form_token
from chatapp.accounts.hashing import Busy
from chatapp.accounts.passwords import MAX_BYTES, MIN_LENGTH, password_problems
from chatapp.accounts.sessions import end_session, start_session
from chatapp.accounts.users import User, UsernameTaken
from chatapp.appkeys import (
    accounts_key,
    admin_key,
    config_key,
    lang_key,
    session_storage_key,
    store_key,
    throttle_key,
    user_key,
)
from chatapp.chat import control
from chatapp.chat.control import LOGGED_OUT, CloseSessions
from chatapp.i18n import N_, _, ngettext
from chatapp.names import (
    ROOM_MAX,
    ROOM_RE,
    USERNAME_MAX,
    USERNAME_RE,
    username_problem,
    username_rule,
)
from chatapp.web.netutil import client_address, parse_networks, safe_next
from chatapp.web.useragent import summary as browser_summary

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

BAD_LOGIN = N_(
    "Please enter a correct username and password. Note that both fields may be case-sensitive."
)
DISABLED = N_("This account has been disabled. Ask an administrator to enable it.")
TOO_MANY_REGISTRATIONS = (
    "Too many accounts were created from your address. Try again in {minutes} minutes."
)
BUSY = N_("The server is busy creating other accounts. Try again in a few seconds.")
SHOWN_NAME = 40  # characters of a submitted username that a log line shows


def shown(username: str) -> str:
    """A submitted username for a log line: quoted, and cut if long."""
    if len(username) <= SHOWN_NAME:
        return repr(username)
    return f"{username[:SHOWN_NAME]!r}... ({len(username)} characters)"


# The limits the server checks, rendered into the forms (maxlength, pattern and
# data-* attributes) so static/js/forms.js checks the same ones as the user types.
LIMITS = {
    "username_max": USERNAME_MAX,
    "username_pattern": USERNAME_RE.pattern,
    "room_max": ROOM_MAX,
    "room_pattern": ROOM_RE.pattern,
    "password_min": MIN_LENGTH,
    "password_max_bytes": MAX_BYTES,
}


class _LazyCsrfToken:
    """Makes the form token only when a page actually renders a form.

    Logged in: the session's token. Anonymous: a signed cookie's value
    (chatapp.accounts.csrf), so viewing a form stores nothing in Redis.
    """

    def __init__(self, request: web.Request, session) -> None:
        self._request = request
        self._session = session

    def __str__(self) -> str:
        storage = self._request.app[session_storage_key]
        return form_token(self._request, storage, self._session)

    def __html__(self) -> str:
        return str(self)


async def template_context(request: web.Request) -> dict:
    """Jinja2 context processor (runs on every request): user, form token, form limits."""
    session = None
    if not request.path.startswith(("/static/", "/healthz", "/metrics", "/ws/")):
        try:
            session = await get_session(request)
        except Exception:  # Redis down while rendering an error page: no form token
            log.warning("no session for %s: Redis unavailable", request.path)
    return {
        "user": request.get(user_key),
        "csrf_token": _LazyCsrfToken(request, session),
        "limits": LIMITS,
        "lang": request.get(lang_key, i18n.DEFAULT),
        "languages": i18n.NAMES,
        "here": request.path_qs if request.method == "GET" else "",
    }


def registrations_refused(minutes: int) -> str:
    return ngettext(
        "Too many accounts were created from your address. Try again in {minutes} minute.",
        "Too many accounts were created from your address. Try again in {minutes} minutes.",
        minutes,
    ).format(minutes=minutes)


def login_refused(minutes: int) -> str:
    """The throttled login's message, in the request's language (the audit log keeps English)."""
    return ngettext(
        "Too many failed login attempts. Try again in {minutes} minute.",
        "Too many failed login attempts. Try again in {minutes} minutes.",
        minutes,
    ).format(minutes=minutes)


def _form_page(request, template, status=200, **context) -> web.Response:
    context.setdefault("errors", {})
    context.setdefault("next", safe_next(request.query.get("next"), default=""))
    context.setdefault("username_rule", username_rule())
    return aiohttp_jinja2.render_template(template, request, context, status=status)


def address_of(request: web.Request) -> str:
    """The client's address, X-Forwarded-For believed from trusted proxies only."""
    config = request.app[config_key]
    return client_address(request, parse_networks(config.security.trusted_proxies))


async def log_in(request: web.Request, user: User, address: str) -> None:
    """Start `user`'s session on this request, with what their sessions page shows."""
    await start_session(
        request,
        user.username,
        gen=user.sessions_gen,
        address=address,
        browser=browser_summary(request.headers.get("User-Agent")),
    )
    await request.app[accounts_key].record_login(user.username)


def _field(form, name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    raise web.HTTPFound("/chat/")


@routes.get("/register/")
async def register_form(request: web.Request) -> web.Response:
    if request[user_key] is not None:
        raise web.HTTPFound("/chat/")
    return _form_page(request, "register.html")


@routes.post("/register/")
async def register(request: web.Request) -> web.Response:
    form = await request.post()
    username = _field(form, "username").strip()
    password, password2 = _field(form, "password"), _field(form, "password2")
    next_url = safe_next(_field(form, "next"), default="")
    errors: dict[str, list[str]] = {}
    accounts = request.app[accounts_key]
    problem = username_problem(username)
    if problem:
        errors["username"] = [problem]
    elif await accounts.exists(username):
        errors["username"] = [_("A user with that username already exists.")]
    if not password:
        errors["password"] = [_("Enter a password.")]
    else:
        pw_problems = password_problems(password, None, username)
        if pw_problems:
            errors["password"] = pw_problems
        if password != password2:
            errors["password2"] = [_("The two password fields didn't match.")]
    if not errors:
        address = address_of(request)
        verdict = await request.app[throttle_key].registration(address)
        if not verdict.allowed:
            log.warning("registration throttled from %s", address)
            response = _form_page(
                request,
                "register.html",
                status=429,
                errors={"__all__": [registrations_refused(verdict.minutes)]},
                username=username,
                next=next_url,
            )
            response.headers["Retry-After"] = str(verdict.retry_after)
            return response
        try:
            user = await accounts.create(username, password)
        except UsernameTaken:
            errors["username"] = [_("A user with that username already exists.")]
        except Busy:
            response = _form_page(
                request,
                "register.html",
                status=503,
                errors={"__all__": [_(BUSY)]},
                username=username,
                next=next_url,
            )
            response.headers["Retry-After"] = "5"
            return response
    if errors:
        return _form_page(
            request, "register.html", status=400, errors=errors, username=username, next=next_url
        )
    log.info("registered user %s", user.username)
    await log_in(request, user, address)
    await request.app[admin_key].signins.event(audit.LOGIN, user.username, address, "registered")
    raise web.HTTPFound(next_url or "/chat/")


@routes.get("/login/")
async def login_form(request: web.Request) -> web.Response:
    if request[user_key] is not None:
        raise web.HTTPFound(safe_next(request.query.get("next")))
    return _form_page(request, "login.html")


@routes.post("/login/")
async def login(request: web.Request) -> web.Response:
    form = await request.post()
    username = _field(form, "username").strip()
    password = _field(form, "password")
    next_url = safe_next(_field(form, "next") or request.query.get("next"), default="")
    address = address_of(request)
    throttle = request.app[throttle_key]
    signins = request.app[admin_key].signins

    def again(status: int, message: str) -> web.Response:
        return _form_page(
            request,
            "login.html",
            status=status,
            username=username,
            next=next_url,
            errors={"__all__": [message]},
        )

    # Counted before bcrypt runs: of many guesses sent at once, at most the
    # limit get their password checked.
    verdict = await throttle.attempt(username, address)
    if not verdict.allowed:
        log.warning("login throttled for %s from %s", shown(username), address)
        await signins.event(audit.LOGIN_THROTTLED, username, address, verdict.message)
        response = again(429, login_refused(verdict.minutes))
        response.headers["Retry-After"] = str(verdict.retry_after)
        return response
    accounts = request.app[accounts_key]
    user = await accounts.authenticate(username, password)
    if user is None:
        log.info("failed login for %s from %s", shown(username), address)
        await signins.event(audit.LOGIN_FAILED, username, address, "wrong username or password")
        return again(400, _(BAD_LOGIN))
    if user.disabled:
        await signins.event(audit.LOGIN_FAILED, user.username, address, "account disabled")
        return again(400, _(DISABLED))
    await throttle.succeeded(username, address)
    await log_in(request, user, address)
    await signins.event(audit.LOGIN, user.username, address)
    log.info("login %s from %s", user.username, address)
    raise web.HTTPFound(next_url or "/chat/")


@routes.post("/logout/")
async def logout(request: web.Request) -> web.Response:
    user = request[user_key]
    session_id = await end_session(request)
    if session_id:  # its sockets close on every worker (1008)
        await control.publish(request.app[store_key].raw, CloseSessions((session_id,), LOGGED_OUT))
    if user is not None:
        await request.app[admin_key].signins.event(audit.LOGOUT, user.username, address_of(request))
    log.info("logout %s", user.username if user else "?")
    raise web.HTTPFound("/login/")
