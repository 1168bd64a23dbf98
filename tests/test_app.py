"""The app factory: what start-up opens, it closes, even when a later step fails."""

from __future__ import annotations

import pytest
from aiohttp import web
from redis.exceptions import NoPermissionError

from chatapp import appkeys
from chatapp.app import create_app

from .conftest import make_config
from .support import RedisServer, until_sync


@pytest.fixture
def read_only_redis():
    """A private Redis and the URL of a user who may read but not write there."""
    server = RedisServer().start()
    admin = server.client()
    admin.acl_setuser(
        "reader",
        enabled=True,
        passwords=["+reader-pw"],
        commands=["+@read", "+ping", "+client", "+hello"],
        keys=["*"],
        channels=["*"],
    )
    yield admin, f"redis://reader:reader-pw@127.0.0.1:{server.port}/0"
    admin.close()
    server.cleanup()


async def test_a_start_that_fails_after_connecting_closes_the_store(read_only_redis):
    admin, url = read_only_redis
    # Redis answers, but the generated session secret cannot be stored there.
    app = create_app(make_config(url, session={"secret_key": ""}))
    runner = web.AppRunner(app)
    with pytest.raises(NoPermissionError):
        await runner.setup()
    await runner.cleanup()

    def readers() -> list[dict]:
        return [c for c in admin.client_list() if c.get("user") == "reader"]

    until_sync(lambda: not readers(), 5, what="the store's connections to close")


def test_every_app_key_names_the_class_of_what_it_holds(redis_url):
    app = create_app(make_config(redis_url))
    keys = [value for value in vars(appkeys).values() if isinstance(value, web.AppKey)]
    assert len(keys) == 10
    for key in keys:
        # `_t` is the type given to AppKey (aiohttp keeps it for repr and checkers).
        assert isinstance(key._t, type), key
        assert isinstance(app[key], key._t), key
