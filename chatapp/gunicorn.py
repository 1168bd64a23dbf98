"""Serving under gunicorn: `gunicorn 'chatapp:create_app()' -k aiohttp.GunicornWebWorker`.

Everything that knows about gunicorn is here: reading the config from
`$CHATAPP_CONFIG`, counting the workers, refusing `memory://` with more than
one, and stopping a start that cannot succeed with one line and exit status
3 (gunicorn's "worker failed to boot": the master stops instead of
respawning the worker forever).
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from typing import NoReturn

from aiohttp import web

from chatapp.app import create_app as build_app
from chatapp.appkeys import config_key, store_key
from chatapp.config import ENV_CONFIG_PATH, ConfigError, load_config
from chatapp.logs import setup_logging
from chatapp.store.client import StoreUnavailable

WORKER_BOOT_ERROR = 3  # gunicorn.arbiter.Arbiter.WORKER_BOOT_ERROR
CONFIG_ERROR = 2  # what `python -m chatapp` exits with


def under_gunicorn() -> bool:
    """Whether this process is gunicorn's (`gunicorn` or `python -m gunicorn`)."""
    # The arbiter is imported by every gunicorn process, master and workers.
    return "gunicorn.arbiter" in sys.modules


def gunicorn_workers() -> int | None:
    """The -w of the gunicorn running us, or None when not under gunicorn."""
    if not under_gunicorn():
        return None
    try:
        from gunicorn.config import Config as GunicornConfig

        parser = GunicornConfig().parser()
        args = os.environ.get("GUNICORN_CMD_ARGS", "").split() + sys.argv[1:]
        parsed, _ = parser.parse_known_args(args)
        return int(parsed.workers or os.environ.get("WEB_CONCURRENCY", 1))
    except Exception:  # an unusual gunicorn: don't guess
        return None


def refuse_to_start(message: str) -> NoReturn:
    """Stop start-up with one line: status 3 under gunicorn, else 2."""
    print(f"chatapp: {message}", file=sys.stderr)
    raise SystemExit(WORKER_BOOT_ERROR if under_gunicorn() else CONFIG_ERROR)


async def _store_or_refuse(app: web.Application) -> AsyncIterator[None]:
    """The first cleanup_ctx: no Redis within `redis.connect_timeout`, no worker.

    The app's own store context would raise StoreUnavailable, which the
    worker logs as a traceback and gunicorn answers by respawning it.
    """
    try:
        await app[store_key].wait_ready(app[config_key].redis.connect_timeout)
    except StoreUnavailable as exc:
        refuse_to_start(str(exc))
    yield


def create_app() -> web.Application:
    """The app of one gunicorn worker, configured from `$CHATAPP_CONFIG` (default config.yaml)."""
    try:
        config = load_config(os.environ.get(ENV_CONFIG_PATH, "config.yaml"))
    except ConfigError as exc:
        refuse_to_start(f"config error: {exc}")
    # Nobody else set up logging for this process.
    setup_logging(config.log.level)
    workers = gunicorn_workers()
    if config.is_memory_store and workers and workers > 1:
        refuse_to_start(
            "config error: redis.url: memory:// is private to one process, so "
            f"{workers} workers would not see each other's users, sessions or messages; "
            "use a real Redis (redis://host:port/db)"
        )
    try:
        app = build_app(config, workers=workers or 1)
    except ConfigError as exc:
        refuse_to_start(f"config error: {exc}")
    app.cleanup_ctx.insert(0, _store_or_refuse)
    return app
