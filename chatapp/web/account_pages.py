"""The person's own account: change password, and their sessions.

- GET, POST `/account/password/`: current password, the new one twice (the
  registration rules). On success every other session of the person ends
  (their sockets close on every worker, 1008) and this one gets a new id.
- GET `/account/sessions/`: the person's live sessions (browser, address,
  signed in, last seen), this one marked.
- POST `/account/sessions/{handle}/end`: sign one of them out. `handle` is a
  MAC of the session id, never the id itself (the id is the bearer secret);
  a handle that is not one of the person's own sessions gets 404.
- POST `/account/sessions/end-others`: sign out everywhere else.

Every change goes to the sign-in audit log with the client's address.
"""

from __future__ import annotations

import hmac
import logging
import re
import time

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import get_session

from chatapp.accounts import audit
from chatapp.accounts.hashing import Busy
from chatapp.accounts.passwords import password_problems
from chatapp.accounts.sessions import (
    SessionInfo,
    end_all_sessions,
    end_session,
    end_sessions,
    live_sessions,
    rotate_session,
    storage_of,
)
from chatapp.accounts.users import User
from chatapp.appkeys import accounts_key, admin_key, store_key, throttle_key, user_key
from chatapp.chat import control
from chatapp.chat.control import LOGGED_OUT, CloseSessions
from chatapp.i18n import N_, gettext, ngettext
from chatapp.web.pages import address_of, login_refused

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

FLASH = "account_flash"
HANDLE_PURPOSE = "session-handle"
HANDLE_RE = re.compile(r"[0-9a-f]{32}")
WRONG_PASSWORD = N_("Your current password was not correct.")
SAME_PASSWORD = N_("The new password must differ from the current one.")
BUSY = N_("The server is busy. Try again in a few seconds.")
PASSWORD_RENEWED = "password changed"  # noqa: S105 (a close reason)


def _me(request: web.Request) -> User:
    user = request[user_key]
    if user is None:  # the auth middleware sends anonymous visitors to login first
        raise web.HTTPFound("/login/")
    return user


def _field(form, name: str) -> str:
    value = form.get(name, "")
    return value if isinstance(value, str) else ""


def _handle(request: web.Request, session_id: str) -> str:
    return storage_of(request).mac(HANDLE_PURPOSE, session_id)


def _ended(count: int) -> str:
    """For the audit log (English)."""
    if count == 0:
        return "No other session was open."
    return (
        "1 other session was signed out."
        if count == 1
        else (f"{count} other sessions were signed out.")
    )


def _ended_shown(count: int) -> str:
    """`_ended` in the request's language."""
    if count == 0:
        return gettext("No other session was open.")
    return ngettext(
        "{n} other session was signed out.", "{n} other sessions were signed out.", count
    ).format(n=count)


async def _close(request: web.Request, session_ids, reason: str = LOGGED_OUT) -> None:
    """Close the sockets of `session_ids` on every worker (1008)."""
    ids = tuple(i for i in session_ids if i)
    if ids:
        await control.publish(request.app[store_key].raw, CloseSessions(ids, reason))


async def _flash(request: web.Request, message: str, to: str = "/account/sessions/"):
    session = await get_session(request)
    session[FLASH] = message
    raise web.HTTPFound(to)


# -- change password ------------------------------------------------------------------


def _password_page(request: web.Request, status: int = 200, errors=None) -> web.Response:
    context = {"errors": errors or {}}
    return aiohttp_jinja2.render_template("account_password.html", request, context, status=status)


@routes.get("/account/password/")
async def password_form(request: web.Request) -> web.Response:
    _me(request)
    return _password_page(request)


@routes.post("/account/password/")
async def change_password(request: web.Request) -> web.Response:
    me = _me(request)
    form = await request.post()
    current = _field(form, "current_password")
    password, password2 = _field(form, "password"), _field(form, "password2")
    address = address_of(request)
    signins = request.app[admin_key].signins
    errors: dict[str, list[str]] = {}
    if not current:
        errors["current_password"] = [gettext("Enter your current password.")]
    if not password:
        errors["password"] = [gettext("Enter a new password.")]
    else:
        problems = password_problems(password, None, me.username)
        if problems:
            errors["password"] = problems
        elif password == current:
            errors["password"] = [gettext(SAME_PASSWORD)]
        if password != password2:
            errors["password2"] = [gettext("The two password fields didn't match.")]
    if errors:
        return _password_page(request, 400, errors)

    # The current password is guessed like a login: counted before bcrypt runs.
    throttle = request.app[throttle_key]
    verdict = await throttle.attempt(me.username, address)
    if not verdict.allowed:
        await signins.event(audit.LOGIN_THROTTLED, me.username, address, "changing the password")
        response = _password_page(request, 429, {"__all__": [login_refused(verdict.minutes)]})
        response.headers["Retry-After"] = str(verdict.retry_after)
        return response
    accounts = request.app[accounts_key]
    if await accounts.authenticate(me.username, current) is None:
        await signins.event(audit.PASSWORD_CHANGE_FAILED, me.username, address, WRONG_PASSWORD)
        return _password_page(request, 400, {"current_password": [gettext(WRONG_PASSWORD)]})
    await throttle.succeeded(me.username, address)
    try:
        await accounts.set_password(me.username, password)
    except Busy:
        response = _password_page(request, 503, {"__all__": [gettext(BUSY)]})
        response.headers["Retry-After"] = "5"
        return response

    # Every session so far is stale; the others end, this one gets a new id.
    gen = await accounts.new_session_generation(me.username) or 0
    current_id = str((await get_session(request)).identity)
    ended, others = await end_all_sessions(
        request.app[store_key].raw, storage_of(request).cookie_name, me.username, keep=current_id
    )
    await _close(request, others)
    old_id, _ = await rotate_session(request, gen=gen)
    # The old id is gone: this browser's own sockets close now rather than
    # at the next session check, and its pages reconnect with the new one.
    await _close(request, [old_id], PASSWORD_RENEWED)
    await signins.event(audit.PASSWORD_CHANGED, me.username, address, _ended(ended))
    log.info(
        "password of %s changed from %s; %d other session(s) ended", me.username, address, ended
    )
    await _flash(
        request, gettext("Your password was changed. {ended}").format(ended=_ended_shown(ended))
    )


# -- your sessions --------------------------------------------------------------------


async def _mine(request: web.Request, me: User) -> list[SessionInfo]:
    return await live_sessions(
        request.app[store_key].raw, storage_of(request).cookie_name, me.username, me.sessions_gen
    )


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


@routes.get("/account/sessions/")
async def sessions_page(request: web.Request) -> web.Response:
    me = _me(request)
    session = await get_session(request)
    current = str(session.identity)
    rows = [
        {
            "handle": _handle(request, s.id),
            "browser": s.browser,
            "address": s.address,
            "since": _when(s.since),
            "since_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s.since)),
            "seen": _when(s.seen),
            "seen_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(s.seen)),
            "current": s.id == current,
        }
        for s in await _mine(request, me)
    ]
    rows.sort(key=lambda r: not r["current"])  # this one first
    context = {"sessions": rows, "flash": session.pop(FLASH, "")}
    return aiohttp_jinja2.render_template("account_sessions.html", request, context)


@routes.post("/account/sessions/end-others")
async def end_others(request: web.Request) -> web.Response:
    me = _me(request)
    session = await get_session(request)
    current_id = str(session.identity)
    gen = await request.app[accounts_key].new_session_generation(me.username) or 0
    session["gen"] = gen  # this one stays
    ended, others = await end_all_sessions(
        request.app[store_key].raw, storage_of(request).cookie_name, me.username, keep=current_id
    )
    await _close(request, others)
    address = address_of(request)
    await request.app[admin_key].signins.event(
        audit.OTHER_SESSIONS_ENDED, me.username, address, _ended(ended)
    )
    await _flash(request, _ended_shown(ended))


@routes.post(r"/account/sessions/{handle}/end")
async def end_one(request: web.Request) -> web.Response:
    me = _me(request)
    handle = request.match_info["handle"]
    target = None
    if HANDLE_RE.fullmatch(handle):
        for info in await _mine(request, me):
            if hmac.compare_digest(_handle(request, info.id), handle):
                target = info
    if target is None:
        raise web.HTTPNotFound(text=gettext("You have no such session: it may have ended already."))
    session = await get_session(request)
    address = address_of(request)
    detail = f"{target.browser} from {target.address}"
    signins = request.app[admin_key].signins
    if target.id == str(session.identity):  # signing this one out: a logout
        await end_session(request)
        await _close(request, [target.id])
        await signins.event(audit.LOGOUT, me.username, address, "from the sessions page")
        raise web.HTTPFound("/login/")
    ended = await end_sessions(
        request.app[store_key].raw, storage_of(request).cookie_name, me.username, [target.id]
    )
    await _close(request, [target.id])
    await signins.event(audit.SESSION_ENDED, me.username, address, detail)
    message = (
        gettext("Signed out {browser} ({address}).").format(
            browser=target.browser, address=target.address
        )
        if ended
        else gettext("That session had already ended.")
    )
    await _flash(request, message)
