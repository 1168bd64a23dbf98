"""The command line: serve, exit status 2 for bad config or unreachable Redis, createuser."""

import signal
import time

from .client import Client
from .support import ROOT, AppProcess, RedisServer, app_env, free_port, run_cli


def test_unknown_key_stops_startup_with_status_2(tmp_path, redis_url):
    path = tmp_path / "config.yaml"
    path.write_text("chat:\n  histroy_limit: 5\n")
    result = run_cli("--config", str(path), env=app_env(redis_url))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["chatapp: config error: chat.histroy_limit: unknown config key"]


def test_wrong_type_from_env_stops_startup_naming_key_and_value(redis_url):
    env = app_env(redis_url, CHATAPP_SERVER_PORT="http")
    result = run_cli("--config", str(ROOT / "config.yaml"), env=env)
    assert result.returncode == 2
    assert "CHATAPP_SERVER_PORT (server.port): expected an integer, got 'http'" in result.stderr


def test_unreachable_redis_exits_2_within_10s_naming_the_url():
    url = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    result = run_cli(
        "--config", str(ROOT / "config.yaml"), "--port", str(free_port()), env=app_env(url)
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 2
    assert f"cannot reach Redis at {url}" in result.stderr
    assert elapsed < 10


async def test_serve_logs_startup_and_exits_0_on_sigterm(redis_url):
    app = AppProcess(redis_url).start()
    try:
        async with Client(app.url) as anonymous:
            assert (await anonymous.get("/healthz")).status == 200
    finally:
        app.signal(signal.SIGTERM)
        assert app.wait() == 0
        app.stop()
    log = app.log()
    assert f"serving on http://127.0.0.1:{app.port}" in log
    assert f"store {redis_url}, 1 worker" in log
    assert '"GET /healthz HTTP/1.1" 200' in log  # one line per request


async def test_createuser_then_login(app_factory, redis_url):
    result = run_cli(
        "--config",
        str(ROOT / "config.yaml"),
        "createuser",
        "Quentin",
        "--password",
        "Sturdy-Pass-42",
        "--superuser",
        env=app_env(redis_url),
    )
    assert result.returncode == 0, result.stderr
    assert "created superuser Quentin" in result.stdout
    client = await app_factory(redis_url)
    response = await client.login("quentin", "Sturdy-Pass-42")
    assert response.status == 302
    assert 'href="/admin/"' in (await client.get("/chat/")).body


def test_createuser_reads_password_from_stdin_when_not_a_tty(redis_url):
    result = run_cli(
        "--config",
        str(ROOT / "config.yaml"),
        "createuser",
        "rosa",
        env=app_env(redis_url),
        input="Sturdy-Pass-42\n",
    )
    assert result.returncode == 0, result.stderr
    assert "created user rosa" in result.stdout


def test_createuser_applies_password_rules(redis_url):
    result = run_cli(
        "--config",
        str(ROOT / "config.yaml"),
        "createuser",
        "sam",
        "--password",
        "password",
        env=app_env(redis_url),
    )
    assert result.returncode == 1
    assert "This password is too common." in result.stderr


def test_createuser_refuses_taken_name(redis_url):
    env = app_env(redis_url)
    args = ("--config", str(ROOT / "config.yaml"), "createuser")
    assert run_cli(*args, "tess", "--password", "Sturdy-Pass-42", env=env).returncode == 0
    result = run_cli(*args, "TESS", "--password", "Sturdy-Pass-42", env=env)
    assert result.returncode == 1
    assert "taken" in result.stderr


async def test_demo_users_are_seeded_with_a_warning():
    server = RedisServer().start()
    # A real Redis: seeding needs the opt-in as well (test_demo_users.py).
    app = AppProcess(
        server.url, CHATAPP_DEMO_SEED_USERS="true", CHATAPP_DEMO_ALLOW_ON_REDIS="true"
    ).start()
    try:
        for name, password in (
            ("admin", "admin"),
            ("thanos", "Rd123456789"),
            ("ironman", "Rd123456789"),
        ):
            async with Client(app.url) as person:
                assert (await person.login(name, password)).status == 302, name
        assert "demo.seed_users is on" in app.log()
    finally:
        app.stop()
        server.cleanup()
