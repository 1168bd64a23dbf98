"""Fixtures: a private redis-server, the app built by the real factory, form helpers."""

from __future__ import annotations

import html
from collections.abc import Iterator

import pytest
from aiohttp.test_utils import TestClient

from chatapp.app import create_app
from chatapp.config import Config, build_config

from . import figures
from .support import CSRF_RE, RedisServer

PASSWORD = "Sturdy-Pass-42"


def pytest_terminal_summary(terminalreporter) -> None:
    """Print what the failure tests measured, so it shows in CI logs even without -s."""
    if figures.FIGURES:
        terminalreporter.write_sep("=", "chatapp failure figures")
        for line in figures.lines():
            terminalreporter.write_line(line)


@pytest.fixture
def figure(request):
    """figure(what, value): record a figure of this test for the end-of-run summary."""

    def record(what: str, value: object) -> None:
        figures.record(request.node.name, what, value)

    return record


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private redis-server for the whole run; tests that kill it use their own."""
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The private Redis, emptied before each test."""
    client = redis_server.client()
    client.flushall()
    client.close()
    yield redis_server.url


def make_config(redis_url: str, **sections: dict) -> Config:
    """A Config for tests: fast bcrypt, fixed secret, no demo users, plus overrides."""
    data: dict[str, dict] = {
        "redis": {"url": redis_url},
        "accounts": {"bcrypt_rounds": 4},
        "session": {"secret_key": "test-secret"},
        "demo": {"seed_users": False},
        "server": {"access_log": False},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return build_config(data, environ={})


@pytest.fixture(params=["redis", "memory"])
def any_store_url(request, redis_server: RedisServer) -> str:
    """Run a test on both stores: the real Redis and the embedded memory://."""
    if request.param == "memory":
        return "memory://"
    client = redis_server.client()
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def app_factory(aiohttp_client):
    """Build the app through create_app() and return a test client for it."""

    async def factory(redis_url: str, **sections: dict) -> TestClient:
        app = create_app(make_config(redis_url, **sections))
        return await aiohttp_client(app)

    return factory


@pytest.fixture
async def client(app_factory, redis_url) -> TestClient:
    return await app_factory(redis_url)


class AuthActions:
    """Register, log in and out through the real forms, as a browser would."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    async def csrf(self, path: str = "/login/") -> str:
        response = await self.client.get(path)
        match = CSRF_RE.search(await response.text())
        assert match, f"no csrf_token on {path}"
        return match.group(1)

    async def register(self, username: str, password: str = PASSWORD, password2=None, **extra):
        token = await self.csrf("/register/")
        data = {
            "username": username,
            "password": password,
            "password2": password if password2 is None else password2,
            "csrf_token": token,
        }
        data.update(extra)
        return await self.client.post("/register/", data=data, allow_redirects=False)

    async def login(self, username: str, password: str = PASSWORD, next_url: str | None = None):
        token = await self.csrf("/login/")
        path = "/login/" if next_url is None else f"/login/?next={next_url}"
        return await self.client.post(
            path,
            data={"username": username, "password": password, "csrf_token": token},
            allow_redirects=False,
        )

    async def logout(self):
        response = await self.client.get("/chat/")
        token = CSRF_RE.search(await response.text()).group(1)
        return await self.client.post("/logout/", data={"csrf_token": token}, allow_redirects=False)

    def use_cookie(self, value: str) -> None:
        """Replace the client's cookies with one session cookie (replay an old one)."""
        jar = self.client.session.cookie_jar
        jar.clear()
        jar.update_cookies({"chatapp_session": value}, self.client.make_url("/"))

    def session_cookie(self) -> str | None:
        for cookie in self.client.session.cookie_jar:
            if cookie.key == "chatapp_session":
                return cookie.value
        return None


@pytest.fixture
def auth(client) -> AuthActions:
    return AuthActions(client)


async def page_text(response) -> str:
    """The response body with HTML entities decoded, for assertions on messages."""
    return html.unescape(await response.text())
