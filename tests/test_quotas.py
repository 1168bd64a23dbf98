"""Quotas: sockets one person may hold, rooms one person may create per hour.

Past a quota the socket gets an `error` frame naming it, then a 1008 close;
nothing is created.
"""

from __future__ import annotations

import aiohttp

from .client import Client


async def test_socket_past_the_per_person_limit_gets_an_error_and_1008(start_server):
    base = await start_server(chat={"max_sockets_per_user": 3})
    async with Client(base, "ann") as ann, Client(base, "bob") as bob:
        kept = [await ann.join("lobby") for _ in range(3)]
        for sock in kept:
            await sock.next("history")
        extra = await ann.join("lobby")
        error = await extra.next("error")
        assert error["code"] == "too_many_sockets"
        assert "3" in error["detail"]
        assert await extra.closed() == aiohttp.WSCloseCode.POLICY_VIOLATION
        other = await bob.join("lobby")  # someone else is not affected
        await other.next("history")
        await kept[0].close()  # a closed socket frees its place
        again = await ann.join("lobby")
        assert (await again.next("history"))["type"] == "history"


async def test_rooms_past_the_hourly_quota_are_refused_and_not_created(start_server):
    base = await start_server(chat={"rooms_per_hour": 2})
    async with Client(base, "ann") as ann, Client(base, "bob") as bob:
        for room in ("first", "second"):
            sock = await ann.join(room)
            await sock.next("history")
        third = await ann.join("third")
        error = await third.next("error")
        assert error["code"] == "room_quota"
        assert await third.closed() == aiohttp.WSCloseCode.POLICY_VIOLATION
        listed = await ann.json("/api/rooms")
        assert sorted(r["name"] for r in listed["rooms"]) == ["first", "second"]
        existing = await ann.join("first")  # joining a room that exists costs nothing
        await existing.next("history")
        theirs = await bob.join("third")  # another person has their own quota
        await theirs.next("history")


async def test_room_form_past_the_quota_is_a_form_error_and_creates_nothing(start_server):
    base = await start_server(chat={"rooms_per_hour": 1})
    async with Client(base, "ann") as ann:
        sock = await ann.join("first")
        await sock.next("history")
        response = await ann.submit("/chat/", {"room": "second"})
        assert response.status == 429
        assert "limit of 1 new room per hour" in response.text
        again = await ann.submit("/chat/", {"room": "FIRST"})
        assert again.location == "/chat/first/"  # existing rooms stay open
