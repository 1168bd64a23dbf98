"""`create_app()`: wiring only — config, store, sessions, middlewares, routes."""

from __future__ import annotations

import gc
import logging
import os
import secrets
import sys
from typing import NoReturn

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp_session import session_middleware

from chatapp.accounts.sessions import SignedRedisStorage
from chatapp.accounts.throttle import LoginThrottle
from chatapp.accounts.users import Accounts
from chatapp.admin import AdminActions
from chatapp.appkeys import (
    SESSION_STORAGE,
    accounts_key,
    admin_key,
    chat_key,
    config_key,
    metrics_key,
    rooms_key,
    secret_key,
    store_key,
    throttle_key,
)
from chatapp.chat.service import ChatService
from chatapp.chat.wire import GOING_AWAY
from chatapp.config import ENV_CONFIG_PATH, Config, ConfigError, load_config
from chatapp.logs import install_one_line_records, setup_logging
from chatapp.metrics import Metrics
from chatapp.paths import find_dir
from chatapp.store.client import Store, StoreUnavailable, make_store
from chatapp.store.keys import Keys
from chatapp.web import admin_pages, chat_pages, chat_socket, middlewares, ops, pages

log = logging.getLogger("chatapp")


def gunicorn_workers() -> int | None:
    """The -w of the gunicorn running us, or None when not under gunicorn."""
    # The arbiter is imported by every gunicorn process (`gunicorn` or `python -m gunicorn`).
    if "gunicorn.arbiter" not in sys.modules:
        return None
    try:
        from gunicorn.config import Config as GunicornConfig

        parser = GunicornConfig().parser()
        args = os.environ.get("GUNICORN_CMD_ARGS", "").split() + sys.argv[1:]
        parsed, _ = parser.parse_known_args(args)
        return int(parsed.workers or os.environ.get("WEB_CONCURRENCY", 1))
    except Exception:  # an unusual gunicorn: don't guess
        return None


async def _session_secret(config: Config, store: Store) -> bytes:
    """The configured secret, or one generated once and shared through Redis."""
    if config.session.secret_key:
        return config.session.secret_key.encode()
    generated = secrets.token_hex(32)
    # SET NX: every worker of one deployment ends up with the same key.
    await store.raw.set(Keys.secret, generated, nx=True)
    shared = (await store.raw.get(Keys.secret) or generated.encode()).decode()
    log.warning(
        "session.secret_key is not set: using a generated one kept in Redis; "
        "set session.secret_key (CHATAPP_SESSION_SECRET_KEY) in production"
    )
    return shared.encode()


_gc_frozen = False


def _freeze_startup_objects() -> None:
    """Keep what start-up built (modules, templates, the app) out of the collector's scans.

    It lives as long as the process, yet every full collection walked it: with
    1,000 sockets open a full collection paused the loop 14-61 ms, the p99 of
    W3. Once per process (tests build many apps in one).
    """
    global _gc_frozen
    if not _gc_frozen:
        _gc_frozen = True
        gc.collect()
        gc.freeze()


async def _store_ctx(app: web.Application):
    """Connect the store, settle the secret and the demo users; close on the way out."""
    config, store = app[config_key], app[store_key]
    try:
        await store.wait_ready(config.redis.connect_timeout)
    except StoreUnavailable as exc:
        if "gunicorn.arbiter" in sys.modules:  # one line, and the master stops
            _refuse_to_start(str(exc))
        raise  # `python -m chatapp` reports it and exits 2
    app[secret_key] = await _session_secret(config, store)
    app[SESSION_STORAGE].set_secret(app[secret_key])
    if config.demo.seed_users:
        created = await app[accounts_key].seed_demo_users()
        log.warning(
            "demo.seed_users is on: demo users admin, thanos and ironman exist%s; "
            "turn it off in production",
            f" (created {', '.join(created)})" if created else "",
        )
    chat = app[chat_key]
    await chat.start()
    _freeze_startup_objects()
    workers = gunicorn_workers() or 1
    log.info(
        "chatapp worker %d started: store %s, %d worker%s",
        os.getpid(),
        store.display_url,
        workers,
        "" if workers == 1 else "s",
    )
    yield
    await chat.stop()
    await store.close()


async def _close_sockets(app: web.Application) -> None:
    """on_shutdown: close every socket with 1001 so the worker can exit promptly."""
    await app[chat_key].close_all(GOING_AWAY, "server shutting down")


def _refuse_to_start(message: str) -> NoReturn:
    """Stop start-up with one line: status 2, or 3 under gunicorn.

    gunicorn respawns a worker that exits with any other status forever; 3 is
    its "worker failed to boot", on which the master stops too.
    """
    print(f"chatapp: {message}", file=sys.stderr)
    raise SystemExit(3 if "gunicorn.arbiter" in sys.modules else 2)


def create_app(config: Config | None = None) -> web.Application:
    """Build the application; reads `$CHATAPP_CONFIG` (default config.yaml) when no config."""
    install_one_line_records()
    if config is None:
        try:
            config = load_config(os.environ.get(ENV_CONFIG_PATH, "config.yaml"))
        except ConfigError as exc:
            _refuse_to_start(f"config error: {exc}")
        # The gunicorn path: nobody else set up logging for this process.
        setup_logging(config.log.level)
    workers = gunicorn_workers()
    if config.is_memory_store and workers and workers > 1:
        _refuse_to_start(
            "config error: redis.url: memory:// is private to one process, so "
            f"{workers} workers would not see each other's users, sessions or messages; "
            "use a real Redis (redis://host:port/db)"
        )
    store = make_store(config.redis.url)
    storage = SignedRedisStorage(
        store.raw,
        cookie_name=config.session.cookie_name,
        max_age=config.session.max_age,
        secure=config.session.secure,
    )
    app = web.Application(
        middlewares=[
            middlewares.socket_gate,
            middlewares.error_pages,
            session_middleware(storage),
            middlewares.auth,
            middlewares.csrf,
        ],
        client_max_size=256 * 1024,
    )
    app[config_key] = config
    app[store_key] = store
    app[SESSION_STORAGE] = storage
    app[metrics_key] = Metrics()
    app[accounts_key] = Accounts(store.raw, config.accounts.bcrypt_rounds)
    app[throttle_key] = LoginThrottle(
        store.raw,
        per_pair=config.accounts.login_failures_per_user,
        per_address=config.accounts.login_failures_per_address,
        per_user_total=config.accounts.login_failures_per_user_total,
        window=config.accounts.login_failure_window,
        registrations_per_address=config.accounts.registrations_per_address,
    )
    app[chat_key] = chat = ChatService(store, config, app[metrics_key])
    app[rooms_key] = chat.directory
    app[admin_key] = AdminActions(
        store.raw,
        app[accounts_key],
        chat.directory,
        session_cookie_name=config.session.cookie_name,
    )
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(find_dir("templates"))),
        autoescape=True,
        context_processors=[pages.template_context],
    )
    app.cleanup_ctx.append(_store_ctx)
    app.on_shutdown.append(_close_sockets)
    app.on_response_prepare.append(middlewares.add_security_headers)
    app.add_routes(pages.routes)
    app.add_routes(chat_pages.routes)
    app.add_routes(chat_socket.routes)
    app.add_routes(admin_pages.routes)
    app.add_routes(ops.routes)
    app.router.add_static("/static/", find_dir("static"), name="static", append_version=False)
    return app
