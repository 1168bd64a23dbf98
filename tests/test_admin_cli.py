"""The operator commands disable, enable, setpassword and deleteroom, against a running app."""

from __future__ import annotations

import json

import pytest
import redis.asyncio as aioredis

from chatapp.accounts.audit import AuditLog
from chatapp.store.keys import Keys
from chatapp.web.pages import DISABLED

from .client import PASSWORD, Client
from .support import ROOT, AppProcess, app_env, free_port, run_cli
from .test_admin import create_user, logged_in, make_room, redis_call

NEW_PASSWORD = "Another-Pass-77"


def cli(redis_url: str, *args: str, input: str | None = None):
    """Run `python -m chatapp --config config.yaml ARGS` against the test Redis."""
    return run_cli(
        "--config", str(ROOT / "config.yaml"), *args, env=app_env(redis_url), input=input
    )


@pytest.fixture(scope="module")
def worker(redis_server):
    """One running app process on the private Redis (flushed per test by redis_url)."""
    app = AppProcess(redis_server.url).start()
    yield app
    app.stop()


@pytest.fixture
def browsers(people, worker):
    """browsers(name=None): a person (own cookie jar) on the running worker."""
    return lambda name=None: people(worker.url, name)


@pytest.fixture
async def ann(browsers, redis_url) -> Client:
    """ann, logged in on the running worker."""
    return await logged_in(browsers("ann"), redis_url)


# -- disable and enable ---------------------------------------------------------------


@pytest.mark.multiprocess
async def test_disable_command_closes_sockets_on_a_running_worker_with_1008(ann, redis_url, room):
    ws = await ann.enter(room)
    result = cli(redis_url, "disable", "ann")
    assert result.returncode == 0, result.stderr
    assert "disabled ann" in result.stdout
    assert await ws.closed(1.0) == 1008


@pytest.mark.multiprocess
async def test_disable_command_makes_the_session_anonymous(ann, redis_url):
    assert cli(redis_url, "disable", "ann").returncode == 0
    assert await ann.is_anonymous()


@pytest.mark.multiprocess
async def test_disable_command_refuses_login_with_the_message(ann, browsers, redis_url):
    cli(redis_url, "disable", "ANN")  # names are matched in any case
    page = await browsers("ann").login()
    assert page.status == 400
    assert DISABLED in page.text


@pytest.mark.multiprocess
async def test_enable_command_lets_the_user_log_in_again(ann, browsers, redis_url):
    cli(redis_url, "disable", "ann")
    result = cli(redis_url, "enable", "ann")
    assert result.returncode == 0, result.stderr
    assert "enabled ann" in result.stdout
    assert (await browsers("ann").login()).status == 302


async def test_disable_command_refuses_the_last_superuser(redis_url):
    await create_user(redis_url, "boss", superuser=True)
    result = cli(redis_url, "disable", "boss")
    assert result.returncode == 1
    assert "boss is the last superuser" in result.stderr
    assert await redis_call(redis_url, "hget", Keys.user("boss"), "disabled") == b"0"


@pytest.mark.parametrize("command", ["disable", "enable", "setpassword"])
async def test_unknown_user_exits_1_naming_it(redis_url, command):
    args = [command, "nobody"] + (["--password", NEW_PASSWORD] if command == "setpassword" else [])
    result = cli(redis_url, *args)
    assert result.returncode == 1
    assert "no user named 'nobody'" in result.stderr


@pytest.mark.parametrize("command", ["disable", "enable", "deleteroom"])
async def test_malformed_name_exits_1_with_the_rule(redis_url, command):
    result = cli(redis_url, command, "9lives")
    assert result.returncode == 1
    assert "not starting with a digit" in result.stderr


def test_unreachable_redis_exits_2_naming_the_url():
    url = f"redis://127.0.0.1:{free_port()}/0"
    env = app_env(url, CHATAPP_REDIS_CONNECT_TIMEOUT="0.5")
    result = run_cli("--config", str(ROOT / "config.yaml"), "disable", "ann", env=env)
    assert result.returncode == 2
    assert url in result.stderr


# -- setpassword ---------------------------------------------------------------------------


@pytest.mark.multiprocess
async def test_setpassword_with_the_option_changes_the_password(ann, browsers, redis_url):
    result = cli(redis_url, "setpassword", "ann", "--password", NEW_PASSWORD)
    assert result.returncode == 0, result.stderr
    assert (await browsers("ann").login(password=PASSWORD)).status == 400
    assert (await browsers("ann").login(password=NEW_PASSWORD)).status == 302


@pytest.mark.multiprocess
async def test_setpassword_reads_the_password_from_stdin_when_not_a_tty(ann, browsers, redis_url):
    result = cli(redis_url, "setpassword", "ann", input=NEW_PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    assert (await browsers("ann").login(password=NEW_PASSWORD)).status == 302


@pytest.mark.multiprocess
async def test_setpassword_logs_the_user_out_everywhere(ann, redis_url):
    cli(redis_url, "setpassword", "ann", "--password", NEW_PASSWORD)
    assert await ann.is_anonymous()


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("password", "This password is too common."),
        ("short1", "This password is too short."),
        ("12345678901", "This password is entirely numeric."),
        ("€" * 25, "This password is too long"),
    ],
)
async def test_setpassword_applies_the_password_rules(redis_url, password, problem):
    await create_user(redis_url, "ann")
    before = await redis_call(redis_url, "hget", Keys.user("ann"), "pw")
    result = cli(redis_url, "setpassword", "ann", "--password", password)
    assert result.returncode == 1
    assert problem in result.stderr
    assert await redis_call(redis_url, "hget", Keys.user("ann"), "pw") == before


def test_setpassword_refuses_an_empty_password_from_stdin(redis_url):
    result = cli(redis_url, "setpassword", "ann", input="\n")
    assert result.returncode == 1
    assert "nothing changed" in result.stderr


# -- deleteroom ---------------------------------------------------------------------------


@pytest.mark.multiprocess
async def test_deleteroom_command_closes_sockets_on_a_running_worker(ann, redis_url, room):
    ws = await ann.enter(room)
    result = cli(redis_url, "deleteroom", room)
    assert result.returncode == 0, result.stderr
    assert f"deleted room {room}" in result.stdout
    assert await ws.closed(1.0) == 1008


@pytest.mark.multiprocess
async def test_deleteroom_command_removes_the_history(ann, redis_url, room):
    ws = await ann.enter(room)
    await ws.say("hello")
    cli(redis_url, "deleteroom", room)
    await ws.closed(1.0)
    again = await ann.enter(room)
    assert again.history["messages"] == []
    await again.close()


async def test_deleteroom_of_an_unknown_room_exits_1(redis_url):
    result = cli(redis_url, "deleteroom", "nowhere")
    assert result.returncode == 1
    assert "no room named 'nowhere'" in result.stderr


# -- the audit log -------------------------------------------------------------------------


async def test_commands_are_written_to_the_audit_log(redis_url):
    await create_user(redis_url, "ann")
    await make_room(redis_url, "lobby")
    for args in (
        ("disable", "ann"),
        ("enable", "ann"),
        ("setpassword", "ann", "--password", NEW_PASSWORD),
        ("deleteroom", "lobby"),
    ):
        assert cli(redis_url, *args).returncode == 0
    entries = [json.loads(e) for e in await redis_call(redis_url, "lrange", Keys.audit, 0, -1)]
    assert [(e["action"], e["target"]) for e in entries] == [
        ("deleteroom", "lobby"),
        ("setpassword", "ann"),
        ("enable", "ann"),
        ("disable", "ann"),
    ]
    assert all(e["actor"].startswith("command line (") for e in entries)


async def test_createuser_is_written_to_the_audit_log(redis_url):
    result = cli(redis_url, "createuser", "zoe", "--password", NEW_PASSWORD, "--superuser")
    assert result.returncode == 0, result.stderr
    client = aioredis.from_url(redis_url)
    try:
        entries = await AuditLog(client).recent()
    finally:
        await client.aclose()
    assert [(e.action, e.target, e.detail) for e in entries] == [("createuser", "zoe", "superuser")]
    assert entries[0].actor.startswith("command line (")
