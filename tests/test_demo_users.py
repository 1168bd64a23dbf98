"""Demo accounts on a real Redis (issue 13, item 12).

Seen: setting only CHATAPP_REDIS_URL with the shipped config.yaml (which has
`demo.seed_users: true`) created admin/admin as a superuser on a real Redis,
with nothing but a log warning. Now that needs `demo.allow_on_redis` too,
and the admin page says so while a demo password is unchanged.
"""

from __future__ import annotations

import pytest

from chatapp.accounts import passwords
from chatapp.app import create_app
from chatapp.appkeys import admin_key
from chatapp.config import ConfigError

from .conftest import make_config
from .support import ROOT, GunicornProcess, app_env, free_port, run_cli

NEW_PASSWORD = "Sturdy-Pass-42"


def test_demo_users_need_an_opt_in_on_a_real_redis(redis_url, redis_server):
    env = app_env(redis_url)
    del env["CHATAPP_DEMO_SEED_USERS"]  # only the URL is set: the shipped file seeds
    result = run_cli("--config", str(ROOT / "config.yaml"), "--port", str(free_port()), env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("chatapp: config error: demo.seed_users is on with a real Redis")
    assert "demo.allow_on_redis" in lines[0] and "CHATAPP_DEMO_ALLOW_ON_REDIS" in lines[0]
    assert not redis_server.client().exists("chatapp:{users}:admin")


def test_gunicorn_stops_with_the_same_line(redis_url, redis_server):
    server = GunicornProcess(redis_url, workers=1)
    del server.env["CHATAPP_DEMO_SEED_USERS"]
    server.launch()
    try:
        assert server.wait(30) == 3  # the worker failed to boot, so the master stops
    finally:
        server.stop()
    log = server.log()
    assert "chatapp: config error: demo.seed_users is on with a real Redis" in log
    assert "Traceback" not in log
    assert not redis_server.client().exists("chatapp:{users}:admin")


def test_the_admin_commands_still_run_with_the_shipped_file(redis_url):
    """They seed nothing, and `setpassword admin` is how one fixes a seeded store."""
    env = app_env(redis_url)
    del env["CHATAPP_DEMO_SEED_USERS"]
    args = ("--config", str(ROOT / "config.yaml"), "createuser", "una", "--password", NEW_PASSWORD)
    assert run_cli(*args, env=env).returncode == 0


def test_the_app_factory_refuses_demo_users_on_a_real_redis_without_opt_in(redis_url):
    with pytest.raises(ConfigError, match=r"demo\.allow_on_redis"):
        create_app(make_config(redis_url, demo={"seed_users": True}))
    # memory:// is the shipped first run: no opt-in needed.
    create_app(make_config("memory://", demo={"seed_users": True}))
    create_app(make_config(redis_url, demo={"seed_users": True, "allow_on_redis": True}))


@pytest.fixture
def bcrypt_checks(monkeypatch) -> list[str]:
    """Every bcrypt check the app runs (the hash it was checked against)."""
    seen: list[str] = []
    real = passwords.check_password

    def counting(password: str, hashed: str) -> bool:
        seen.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(passwords, "check_password", counting)
    return seen


def _banner(page: str) -> str | None:
    start = page.find('id="demo-warning"')
    if start < 0:
        return None
    return page[start : page.index("</div>", start)]


async def test_admin_page_warns_while_a_demo_password_is_unchanged(
    app_factory, redis_url, bcrypt_checks
):
    client = await app_factory(redis_url, demo={"seed_users": True, "allow_on_redis": True})
    assert (await client.login("admin", "admin")).status == 302
    admin = client.app[admin_key]

    before = len(bcrypt_checks)
    banner = _banner((await client.get("/admin/")).text)
    assert banner is not None, "no demo warning on the admin page"
    for name in ("admin", "thanos", "ironman"):
        assert f"<bdi>{name}</bdi>" in banner
    assert "as a superuser" in banner
    assert len(bcrypt_checks) - before == 3  # one check per demo user ...

    before = len(bcrypt_checks)
    for _ in range(5):
        assert _banner((await client.get("/admin/")).body) is not None
    assert len(bcrypt_checks) == before  # ... and none again while nothing changed

    await admin.set_password("test", "thanos", NEW_PASSWORD)
    before = len(bcrypt_checks)
    banner = _banner((await client.get("/admin/")).body)
    assert "<bdi>thanos</bdi>" not in banner and "<bdi>ironman</bdi>" in banner
    assert len(bcrypt_checks) - before == 1  # only the changed hash is checked

    await admin.set_password("test", "ironman", NEW_PASSWORD)
    await admin.set_password("test", "admin", NEW_PASSWORD)  # ends this session too
    assert (await client.login("admin", NEW_PASSWORD)).status == 302
    page = (await client.get("/admin/")).body
    assert "Users" in page and _banner(page) is None
