"""`/healthz` answers 200 while Redis answers, 503 naming Redis (and nothing more) when not."""

from .client import Client
from .conftest import make_config
from .support import RedisServer


async def test_healthz_ok(client):
    response = await client.get("/healthz")
    assert response.status == 200
    assert response.json() == {"status": "ok", "redis": "ok"}


async def test_healthz_ok_on_memory_store(app_factory):
    client = await app_factory("memory://")
    assert (await client.get("/healthz")).status == 200


async def test_healthz_503_while_redis_is_down_and_200_after(aiohttp_client):
    from chatapp.app import create_app

    server = RedisServer().start()
    try:
        client = Client(await aiohttp_client(create_app(make_config(server.url))))
        assert (await client.get("/healthz")).status == 200
        server.kill()
        response = await client.get("/healthz")
        assert response.status == 503
        # The failing part only: the URL and the error are for the log.
        assert response.json() == {"status": "unavailable", "redis": "unavailable"}
        server.start()
        assert (await client.get("/healthz")).status == 200
    finally:
        server.cleanup()
