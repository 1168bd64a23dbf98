"""`python -m chatapp --config config.yaml check`: one line per finding; exit 0, 1 or 2."""

from __future__ import annotations

from .support import ROOT, app_env, free_port, run_cli

CONFIG = str(ROOT / "config.yaml")
PRODUCTION = {
    "CHATAPP_SESSION_SECURE": "true",
    "CHATAPP_SECURITY_ALLOWED_ORIGINS": "https://chat.example.com",
    "CHATAPP_SECURITY_TRUSTED_PROXIES": "127.0.0.1",
}


def check(env: dict[str, str]):
    return run_cli("--config", CONFIG, "check", env=env)


def test_a_production_config_is_ready(redis_url):
    result = check(app_env(redis_url, **PRODUCTION))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == ["chatapp check: ready for production"]


def test_a_real_redis_without_a_secret_key_needs_fixing(redis_url):
    result = check(app_env(redis_url, **PRODUCTION, CHATAPP_SESSION_SECRET_KEY=""))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("fix: session.secret_key is not set")
    assert lines[-1] == "chatapp check: 1 finding(s) to fix before production"


def test_an_unreachable_redis_cannot_run_and_is_named():
    url = f"redis://127.0.0.1:{free_port()}/0"
    env = app_env(url, **PRODUCTION, CHATAPP_REDIS_CONNECT_TIMEOUT="1")
    result = check(env)
    assert result.returncode == 2
    assert result.stdout.splitlines()[0].startswith(f"error: cannot reach Redis at {url}")


def test_a_bad_config_cannot_run_and_names_the_key(redis_url):
    result = check(app_env(redis_url, **PRODUCTION, CHATAPP_CHAT_HISTORY_LIMIT="lots"))
    assert result.returncode == 2
    assert "CHATAPP_CHAT_HISTORY_LIMIT (chat.history_limit)" in result.stderr


def test_the_shipped_first_run_config_lists_what_production_must_change(redis_url):
    """memory://, demo users on, cookies not Secure: each a line, exit 1."""
    env = app_env("memory://", CHATAPP_DEMO_SEED_USERS="true")
    env.pop("CHATAPP_SESSION_SECRET_KEY")
    result = check(env)
    assert result.returncode == 1
    fixes = [line for line in result.stdout.splitlines() if line.startswith("fix: ")]
    assert [line.split(":")[1].split()[0] for line in fixes] == [
        "redis.url",
        "session.secure",
        "demo.seed_users",
    ]


def test_a_demo_password_left_on_a_real_redis_needs_fixing(redis_url):
    seeded = run_cli(
        "--config",
        CONFIG,
        "createuser",
        "thanos",
        "--password",
        "Rd123456789",
        env=app_env(redis_url),
    )
    assert seeded.returncode == 0, seeded.stderr
    result = check(app_env(redis_url, **PRODUCTION))
    assert result.returncode == 1
    assert result.stdout.splitlines()[0].startswith("fix: user thanos still has its demo password")
