"""Fixtures: a private redis-server, the app built by the real factory, form helpers."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import pytest
import pytest_asyncio

from chatapp.app import create_app
from chatapp.config import Config, build_config

from . import figures
from .browser import chromium_browser, fresh_app
from .client import Client
from .support import RedisServer

# The place of each test in the collection, which every xdist worker makes the same:
# the figures summary is printed in this order, as a serial run records them.
_INDEX = pytest.StashKey[int]()

# Under pytest-xdist (addopts: -n, --dist loadgroup) the tests that start a Redis
# Cluster (six redis-servers each) run one after the other on one worker, and so do
# the failure tests (kills, restarts, SIGSTOP, measured recovery times): each group
# runs beside lighter tests only, never beside another test of its own group.
HEAVY_GROUPS = ("cluster", "failure")


def pytest_collection_modifyitems(config, items) -> None:
    if not config.pluginmanager.hasplugin("xdist"):
        return  # run with -p no:xdist: no groups (and no xdist_group marker to name)
    for item in items:
        for group in HEAVY_GROUPS:
            if item.get_closest_marker(group):
                item.add_marker(pytest.mark.xdist_group(group))
                break
        else:
            if item.get_closest_marker("browser"):
                # A browser module shares one app process and one Chromium: on one
                # worker it starts them once, not once per worker.
                item.add_marker(pytest.mark.xdist_group(f"browser-{item.module.__name__}"))


def pytest_collection_finish(session) -> None:
    for index, item in enumerate(session.items):
        item.stash[_INDEX] = index


def pytest_runtest_logreport(report) -> None:
    """Figures travel in the test's report (to the xdist controller, when there is one)."""
    if report.when == "teardown":
        figures.collect(report)


def pytest_terminal_summary(terminalreporter) -> None:
    """Print what the failure tests measured, so it shows in CI logs even without -s."""
    if hasattr(terminalreporter.config, "workerinput"):
        return  # an xdist worker: the controller prints the run's figures
    if figures.FIGURES:
        terminalreporter.write_sep("=", "chatapp failure figures")
        for line in figures.lines():
            terminalreporter.write_line(line)


@pytest.fixture
def figure(request):
    """figure(what, value): record a figure of this test for the end-of-run summary."""

    def record(what: str, value: object) -> None:
        index = request.node.stash.get(_INDEX, 0)
        figure = (index, what, figures.format_value(value))
        request.node.user_properties.append((figures.USER_PROPERTY, figure))

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
    """A Config for tests: fast bcrypt, fixed secret, no demo users, plus overrides.

    Every test person registers from 127.0.0.1: the registration throttle is
    raised (its own tests lower it again).
    """
    data: dict[str, dict] = {
        "redis": {"url": redis_url},
        "accounts": {"bcrypt_rounds": 4, "registrations_per_address": 100_000},
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
    """Build the app through create_app() in this process; return an anonymous Client on it."""

    async def factory(redis_url: str, **sections: dict) -> Client:
        app = create_app(make_config(redis_url, **sections))
        return Client(await aiohttp_client(app))

    return factory


@pytest.fixture
def start_server(aiohttp_server, redis_url):
    """start_server(**sections): the app in this process on a real port; its base URL.

    Tests send faster than people do: the message rate limit is raised unless a
    test sets its own.
    """

    async def start(**sections: dict) -> str:
        sections["chat"] = {"rate_limit_messages": 1_000_000, **sections.get("chat", {})}
        server = await aiohttp_server(create_app(make_config(redis_url, **sections)))
        return str(server.make_url("")).rstrip("/")

    return start


@pytest.fixture
async def client(app_factory, redis_url) -> Client:
    """An anonymous person on the app built with the test config and the private Redis."""
    return await app_factory(redis_url)


@pytest.fixture
async def people():
    """people(target, name=None): a Client on `target` (not signed in), closed at the end."""
    made: list[Client] = []

    def make(target, name: str | None = None) -> Client:
        made.append(Client(target, name))
        return made[-1]

    yield make
    for person in made:
        await person.close()


# -- the browser tests' fixtures: one Chromium for the run, one app per module --------
# Browser tests run on the session's event loop, the one the shared Chromium lives
# on: their modules are marked `pytest.mark.asyncio(loop_scope="session")`.


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def chromium():
    """One headless Chromium for the run (launching one takes about a second)."""
    async with chromium_browser() as browser:
        yield browser


@pytest_asyncio.fixture(loop_scope="session")
async def browser(chromium):
    """The shared Chromium; every context a test opened is closed after it, so no page
    of one test keeps polling or holding a socket during the next."""
    yield chromium
    for context in list(chromium.contexts):
        await context.close()


@pytest.fixture(scope="module")
def app(redis_server):
    """One app process for a module of browser tests (tests use names of their own)."""
    process = fresh_app(redis_server)
    yield process
    process.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def bots(app):
    """bots(name, base=app.url): a signed-in Client outside the browser, closed after."""
    made: list[Client] = []

    async def make(name: str, base: str | None = None) -> Client:
        made.append(Client(base or app.url, name))
        return await made[-1].sign_in()

    yield make
    for bot in made:
        await bot.close()


_rooms = itertools.count(1)


@pytest.fixture
def room(request) -> str:
    """A room name no other test of the run uses.

    App processes shared by several tests outlive the flush between tests; a
    fresh room name keeps what a worker remembers of a room out of the next test.
    """
    stem = re.sub(r"[^A-Za-z0-9_]", "_", request.node.name.removeprefix("test_"))[:48]
    return f"r{next(_rooms)}_{stem}"
