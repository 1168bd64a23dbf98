"""Command line: serve the app, or run an admin action without a browser.

The admin actions are one table, `COMMANDS`: each names its help, its
arguments and the async action it runs through `chatapp.admin.AdminActions`,
the same code (and the same audit log) as the admin page. Exit status: 0
done, 1 refused input (the message says why), 2 bad config or unreachable
Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chatapp.config import Config, ConfigError, load_config
from chatapp.logs import setup_logging
from chatapp.store.client import StoreUnavailable

if TYPE_CHECKING:  # imported when a command runs: `--help` and config errors stay quick
    from chatapp.admin import AdminActions

DESCRIPTION = "Command line: serve the app, or manage users without a browser."
ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tfs'
MEMORY_NOTE = "note: redis.url is memory://, which forgets everything when this command exits"


def fail(message: str, status: int = 2) -> int:
    print(f"chatapp: {message}", file=sys.stderr)
    return status


# -- serve -------------------------------------------------------------------------


def serve(config: Config) -> int:
    from aiohttp import web

    from chatapp.app import create_app

    if config.server.uvloop:
        try:
            import uvloop
        except ImportError:
            return fail("config error: server.uvloop: true, but uvloop is not installed")
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        app = create_app(config)
    except ConfigError as exc:
        return fail(f"config error: {exc}")
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


# -- the admin commands --------------------------------------------------------------

Action = Callable[["AdminActions", str, argparse.Namespace], Awaitable[str]]


@dataclass(frozen=True)
class Argument:
    """One `add_argument` call: a positional name or an option."""

    flag: str
    help: str | None = None
    store_true: bool = False

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        options: dict[str, Any] = {"help": self.help} if self.help else {}
        if self.store_true:
            options["action"] = "store_true"
        parser.add_argument(self.flag, **options)


@dataclass(frozen=True)
class Command:
    """An admin command: `action(admin, actor, args)` returns the line to print when done."""

    help: str
    arguments: tuple[Argument, ...]
    action: Action
    # What the argument `name` or `room` must be: "username" or "room".
    target: str = "username"
    # Takes --password (asked for when absent), and says what did not happen without one.
    asks_password: bool = False
    nothing_done: str = "nothing changed"


async def _createuser(admin: AdminActions, actor: str, args: argparse.Namespace) -> str:
    user = await admin.create_user(actor, args.name, args.password, superuser=args.superuser)
    return f"created {'superuser' if user.is_superuser else 'user'} {user.username}"


async def _disable(admin: AdminActions, actor: str, args: argparse.Namespace) -> str:
    user, ended = await admin.disable_user(actor, args.name)
    return f"disabled {user.username}: {_sessions_ended(ended)}, sockets closed on every worker"


def _sessions_ended(count: int) -> str:
    """How many sessions an action ended, as it happened."""
    if count == 0:
        return "no session was open"
    return "1 session ended" if count == 1 else f"{count} sessions ended"


async def _logout(admin: AdminActions, actor: str, args: argparse.Namespace) -> str:
    user, ended = await admin.log_out_everywhere(actor, args.name)
    return f"logged {user.username} out everywhere: {_sessions_ended(ended)}"


async def _enable(admin: AdminActions, actor: str, args: argparse.Namespace) -> str:
    user = await admin.enable_user(actor, args.name)
    return f"enabled {user.username}"


async def _setpassword(admin: AdminActions, actor: str, args: argparse.Namespace) -> str:
    user, ended = await admin.set_password(actor, args.name, args.password)
    return f"password of {user.username} changed; {_sessions_ended(ended)}"


async def _deleteroom(admin: AdminActions, actor: str, args: argparse.Namespace) -> str:
    await admin.delete_room(actor, args.room)
    return f"deleted room {args.room}: sockets closed on every worker, history removed"


NAME = Argument("name")
PASSWORD = Argument("--password", "the password (prompted without echo when absent)")

COMMANDS: dict[str, Command] = {
    "createuser": Command(
        "create a user",
        (NAME, PASSWORD, Argument("--superuser", "give admin rights", store_true=True)),
        _createuser,
        asks_password=True,
        nothing_done="nothing created",
    ),
    "disable": Command(
        "disable a user: end their sessions, close their sockets everywhere", (NAME,), _disable
    ),
    "enable": Command("let a disabled user log in again", (NAME,), _enable),
    "logout": Command(
        "log a user out everywhere: end every session, close their sockets", (NAME,), _logout
    ),
    "setpassword": Command(
        "set a user's password (and log them out everywhere)",
        (NAME, PASSWORD),
        _setpassword,
        asks_password=True,
    ),
    "deleteroom": Command(
        "delete a room: close its sockets everywhere, remove its history",
        (Argument("room"),),
        _deleteroom,
        target="room",
    ),
}


def _cli_actor() -> str:
    """Who the audit log names for an action from the command line."""
    try:
        who = getpass.getuser()
    except (OSError, KeyError):  # no login name (a bare container)
        who = "unknown"
    return f"command line ({who})"


def _input_problem(command: Command, args: argparse.Namespace) -> str | None:
    """Why the arguments are refused (exit 1), checked before Redis is reached."""
    from chatapp.accounts.passwords import password_problems
    from chatapp.names import room_problem, username_problem

    if command.target == "room":
        problem = room_problem(args.room)
        return f"room {args.room!r}: {problem}" if problem else None
    problem = username_problem(args.name)
    if problem:
        return f"username {args.name!r}: {problem}"
    if command.asks_password:
        problems = password_problems(args.password, None, args.name)
        if problems:
            return "password: " + " ".join(problems)
    return None


async def _run_action(config: Config, command: Command, args: argparse.Namespace) -> int:
    """Connect, run the command's action as the admin page would (audited), report."""
    from redis.exceptions import RedisError

    from chatapp.accounts.users import Accounts, LastSuperuser, UsernameTaken
    from chatapp.admin import AdminActions, NotFound
    from chatapp.chat.rooms import RoomDirectory
    from chatapp.store.client import make_store

    store = make_store(config.redis.url)
    try:
        await store.wait_ready(config.redis.connect_timeout)
        accounts = Accounts(store.raw, config.accounts.bcrypt_rounds)
        directory = RoomDirectory(store.raw, config.chat.empty_room_ttl, config.chat.rooms_per_hour)
        admin = AdminActions(
            store.raw, accounts, directory, session_cookie_name=config.session.cookie_name
        )
        done = await command.action(admin, _cli_actor(), args)
    except StoreUnavailable as exc:
        return fail(str(exc))
    except RedisError as exc:
        return fail(f"Redis at {store.display_url}: {exc}")
    except NotFound as exc:
        return fail(str(exc), 1)
    except UsernameTaken:
        return fail(f"username {args.name!r} is taken (names are unique regardless of case)", 1)
    except LastSuperuser:
        return fail(f"{args.name} is the last superuser and cannot be disabled", 1)
    finally:
        await store.close()
    print(done)
    if config.is_memory_store:
        print(MEMORY_NOTE)
    return 0


def run_command(config: Config, name: str, args: argparse.Namespace) -> int:
    """Run the admin command `name` with its parsed `args`; return the exit status."""
    command = COMMANDS[name]
    if command.asks_password:
        if args.password is None:
            args.password = _ask_password()
        if not args.password:
            return fail(f"the two passwords differ or are empty; {command.nothing_done}", 1)
    problem = _input_problem(command, args)
    if problem:
        return fail(problem, 1)
    return asyncio.run(_run_action(config, command, args))


def _ask_password() -> str | None:
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        return line.rstrip("\n") or None
    first = getpass.getpass("Password: ")
    second = getpass.getpass("Password (again): ")
    return first if first == second else None


# -- the parser and main --------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chatapp", description=DESCRIPTION)
    parser.add_argument("--config", default="config.yaml", help="path of config.yaml")
    parser.add_argument("--host", help="listen address (overrides server.host)")
    parser.add_argument("--port", type=int, help="listen port (overrides server.port)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.add_parser("serve", help="serve the app (the default)")
    subparsers.add_parser(
        "check", help="check a deployment: one line per finding; exit 0, 1 (fix) or 2 (cannot run)"
    )
    for name, command in COMMANDS.items():
        sub = subparsers.add_parser(name, help=command.help)
        for argument in command.arguments:
            argument.add_to(sub)
    return parser


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
    if args.command in COMMANDS:
        return run_command(config, args.command, args)
    if args.command == "check":
        from chatapp.cli.check import run_check

        return run_check(config)
    return serve(config)
