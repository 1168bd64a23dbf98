"""History (PROTOCOL.md, "History and search"): the history API, the bounded first
`history` frame with `more`, a far-behind resume made whole through the API, and
the room page opened at a message (`?at=ID`). The app runs in this process on the
private Redis."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from .client import Client, Socket


@pytest.fixture
async def base(start_server) -> str:
    return await start_server()


async def post_many(sock: Socket, count: int, text=lambda i: f"message {i}") -> dict:
    """Send `count` messages, waiting for an echo every 40 (the sender reads its own
    echoes, so it never falls behind); return the last one stored."""
    last = {}
    for i in range(1, count + 1):
        if i % 40 == 0 or i == count:
            last = await sock.say(text(i), timeout=30)
        else:
            await sock.send(text(i))
    return last


async def history(person: Client, path: str, **query) -> dict:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    response = await person.get(f"{path}?{params}" if params else path)
    assert response.status == 200, (path, query, response.status, response.body)
    assert response.content_type == "application/json"
    return response.json()


async def test_history_pages_of_230_messages_come_as_100_100_30_oldest_first(base, room):
    async with Client(base, "pg_ann") as ann:
        sock = await ann.enter(room)
        last = await post_many(sock, 230)
        assert last["id"] == 230
        path = f"/api/chat/{room}/history"
        pages, before = [], None
        while True:
            query = {"limit": 100} if before is None else {"limit": 100, "before": before}
            page = await history(ann, path, **query)
            pages.append(page)
            if not page["more"]:
                break
            before = page["messages"][0]["id"]
        assert [len(p["messages"]) for p in pages] == [100, 100, 30]
        assert [p["more"] for p in pages] == [True, True, False]
        ids = [m["id"] for p in reversed(pages) for m in p["messages"]]
        assert ids == list(range(1, 231))  # consecutive, oldest first, each once
        assert pages[0]["messages"][-1]["text"] == "message 230"
        default = await history(ann, path)  # limit 50, the newest
        assert [m["id"] for m in default["messages"]] == list(range(181, 231))
        assert default["more"] is True


async def test_history_before_what_is_held_is_empty_with_no_more(start_server, room):
    base = await start_server(chat={"history_limit": 200})
    async with Client(base, "pg_ben") as ben:
        sock = await ben.enter(room)
        await post_many(sock, 230)  # ids 31..230 held
        path = f"/api/chat/{room}/history"
        oldest = await history(ben, path, before=131, limit=100)
        assert [m["id"] for m in oldest["messages"]] == list(range(31, 131))
        assert oldest["more"] is False  # 1..30 are no longer held
        for before in (31, 20, 1, 0):
            assert await history(ben, path, before=before) == {"messages": [], "more": False}
        newest = await history(ben, path, before=10**12, limit=3)
        assert [m["id"] for m in newest["messages"]] == [228, 229, 230]


@pytest.mark.parametrize(
    "query",
    [
        "before=abc",
        "before=-1",
        "before=%C2%B2",  # "²": a digit to str.isdigit(), not to int()
        "before=1.5",
        "limit=0",
        "limit=101",
        "limit=x",
        "limit=",
    ],
)
async def test_history_with_bad_input_is_a_400_json_error(base, query):
    async with Client(base, "pg_bad") as person:
        response = await person.get(f"/api/chat/lobby/history?{query}")
        assert response.status == 400
        assert response.content_type == "application/json"
        assert response.json()["error"]


async def test_history_of_a_private_room_of_others_is_404_as_a_page(base):
    async with Client(base, "pv_owner") as owner, Client(base, "pv_other") as other:
        await owner.submit("/chat/", {"room": "pv_vault", "private": "1"})
        sock = await owner.enter("pv_vault")
        await sock.say("members only")
        mine = await history(owner, "/api/chat/pv_vault/history")
        assert [m["text"] for m in mine["messages"]] == ["members only"]
        for path in ("/api/chat/pv_vault/history", "/api/chat/PV_VAULT/history"):
            response = await other.get(path)
            assert response.status == 404 and "members only" not in response.body
            assert response.json() == {"error": "There is no room here."}
        assert (await other.get("/api/chat/9bad/history")).json() == response.json()
        # Another casing of a room one may read is that room.
        assert (await history(owner, "/api/chat/PV_Vault/history")) == mine


async def test_history_needs_a_login_as_every_api(base):
    async with Client(base) as anonymous:
        for path in ("/api/chat/lobby/history", "/api/dm/anyone/history", "/api/search?q=x"):
            response = await anonymous.get(path)
            assert response.status == (await anonymous.get("/api/conversations")).status == 403


async def test_dm_history_is_the_two_peoples_only(base):
    async with Client(base, "dh_ann") as ann, Client(base, "dh_bob") as bob:
        async with Client(base, "dh_eve") as eve:
            sock = await ann.join_path("/ws/dm/dh_bob/")
            await sock.next("history")
            await sock.say("just for bob")
            for person, peer in ((ann, "dh_bob"), (bob, "DH_ANN")):
                page = await history(person, f"/api/dm/{peer}/history")
                assert [m["text"] for m in page["messages"]] == ["just for bob"]
            # Eve's conversations with either are her own (and empty).
            assert (await history(eve, "/api/dm/dh_bob/history"))["messages"] == []
            missing = await eve.get("/api/dm/dh_nobody/history")
            assert missing.status == 404 and missing.content_type == "application/json"


async def read_frame(sock: Socket, timeout: float) -> tuple[dict, int]:
    """The next text frame and its size in bytes."""
    msg = await asyncio.wait_for(sock.ws.receive(), timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
    return json.loads(msg.data), len(msg.data.encode())


async def test_a_newcomers_first_frame_is_bounded_and_a_far_behind_resume_is_gap_free(
    start_server, room, figure
):
    """The issue's case: 1,500 messages of 4,000 Cyrillic characters held (12 MB)."""
    base = await start_server(chat={"history_limit": 2000})
    buffer = 1_048_576  # chat.send_buffer_bytes, the default
    text = "Щ" * 3990
    async with Client(base, "fb_writer") as writer, Client(base, "fb_new") as newcomer:
        sock = await writer.enter(room)
        last = await post_many(sock, 1500, lambda i: f"{i:>9} {text}")
        assert last["id"] == 1500

        fresh = await newcomer.join(room)
        first, size = await read_frame(fresh, 30)
        figure("first frame bytes", size)
        assert first["type"] == "history"
        assert [m["id"] for m in first["messages"]] == list(range(1451, 1501))
        assert first["more"] is True and first["truncated"] is False
        assert size <= buffer // 2 + 1024  # the bound: half the send buffer, plus framing
        # The socket stays open while the room goes on: no 1013 for its own history.
        for i in range(20):
            await sock.send(f"live {i}")
        loop = asyncio.get_running_loop()
        watch_until, live = loop.time() + 10, []
        while (left := watch_until - loop.time()) > 0:
            try:
                frame, _ = await read_frame(fresh, left)
            except TimeoutError:
                break
            if frame["type"] == "message":
                live.append(frame["id"])
        assert live == list(range(1501, 1521))
        assert not fresh.ws.closed

        # A client that saw up to 100 resumes: the frame, then the API down to 101.
        back = await newcomer.join(room, after=100)
        resumed, _ = await read_frame(back, 30)
        assert resumed["more"] is True and resumed["truncated"] is False
        got = [m["id"] for m in resumed["messages"]]
        assert got == list(range(1471, 1521))
        before, more = got[0], resumed["more"]
        while more:
            page = await history(newcomer, f"/api/chat/{room}/history", before=before, limit=100)
            page_ids = [m["id"] for m in page["messages"] if m["id"] > 100]
            got = page_ids + got
            before = page["messages"][0]["id"]
            more = page["more"] and before > 101
        assert got == list(range(101, 1521))  # every missed message exactly once


async def test_a_resume_with_few_missed_messages_has_no_more(base, room):
    async with Client(base, "fm_ann") as ann:
        sock = await ann.enter(room)
        await post_many(sock, 80)
        back = await ann.enter(room, after=70)
        assert [m["id"] for m in back.history["messages"]] == list(range(71, 81))
        assert back.history["more"] is False
        fresh = await ann.enter(room)
        assert len(fresh.history["messages"]) == 50 and fresh.history["more"] is True


async def test_room_page_at_an_id_renders_the_messages_around_it(base, room):
    async with Client(base, "at_ann") as ann:
        sock = await ann.enter(room)
        await post_many(sock, 120)
        page = await ann.get(f"/chat/{room}/?at=40")
        assert page.status == 200
        assert 'data-id="15"' in page.body and 'data-id="65"' in page.body
        assert 'data-id="14"' not in page.body and 'data-id="66"' not in page.body
        assert 'data-last-id="65"' in page.body  # the newest the page holds
        newest = await ann.get(f"/chat/{room}/?at=119")  # near the end: the newest 51
        assert 'data-id="70"' in newest.body and 'data-id="120"' in newest.body
        assert 'data-id="69"' not in newest.body
        plain = await ann.get(f"/chat/{room}/")
        assert 'data-id="71"' in plain.body and 'data-id="70"' not in plain.body


@pytest.mark.parametrize("at", ["abc", "-3", "%C2%B2", ""])
async def test_room_page_with_a_bad_at_is_a_400_page(base, room, at):
    async with Client(base, "at_bad") as person:
        page = await person.get(f"/chat/{room}/?at={at}")
        assert page.status == 400
        assert "at must be a message id" in page.text
