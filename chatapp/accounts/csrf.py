"""Form tokens (CSRF): the session's token when logged in, a signed cookie before.

Logged-in people's forms carry their session's token (`sessions.csrf_token_of`).
An anonymous visitor has no session, and gets none just for viewing a form:
the login and register pages set a cookie `<session.cookie_name>_csrf`
holding a random value and its HMAC under the session secret (HttpOnly,
SameSite=Lax, Secure when `session.secure`), and the form carries the
value. A POST must carry the value of a correctly signed cookie (double
submit, compared in constant time). Nothing is stored in Redis.
"""

from __future__ import annotations

import hmac
import secrets
from http.cookies import SimpleCookie

from aiohttp import hdrs, web
from aiohttp_session import Session

from chatapp.accounts.sessions import SignedRedisStorage, cookie_value, csrf_token_of

PURPOSE = "csrf-cookie"
_NEW = "chatapp.csrf.new"  # request key: the value of a cookie to set on the response


def cookie_name(storage: SignedRedisStorage) -> str:
    return f"{storage.cookie_name}_csrf"


def _cookie_token(request: web.Request, storage: SignedRedisStorage) -> str | None:
    """The value of the request's CSRF cookie, if its signature holds."""
    raw = cookie_value(request.headers.get(hdrs.COOKIE, ""), cookie_name(storage))
    if not raw or not storage.ready:
        return None
    token, _, sig = raw.rpartition(".")
    if not token or not hmac.compare_digest(sig, storage.mac(PURPOSE, token)):
        return None
    return token


def anonymous_token(request: web.Request, storage: SignedRedisStorage) -> str:
    """The token for an anonymous visitor's form: the cookie's, or a new one to set."""
    token = request.get(_NEW) or _cookie_token(request, storage)
    if token is None:
        token = request[_NEW] = secrets.token_urlsafe(32)
    return token


def form_token(request: web.Request, storage: SignedRedisStorage, session: Session | None) -> str:
    """The token a form on this page carries."""
    if session is not None and session.get("user"):
        return csrf_token_of(session)
    if not storage.ready:
        return ""
    return anonymous_token(request, storage)


def expected_token(
    request: web.Request, storage: SignedRedisStorage, session: Session
) -> str | None:
    """The token a POST must carry: the session's when logged in, else the cookie's."""
    if session.get("user"):
        return session.get("csrf")
    return _cookie_token(request, storage)


def matches(given: object, expected: str | None) -> bool:
    return (
        bool(expected)
        and isinstance(given, str)
        and hmac.compare_digest(given.encode(), str(expected).encode())
    )


def set_cookie(request: web.Request, response: web.StreamResponse, storage: SignedRedisStorage):
    """on_response_prepare: set the cookie of a token made for this response's form.

    A header, not `response.set_cookie`: by the time this signal runs, the
    response's cookies have already been turned into headers.
    """
    token = request.get(_NEW)
    if token is None or isinstance(response, web.WebSocketResponse):
        return
    name = cookie_name(storage)
    cookie: SimpleCookie = SimpleCookie()
    cookie[name] = f"{token}.{storage.mac(PURPOSE, token)}"
    morsel = cookie[name]
    morsel["path"] = "/"
    morsel["max-age"] = str(storage.max_age)
    morsel["httponly"] = True
    morsel["samesite"] = "Lax"
    if storage.secure:
        morsel["secure"] = True
    response.headers.add(hdrs.SET_COOKIE, morsel.OutputString())
