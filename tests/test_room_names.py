"""Room names are unique regardless of letter case: another casing finds the same room."""

from __future__ import annotations

import pytest

from chatapp.app import create_app

from .client import Client
from .conftest import make_config


@pytest.fixture
async def base(aiohttp_server, redis_url) -> str:
    server = await aiohttp_server(create_app(make_config(redis_url)))
    return str(server.make_url("")).rstrip("/")


async def test_two_casings_are_one_room_named_as_first_created(base):
    async with Client(base, "ann") as ann, Client(base, "bob") as bob:
        first = await ann.join("General")
        await first.next("history")
        await first.send("hello")
        await first.next("message")
        other = await bob.join("GENERAL")
        history = await other.next("history")
        assert [(m["room"], m["text"]) for m in history["messages"]] == [("General", "hello")]
        await other.send("same room")
        got = await first.next("message")
        assert (got["room"], got["text"]) == ("General", "same room")
        rooms = await ann.json("/api/rooms")
        assert [r["name"] for r in rooms["rooms"]] == ["General"]


async def test_another_casing_of_a_rooms_page_redirects_to_it(base):
    async with Client(base, "ann") as ann:
        sock = await ann.join("General")
        await sock.next("history")
        response = await ann.get("/chat/general/?at=3")
        assert response.status == 302
        assert response.location == "/chat/General/?at=3"
        page = await ann.get("/chat/General/")
        assert page.status == 200


async def test_entering_another_casing_by_the_form_goes_to_the_room(base):
    async with Client(base, "ann") as ann:
        sock = await ann.join("General")
        await sock.next("history")
        response = await ann.submit("/chat/", {"room": "gEnErAl"})
        assert response.location == "/chat/General/"
