"""Room names are unique regardless of letter case: another casing finds the same room."""

from __future__ import annotations

import pytest

from chatapp.app import create_app

from .chat_client import Person
from .conftest import make_config


@pytest.fixture
async def base(aiohttp_server, redis_url) -> str:
    server = await aiohttp_server(create_app(make_config(redis_url)))
    return str(server.make_url("")).rstrip("/")


async def test_two_casings_are_one_room_named_as_first_created(base):
    async with Person(base, "ann") as ann, Person(base, "bob") as bob:
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
        rooms = await (await ann.http.get(base + "/api/rooms")).json()
        assert [r["name"] for r in rooms["rooms"]] == ["General"]


async def test_another_casing_of_a_rooms_page_redirects_to_it(base):
    async with Person(base, "ann") as ann:
        sock = await ann.join("General")
        await sock.next("history")
        response = await ann.http.get(base + "/chat/general/?at=3", allow_redirects=False)
        assert response.status == 302
        assert response.headers["Location"] == "/chat/General/?at=3"
        page = await ann.http.get(base + "/chat/General/", allow_redirects=False)
        assert page.status == 200


async def test_entering_another_casing_by_the_form_goes_to_the_room(base):
    async with Person(base, "ann") as ann:
        sock = await ann.join("General")
        await sock.next("history")
        page = await (await ann.http.get(base + "/chat/")).text()
        token = page.split('name="csrf_token" value="')[1].split('"')[0]
        response = await ann.http.post(
            base + "/chat/", data={"room": "gEnErAl", "csrf_token": token}, allow_redirects=False
        )
        assert response.headers["Location"] == "/chat/General/"
