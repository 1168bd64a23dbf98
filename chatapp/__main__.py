"""Command line: serve the app, or manage users without a browser."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys

from .config import Config, ConfigError, load_config
from .store import StoreUnavailable

ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tfs'


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chatapp", description=__doc__)
    parser.add_argument("--config", default="config.yaml", help="path of config.yaml")
    parser.add_argument("--host", help="listen address (overrides server.host)")
    parser.add_argument("--port", type=int, help="listen port (overrides server.port)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("serve", help="serve the app (the default)")
    create = commands.add_parser("createuser", help="create a user")
    create.add_argument("name")
    create.add_argument("--password", help="the password (prompted without echo when absent)")
    create.add_argument("--superuser", action="store_true", help="give admin rights")
    return parser


def setup_logging(config: Config) -> None:
    logging.basicConfig(
        level=config.log.level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def fail(message: str, status: int = 2) -> int:
    print(f"chatapp: {message}", file=sys.stderr)
    return status


def serve(config: Config) -> int:
    from aiohttp import web

    from .app import create_app

    if config.server.uvloop:
        try:
            import uvloop
        except ImportError:
            return fail("config error: server.uvloop: true, but uvloop is not installed")
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    app = create_app(config)
    host, port = config.server.host, config.server.port
    logging.getLogger("chatapp").info("serving on http://%s:%d", host, port)
    try:
        web.run_app(
            app,
            host=host,
            port=port,
            shutdown_timeout=config.server.shutdown_timeout,
            access_log=logging.getLogger("aiohttp.access") if config.server.access_log else None,
            access_log_format=ACCESS_LOG_FORMAT,
            print=None,
        )
    except StoreUnavailable as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    return 0


async def _createuser(config: Config, name: str, password: str, superuser: bool) -> int:
    from .accounts import Accounts, UsernameTaken, username_problem
    from .passwords import password_problems
    from .store import make_store

    problem = username_problem(name)
    if problem:
        return fail(f"username {name!r}: {problem}", 1)
    problems = password_problems(password, None, name)
    if problems:
        return fail("password: " + " ".join(problems), 1)
    store = make_store(config.redis.url)
    try:
        await store.wait_ready(config.redis.connect_timeout)
        await Accounts(store.raw, config.accounts.bcrypt_rounds).create(
            name, password, superuser=superuser
        )
    except StoreUnavailable as exc:
        return fail(str(exc))
    except UsernameTaken:
        return fail(f"username {name!r} is taken (names are unique regardless of case)", 1)
    finally:
        await store.close()
    kind = "superuser" if superuser else "user"
    print(f"created {kind} {name}")
    if config.is_memory_store:
        print("note: redis.url is memory://, which forgets everything when this command exits")
    return 0


def _ask_password() -> str | None:
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        return line.rstrip("\n") or None
    first = getpass.getpass("Password: ")
    second = getpass.getpass("Password (again): ")
    return first if first == second else None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return fail(f"config error: {exc}")
    if args.host:
        config = config.replace("server", host=args.host)
    if args.port is not None:
        config = config.replace("server", port=args.port)
    setup_logging(config)
    if args.command == "createuser":
        password = args.password if args.password is not None else _ask_password()
        if not password:
            return fail("the two passwords differ or are empty; nothing created", 1)
        return asyncio.run(_createuser(config, args.name, password, args.superuser))
    return serve(config)


if __name__ == "__main__":
    sys.exit(main())
