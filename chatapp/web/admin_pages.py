"""The admin page `/admin/` and its POST actions, for superusers only.

Anonymous visitors are sent to the login form by the auth middleware; a
logged-in non-superuser gets 403 here; the CSRF middleware has already
refused any POST without the session's token.
"""

from __future__ import annotations

import math
import time
from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import get_session

from chatapp.accounts.users import LastSuperuser, User
from chatapp.admin import NotFound
from chatapp.appkeys import (
    accounts_key,
    admin_key,
    demo_passwords_key,
    rooms_key,
    store_key,
    user_key,
)
from chatapp.chat.conversations import DM_RE
from chatapp.chat.presence import online_users
from chatapp.i18n import N_, _, ngettext
from chatapp.names import room_problem, room_rule, username_problem, username_rule
from chatapp.web.params import whole_number

routes = web.RouteTableDef()

PAGE_SIZE = 50
AUDIT_SHOWN = 50
MAX_QUERY = 64
# The page's own query (search terms and page numbers), kept across actions.
PAGE_PARAMS = ("q", "page", "rq", "rpage")
FLASH = "admin_flash"

DONE = {
    "disable": N_("Disabled {name}: {ended}, their sockets closed."),
    "logout": N_("Logged {name} out everywhere: {ended}, their sockets closed."),
    "enable": N_("Enabled {name}: they can log in again."),
    "grant": N_("{name} is now a superuser."),
    "revoke": N_("{name} is no longer a superuser."),
}
LAST_SUPERUSER = {
    "disable": N_(
        "{name} is the last superuser and cannot be disabled: make another user a superuser first."
    ),
    "revoke": N_(
        "{name} is the last superuser and cannot lose superuser rights: "
        "make another user a superuser first."
    ),
}


def require_superuser(request: web.Request) -> User:
    user = request[user_key]
    if user is None or not user.is_superuser:
        raise web.HTTPForbidden(text=_("Only superusers may use the admin pages."))
    return user


def _when(ts: float | None) -> str:
    if not ts:
        return ""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def _query(request: web.Request, name: str) -> str:
    value = request.query.get(name, "").strip()
    return value[:MAX_QUERY]


def _page(request: web.Request, name: str) -> int:
    """The page number asked for; 1 (the first page) when it is not a whole number >= 1."""
    return whole_number(request.query.get(name)) or 1


def _page_query(request: web.Request, **changes: int) -> str:
    """The page's kept query with `changes` applied, as `?...` (or "")."""
    params = {k: request.query[k] for k in PAGE_PARAMS if request.query.get(k)}
    params.update({k: str(v) for k, v in changes.items()})
    for name in ("page", "rpage"):
        if params.get(name) == "1":
            del params[name]  # the default
    return "?" + urlencode(params) if params else ""


def _pager(request: web.Request, name: str, page: int, total: int) -> dict:
    pages = max(1, math.ceil(total / PAGE_SIZE))
    return {
        "page": page,
        "pages": pages,
        "total": total,
        "prev_url": "/admin/" + _page_query(request, **{name: page - 1}) if page > 1 else "",
        "next_url": "/admin/" + _page_query(request, **{name: page + 1}) if page < pages else "",
    }


async def _paged(request: web.Request, name: str, search, query: str):
    """One page of a search, the requested page clamped to the last one."""
    page = _page(request, name)
    total, rows = await search(query, (page - 1) * PAGE_SIZE, PAGE_SIZE)
    last = max(1, math.ceil(total / PAGE_SIZE))
    if page > last:
        page = last
        total, rows = await search(query, (page - 1) * PAGE_SIZE, PAGE_SIZE)
    return rows, _pager(request, name, page, total)


async def _admin_page(request: web.Request, status: int = 200, error: str = "") -> web.Response:
    me = require_superuser(request)
    redis = request.app[store_key].raw
    accounts = request.app[accounts_key]
    q, rq = _query(request, "q"), _query(request, "rq")

    users, user_pager = await _paged(request, "page", accounts.search, q)
    online = await online_users(redis)

    rooms, room_pager = await _paged(request, "rpage", request.app[rooms_key].search, rq)

    entries = await request.app[admin_key].audit.recent(AUDIT_SHOWN)
    demo_unchanged = await request.app[demo_passwords_key].unchanged()
    signins = await request.app[admin_key].signins.recent(AUDIT_SHOWN)
    session = await get_session(request)
    context = {
        "me": me,
        "q": q,
        "rq": rq,
        "max_query": MAX_QUERY,
        "back": _page_query(request),
        "flash": session.pop(FLASH, ""),
        "error": error,
        "demo_unchanged": demo_unchanged,
        "users": [
            {
                "name": u.username,
                "joined": _when(u.joined),
                "last_login": _when(u.last_login) or "never",
                "is_superuser": u.is_superuser,
                "disabled": u.disabled,
                "online": online.get(u.username.lower(), []),
                "is_me": u.username.lower() == me.username.lower(),
            }
            for u in users
        ],
        "user_pager": user_pager,
        "rooms": [
            {
                "name": r.name,
                "kind": r.kind,
                "members": r.members,
                "people": r.people,
                "messages": r.messages,
                "last_activity": _when(r.last_activity),
            }
            for r in rooms
        ],
        "room_pager": room_pager,
        "audit": [
            {
                "when": _when(e.ts),
                "actor": e.actor,
                "action": e.action,
                "target": e.target,
                "detail": e.detail,
            }
            for e in entries
        ],
        "signins": [
            {
                "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(e.ts)),
                "who": e.target,
                "action": e.action,
                "address": e.address,
                "detail": e.detail,
            }
            for e in signins
        ],
    }
    return aiohttp_jinja2.render_template("admin.html", request, context, status=status)


@routes.get("/admin/", name="admin")
async def admin_page(request: web.Request) -> web.Response:
    return await _admin_page(request)


async def _done(request: web.Request, message: str) -> web.Response:
    session = await get_session(request)
    session[FLASH] = message
    raise web.HTTPFound("/admin/" + _page_query(request))


def _ended(count: int) -> str:
    if count == 0:
        return _("no session was open")
    return ngettext("{n} session ended", "{n} sessions ended", count).format(n=count)


@routes.post(r"/admin/users/{name}/{action:disable|enable|grant|revoke|logout}")
async def user_action(request: web.Request) -> web.Response:
    me = require_superuser(request)
    name, action = request.match_info["name"], request.match_info["action"]
    if username_problem(name):
        raise web.HTTPNotFound(
            text=_("There is no such user: usernames are {rule}").format(rule=username_rule())
        )
    admin = request.app[admin_key]
    act = {
        "disable": admin.disable_user,
        "enable": admin.enable_user,
        "grant": admin.grant,
        "revoke": admin.revoke,
        "logout": admin.log_out_everywhere,
    }[action]
    try:
        done = await act(me.username, name)
    except NotFound as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    except LastSuperuser:
        return await _admin_page(request, 400, _(LAST_SUPERUSER[action]).format(name=name))
    user, ended = done if isinstance(done, tuple) else (done, 0)
    return await _done(request, _(DONE[action]).format(name=user.username, ended=_ended(ended)))


@routes.post(r"/admin/rooms/{room}/delete")
async def delete_room(request: web.Request) -> web.Response:
    me = require_superuser(request)
    room = request.match_info["room"]
    if room_problem(room) and not DM_RE.fullmatch(room):
        raise web.HTTPNotFound(
            text=_("There is no such room: room names are {rule}").format(rule=room_rule())
        )
    try:
        await request.app[admin_key].delete_room(me.username, room)
    except NotFound as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    return await _done(
        request,
        _("Deleted room {room}: its sockets are closed and its history is gone.").format(room=room),
    )
