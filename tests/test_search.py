"""Search (PROTOCOL.md, "History and search"): every word in any order and case, only
in conversations the person can read, deleted messages never, edited ones by their
present text; bad input is a 400 JSON error. The app runs in this process on the
private Redis."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from chatapp.chat.search import match, query_words

from .client import Client


@pytest.fixture
async def base(start_server) -> str:
    return await start_server()


async def search(person: Client, q: str, **extra) -> list[dict]:
    query = "&".join([f"q={quote(q)}", *(f"{k}={quote(str(v))}" for k, v in extra.items())])
    response = await person.get(f"/api/search?{query}")
    assert response.status == 200, (q, response.status, response.body)
    return response.json()["results"]


def texts(results: list[dict]) -> list[str]:
    return [r["text"] for r in results]


async def test_every_word_in_any_order_and_case_matches_newest_first(base):
    async with Client(base, "sw_ann") as ann:
        lobby = await ann.enter("sw_lobby")
        await lobby.say("Deploy the RELEASE tomorrow")
        await lobby.say("release notes only")
        other = await ann.enter("sw_other")
        await other.say("tomorrow we deploy, release after lunch")
        await lobby.say("Привет, МИР! Встреча в Straße 5")
        found = await search(ann, "release TOMORROW deploy")
        assert texts(found) == [
            "tomorrow we deploy, release after lunch",
            "Deploy the RELEASE tomorrow",
        ]
        first = found[0]
        assert (first["room"], first["username"], first["kind"]) == ("sw_other", "sw_ann", "room")
        assert first["url"] == f"/chat/sw_other/?at={first['id']}"
        assert first["title"] == "sw_other" and first["ts"] > 0
        assert texts(await search(ann, "мир привет")) == ["Привет, МИР! Встреча в Straße 5"]
        assert texts(await search(ann, "STRASSE")) == ["Привет, МИР! Встреча в Straße 5"]
        assert await search(ann, "release nowhere") == []
        assert texts(await search(ann, "release", limit=1)) == [first["text"]]
        # Narrowed to one room, in any casing of its name.
        assert texts(await search(ann, "release", room="SW_LOBBY")) == [
            "release notes only",
            "Deploy the RELEASE tomorrow",
        ]


@pytest.mark.parametrize("q", [".*", "[", "%", "a_b", "\\d+", "(x|y)", '"quoted"', "50/50"])
async def test_query_characters_mean_only_themselves(base, q):
    async with Client(base, "sl_ann") as ann:
        sock = await ann.enter("sl_room")
        await sock.say(f"look: {q} here")
        await sock.say("plain words, nothing special at all 1 2 3")
        assert texts(await search(ann, q)) == [f"look: {q} here"]


async def test_a_private_room_is_searched_by_its_members_only(base):
    async with (
        Client(base, "sp_owner") as owner,
        Client(base, "sp_member") as member,
        Client(base, "sp_stranger") as stranger,
    ):
        await owner.submit("/chat/", {"room": "sp_vault", "private": "1"})
        await owner.submit("/chat/sp_vault/members/", {"username": "sp_member"})
        sock = await owner.enter("sp_vault")
        await sock.say("the vault code is kumquat")
        for person in (owner, member):
            assert texts(await search(person, "KUMQUAT")) == ["the vault code is kumquat"]
            assert texts(await search(person, "kumquat", room="sp_vault")) == [
                "the vault code is kumquat"
            ]
        assert await search(stranger, "kumquat") == []
        # Narrowed to it, the answer is the one for a room that does not exist.
        refused = await stranger.get("/api/search?q=kumquat&room=sp_vault")
        missing = await stranger.get("/api/search?q=kumquat&room=sp_nothing_here")
        assert refused.status == missing.status == 404
        assert refused.body == missing.body and "kumquat" not in refused.body
        # Removed, the member finds nothing any more.
        await owner.submit("/chat/sp_vault/members/sp_member/remove", token_from="/chat/sp_vault/")
        assert await search(member, "kumquat") == []


async def test_a_direct_conversation_is_searched_by_its_two_people_only(base):
    async with (
        Client(base, "sd_ann") as ann,
        Client(base, "sd_bob") as bob,
        Client(base, "sd_eve") as eve,
    ):
        sock = await ann.join_path("/ws/dm/sd_bob/")
        await sock.next("history")
        said = await sock.say("our secret word is pomelo")
        for person, peer in ((ann, "sd_bob"), (bob, "sd_ann")):
            [found] = await search(person, "Pomelo")
            assert found["kind"] == "dm" and found["title"] == peer
            assert found["url"] == f"/dm/{peer}/?at={said['id']}"
        assert texts(await search(ann, "pomelo", room="@sd_ann:sd_bob")) == [said["text"]]
        assert await search(eve, "pomelo") == []
        refused = await eve.get("/api/search?q=pomelo&room=%40sd_ann%3Asd_bob")
        assert refused.status == 404


async def test_deleted_messages_never_match_and_edited_ones_match_their_new_text(base):
    async with Client(base, "se_ann") as ann:
        sock = await ann.enter("se_room")
        gone = await sock.say("the password is tangerine")
        typo = await sock.say("meet at the libary")
        await sock.send_frame(type="delete", id=gone["id"])
        await sock.update(gone["id"])
        await sock.send_frame(type="edit", id=typo["id"], text="meet at the Library / café")
        await sock.update(typo["id"])
        assert await search(ann, "tangerine") == []
        assert await search(ann, "libary") == []
        [edited] = await search(ann, "library CAFÉ /")
        assert edited["id"] == typo["id"] and edited["edited"] >= typo["ts"]


@pytest.mark.parametrize(
    "query",
    [
        "q=",
        "q=%20%20",
        "",
        "q=" + "a" * 501,
        "q=" + "+".join(["w"] * 51),
        "q=x&limit=0",
        "q=x&limit=101",
        "q=x&limit=many",
    ],
)
async def test_search_with_bad_input_is_a_400_json_error(base, query):
    async with Client(base, "sb_ann") as ann:
        response = await ann.get(f"/api/search?{query}")
        assert response.status == 400
        assert response.content_type == "application/json"
        assert response.json()["error"]


def test_the_raw_prefilter_never_drops_a_match():
    """Characters whose case folding is ASCII ("ﬁ", Kelvin "K", "ß"), escapes in the
    stored JSON, and a mix of ASCII and non-ASCII messages in one conversation."""
    import json

    def stored(i: int, text: str, ensure_ascii: bool = False) -> bytes:
        body = {"type": "message", "id": i, "ts": float(i), "room": "r", "username": "u"}
        body["text"] = text
        return json.dumps(body, ensure_ascii=ensure_ascii).encode()

    held = [
        stored(1, "ﬁle the \u212aelvin report"),
        stored(2, "STRAẞE and straße"),
        stored(3, 'a "quoted" path\\to/file\tx'),
        stored(4, "plain ascii file report"),
        stored(5, "escaped Ünïcödé FILE", ensure_ascii=True),
    ]
    found = lambda q: [m["id"] for m in match(held, query_words(q), 10)]  # noqa: E731
    assert found("file report") == [4, 1]
    assert found("kelvin") == [1]
    assert found("strasse") == [2]
    assert found('"quoted" to/file') == [3]
    assert found("ünïcödé") == [5]
    assert found("file") == [5, 4, 3, 1]
