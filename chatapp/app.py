"""`create_app(config)`: wiring only — the objects, the middlewares, the routes.

Every resource that needs Redis or a task is opened by its own
`cleanup_ctx` (created before `yield`, closed after), in this order: the
store, the session secret, the accounts (demo users, bcrypt threads), the chat service. When one of
them fails, aiohttp closes those already opened. How the process is run
(`python -m chatapp`, gunicorn) is not this module's business.
"""

from __future__ import annotations

import gc
import logging
import os
import secrets
from collections.abc import AsyncIterator

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp_session import session_middleware
from redis.exceptions import RedisError

from chatapp.accounts import csrf
from chatapp.accounts.demo import DemoPasswords
from chatapp.accounts.sessions import SignedRedisStorage
from chatapp.accounts.throttle import LoginThrottle
from chatapp.accounts.users import Accounts
from chatapp.admin import AdminActions
from chatapp.appkeys import (
    accounts_key,
    admin_key,
    chat_key,
    config_key,
    demo_passwords_key,
    metrics_key,
    rooms_key,
    session_storage_key,
    store_key,
    throttle_key,
)
from chatapp.chat.service import ChatService
from chatapp.chat.wire import GOING_AWAY
from chatapp.config import Config, ConfigError, demo_seeding_problem
from chatapp.logs import install_one_line_records
from chatapp.metrics import Metrics
from chatapp.paths import find_dir
from chatapp.store.client import Store, make_store
from chatapp.store.keys import Keys
from chatapp.store.layout import ensure_layout
from chatapp.web import (
    account_pages,
    admin_pages,
    chat_pages,
    chat_socket,
    conversation_pages,
    history_pages,
    middlewares,
    ops,
    pages,
    socket_check,
)

log = logging.getLogger("chatapp")


# -- one cleanup_ctx per resource --------------------------------------------------


async def _store(app: web.Application) -> AsyncIterator[None]:
    """Wait for Redis (StoreUnavailable after `redis.connect_timeout`), bring its keys
    to today's layout; close the client."""
    store = app[store_key]
    try:
        await store.wait_ready(app[config_key].redis.connect_timeout)
        await ensure_layout(store.raw)
        await _check_replicas(app[config_key], store)
        yield
    finally:
        await store.close()


async def _check_replicas(config: Config, store: Store) -> None:
    """Warn when `redis.wait_replicas` asks for more replicas than some primary has:
    every message stored there will then answer `unavailable` (after the WAIT)."""
    wanted = config.redis.wait_replicas
    if not wanted or config.is_memory_store:
        return
    try:
        have = await store.replicas()
    except (RedisError, OSError) as exc:
        log.warning("could not count Redis replicas (%s)", exc)
        return
    if have < wanted:
        log.warning(
            "redis.wait_replicas is %d but %s has a primary with %d replica(s): messages "
            "stored there will answer `unavailable` (may still be stored) after each "
            "%.1f s WAIT until enough replicas are attached",
            wanted,
            store.display_url,
            have,
            config.redis.wait_timeout,
        )


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


async def _sessions(app: web.Application) -> AsyncIterator[None]:
    """Give the session storage its signing key (until then no cookie is trusted)."""
    app[session_storage_key].set_secret(await _session_secret(app[config_key], app[store_key]))
    yield


async def _accounts(app: web.Application) -> AsyncIterator[None]:
    """Seed the demo users when `demo.seed_users` is on; stop the bcrypt threads at the end."""
    accounts = app[accounts_key]
    try:
        if app[config_key].demo.seed_users:
            created = await accounts.seed_demo_users()
            log.warning(
                "demo.seed_users is on: demo users admin, thanos and ironman exist%s; "
                "turn it off in production",
                f" (created {', '.join(created)})" if created else "",
            )
        yield
    finally:
        accounts.close()


async def _chat(app: web.Application) -> AsyncIterator[None]:
    """Start the chat service (listener, presence, heartbeat); stop it on the way out."""
    chat = app[chat_key]
    await chat.start()
    try:
        yield
    finally:
        await chat.stop()


# -- signals ------------------------------------------------------------------------

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


def _started(workers: int):
    async def started(app: web.Application) -> None:
        """on_startup (after every cleanup_ctx has opened its resource): freeze, log one line."""
        _freeze_startup_objects()
        log.info(
            "chatapp worker %d started: store %s, %d worker%s",
            os.getpid(),
            app[store_key].display_url,
            workers,
            "" if workers == 1 else "s",
        )

    return started


async def _close_sockets(app: web.Application) -> None:
    """on_shutdown: close every socket with 1001 so the worker can exit promptly."""
    await app[chat_key].close_all(GOING_AWAY, "server shutting down")


# -- the factory --------------------------------------------------------------------


def create_app(config: Config, *, workers: int = 1) -> web.Application:
    """Build the application for `config`; nothing connects until it starts.

    `workers` is how many processes serve it, for the start-up line only.
    ConfigError if the config may not serve (`demo_seeding_problem`).
    """
    problem = demo_seeding_problem(config)
    if problem:
        raise ConfigError(problem)
    install_one_line_records()
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
        client_max_size=middlewares.MAX_BODY,
    )
    app[config_key] = config
    app[store_key] = store
    app[session_storage_key] = storage
    app[metrics_key] = Metrics()
    app[accounts_key] = Accounts(store.raw, config.accounts.bcrypt_rounds)
    app[demo_passwords_key] = DemoPasswords(store.raw, app[accounts_key].hasher)
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
    app.cleanup_ctx.extend([_store, _sessions, _accounts, _chat])
    app.on_startup.append(_started(workers))
    app.on_shutdown.append(_close_sockets)
    app.on_response_prepare.append(middlewares.add_security_headers)

    async def set_csrf_cookie(request: web.Request, response: web.StreamResponse) -> None:
        csrf.set_cookie(request, response, storage)

    app.on_response_prepare.append(set_csrf_cookie)
    app.add_routes(pages.routes)
    app.add_routes(chat_pages.routes)
    app.add_routes(conversation_pages.routes)
    app.add_routes(history_pages.routes)
    app.add_routes(chat_socket.routes)
    app.add_routes(socket_check.routes)
    app.add_routes(admin_pages.routes)
    app.add_routes(account_pages.routes)
    app.add_routes(ops.routes)
    app.router.add_static("/static/", find_dir("static"), name="static", append_version=False)
    return app
