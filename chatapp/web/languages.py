"""The request's language (a middleware) and the language switch (POST /language/).

See chatapp.i18n for the catalogs and the negotiation; PROTOCOL.md "Languages".
"""

from __future__ import annotations

from aiohttp import hdrs, web

from chatapp import i18n
from chatapp.accounts.sessions import cookie_value
from chatapp.appkeys import config_key, lang_key
from chatapp.web.netutil import safe_next

routes = web.RouteTableDef()


def language_of(request: web.Request) -> str:
    """The language a request asks for: its `chatapp_lang` cookie, else `Accept-Language`.

    From the raw headers (not `request.cookies`, cached on the request): a
    socket's handshake request lives as long as the socket.
    """
    cookie = cookie_value(request.headers.get(hdrs.COOKIE, ""), i18n.COOKIE)
    return i18n.negotiate(cookie, request.headers.get(hdrs.ACCEPT_LANGUAGE))


@web.middleware
async def middleware(request: web.Request, handler):
    """Settle the request's language once: `request[lang_key]` and the gettext ContextVar."""
    lang = request[lang_key] = language_of(request)
    token = i18n.activate(lang)
    try:
        return await handler(request)
    finally:
        i18n.reset(token)


@routes.post("/language/")
async def choose(request: web.Request) -> web.Response:
    """Keep the chosen language in a cookie for a year; back to `next` (same-site) or /chat/."""
    form = await request.post()
    lang = i18n.supported(form.get("lang")) or i18n.DEFAULT
    next_value = form.get("next")
    target = safe_next(next_value if isinstance(next_value, str) else None)
    response = web.Response(status=302, headers={hdrs.LOCATION: target})
    response.set_cookie(
        i18n.COOKIE,
        lang,
        max_age=i18n.COOKIE_MAX_AGE,
        path="/",
        samesite="Lax",
        secure=request.app[config_key].session.secure,
    )
    return response


@routes.get(r"/i18n/{lang:[a-z]{2}}.json")
async def script_catalog(request: web.Request) -> web.Response:
    """The page scripts' strings in `lang` (static/js/i18n.js); 404 for a language not served."""
    lang = i18n.supported(request.match_info["lang"])
    if lang is None:
        raise web.HTTPNotFound()
    return web.Response(
        body=i18n.script_catalog(lang),
        content_type="application/json",
        headers={"Cache-Control": "public, max-age=300"},
    )
