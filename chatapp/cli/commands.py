"""Command line: serve the app, or manage users without a browser."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys

from chatapp.config import Config, ConfigError, load_config
from chatapp.logs import setup_logging
from chatapp.store.client import StoreUnavailable

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
    disable = commands.add_parser(
        "disable", help="disable a user: end their sessions, close their sockets everywhere"
    )
    disable.add_argument("name")
    enable = commands.add_parser("enable", help="let a disabled user log in again")
    enable.add_argument("name")
    setpw = commands.add_parser(
        "setpassword", help="set a user's password (and log them out everywhere)"
    )
    setpw.add_argument("name")
    setpw.add_argument("--password", help="the password (prompted without echo when absent)")
    deleteroom = commands.add_parser(
        "deleteroom", help="delete a room: close its sockets everywhere, remove its history"
    )
    deleteroom.add_argument("room")
    return parser


def fail(message: str, status: int = 2) -> int:
    print(f"chatapp: {message}", file=sys.stderr)
    return status


def serve(config: Config) -> int:
    from aiohttp import web

    from chatapp.app import create_app

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
    from chatapp.accounts.passwords import password_problems
    from chatapp.accounts.users import Accounts, UsernameTaken
    from chatapp.names import username_problem
    from chatapp.store.client import make_store

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


def _cli_actor() -> str:
    """Who the audit log names for an action from the command line."""
    try:
        who = getpass.getuser()
    except (OSError, KeyError):  # no login name (a bare container)
        who = "unknown"
    return f"command line ({who})"


async def _admin_command(config: Config, command: str, target: str, password: str = "") -> int:
    """disable, enable, setpassword or deleteroom, as on the admin page (and audited)."""
    from redis.exceptions import RedisError

    from chatapp.accounts.passwords import password_problems
    from chatapp.accounts.users import Accounts, LastSuperuser
    from chatapp.admin import AdminActions, NotFound
    from chatapp.chat.rooms import RoomDirectory
    from chatapp.names import room_problem, username_problem
    from chatapp.store.client import make_store

    problem = room_problem(target) if command == "deleteroom" else username_problem(target)
    if problem:
        return fail(f"{'room' if command == 'deleteroom' else 'username'} {target!r}: {problem}", 1)
    if command == "setpassword":
        problems = password_problems(password, None, target)
        if problems:
            return fail("password: " + " ".join(problems), 1)
    store = make_store(config.redis.url)
    try:
        await store.wait_ready(config.redis.connect_timeout)
        accounts = Accounts(store.raw, config.accounts.bcrypt_rounds)
        directory = RoomDirectory(store.raw, config.chat.empty_room_ttl, config.chat.rooms_per_hour)
        admin = AdminActions(
            store.raw, accounts, directory, session_cookie_name=config.session.cookie_name
        )
        actor = _cli_actor()
        if command == "disable":
            user = await admin.disable_user(actor, target)
            done = f"disabled {user.username}: sessions ended, sockets closed on every worker"
        elif command == "enable":
            user = await admin.enable_user(actor, target)
            done = f"enabled {user.username}"
        elif command == "setpassword":
            user = await admin.set_password(actor, target, password)
            done = f"password of {user.username} changed; their sessions ended"
        else:
            await admin.delete_room(actor, target)
            done = f"deleted room {target}: sockets closed on every worker, history removed"
    except StoreUnavailable as exc:
        return fail(str(exc))
    except RedisError as exc:
        return fail(f"Redis at {store.display_url}: {exc}")
    except NotFound as exc:
        return fail(str(exc), 1)
    except LastSuperuser:
        return fail(f"{target} is the last superuser and cannot be disabled", 1)
    finally:
        await store.close()
    print(done)
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
    setup_logging(config.log.level)
    if args.command == "createuser":
        password = args.password if args.password is not None else _ask_password()
        if not password:
            return fail("the two passwords differ or are empty; nothing created", 1)
        return asyncio.run(_createuser(config, args.name, password, args.superuser))
    if args.command in ("disable", "enable"):
        return asyncio.run(_admin_command(config, args.command, args.name))
    if args.command == "setpassword":
        password = args.password if args.password is not None else _ask_password()
        if not password:
            return fail("the two passwords differ or are empty; nothing changed", 1)
        return asyncio.run(_admin_command(config, "setpassword", args.name, password))
    if args.command == "deleteroom":
        return asyncio.run(_admin_command(config, "deleteroom", args.room))
    return serve(config)
