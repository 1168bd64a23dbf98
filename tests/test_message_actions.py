"""Message actions (PROTOCOL.md, "Message actions"): reply, edit, delete, reactions,
typing, and resume with `?after=ID&rev=R`, across two app processes on one Redis."""

from __future__ import annotations

import asyncio

import pytest
import redis

from .client import Client
from .support import app_pair

pytestmark = pytest.mark.multiprocess

FAST = {"CHATAPP_CHAT_RATE_LIMIT_MESSAGES": "1000000"}


@pytest.fixture(scope="module")
def apps(redis_server):
    """Two app processes on one Redis (module-scoped; each test uses its own names)."""
    client = redis_server.client()
    client.flushall()
    client.close()
    with app_pair(redis_server.url, **FAST) as pair:
        yield pair


@pytest.fixture
def store(redis_server):
    client = redis_server.client()
    yield client
    client.close()


def everything_in(store: redis.Redis) -> bytes:
    """Every value of every key in Redis, read by type, as one blob to search."""
    out = []
    for key in store.scan_iter(count=1000):
        kind = store.type(key)
        if kind == b"string":
            out.append(store.get(key) or b"")
        elif kind == b"list":
            out.extend(store.lrange(key, 0, -1))
        elif kind == b"hash":
            for field, value in store.hgetall(key).items():
                out += [field, value]
        elif kind == b"set":
            out.extend(store.smembers(key))
        elif kind == b"zset":
            out.extend(store.zrange(key, 0, -1))
        out.append(key)
    return b"\n".join(out)


async def test_edit_reaches_the_other_worker_as_an_update_and_late_joiners_see_it(apps, room):
    one, two = apps
    async with Client(one.url, "ed_alice") as alice, Client(two.url, "ed_bob") as bob:
        a = await alice.enter(room)
        b = await bob.enter(room)
        rev = b.history["rev"]
        sent = await a.say("helo wrold")
        await b.next("message")
        await a.send_frame(type="edit", id=sent["id"], text="hello world")
        update = await b.update(sent["id"])
        message = update["message"]
        assert message["text"] == "hello world"
        assert message["username"] == "ed_alice" and message["ts"] == sent["ts"]
        assert message["edited"] >= sent["ts"]
        assert message["rev"] == update["rev"] == rev + 1
        assert (await a.update(sent["id"])) == update  # the author's tabs too

        # Bob may not edit Alice's message: refused, nothing changes, socket open.
        await b.send_frame(type="edit", id=sent["id"], text="bob was here")
        refused = await b.error()
        assert refused["code"] == "forbidden"
        late = await Client(one.url, "ed_carol").__aenter__()
        try:
            held = (await late.enter(room)).history
            assert [m["text"] for m in held["messages"]] == ["hello world"]
            assert held["messages"][0]["edited"] == message["edited"]
            assert held["rev"] == rev + 1
        finally:
            await late.close()
        assert (await b.say("still open"))["id"] == sent["id"] + 1


async def test_delete_leaves_a_tombstone_and_the_text_leaves_redis(apps, room, store):
    one, two = apps
    async with Client(one.url, "de_alice") as alice, Client(two.url, "de_bob") as bob:
        a = await alice.enter(room)
        b = await bob.enter(room)
        secret = await a.say("the launch code is zq-81-secret")
        kept = await a.say("this one stays")
        await b.send_frame(type="delete", id=secret["id"])
        assert (await b.error())["code"] == "forbidden"
        await a.send_frame(type="react", id=secret["id"], emoji="👍")
        await b.update(secret["id"])
        await a.send_frame(type="delete", id=secret["id"])
        update = await b.update(secret["id"])
        tombstone = update["message"]
        assert tombstone["deleted"] is True and tombstone["text"] == ""
        assert "reactions" not in tombstone
        assert b"zq-81-secret" not in everything_in(store)

        for base in (one.url, two.url):  # every later history, on either worker
            again = await alice.enter(room, base=base)
            messages = {m["id"]: m for m in again.history["messages"]}
            assert messages[secret["id"]]["deleted"] is True
            assert messages[secret["id"]]["text"] == ""
            assert messages[kept["id"]]["text"] == "this one stays"
        page = (await bob.get(f"/chat/{room}/")).text
        assert "zq-81-secret" not in page

        # Gone is gone: no second delete, no edit, no reaction.
        for frame in (
            {"type": "delete", "id": secret["id"]},
            {"type": "edit", "id": secret["id"], "text": "back"},
            {"type": "react", "id": secret["id"], "emoji": "👍"},
        ):
            await a.send_frame(**frame)
            assert (await a.error())["code"] == "not_found"


async def test_a_superuser_deletes_anyones_message(apps, room, store):
    one, two = apps
    async with Client(one.url, "su_alice") as alice, Client(two.url, "su_boss") as boss:
        store.hset("chatapp:{users}:su_boss", "su", "1")
        a = await alice.enter(room)
        s = await boss.enter(room)
        said = await a.say("spam spam spam")
        await s.send_frame(type="delete", id=said["id"])
        assert (await a.update(said["id"]))["message"]["deleted"] is True


async def test_the_owner_deletes_in_a_private_room_and_members_cannot(apps):
    one, two = apps
    async with (
        Client(one.url, "ow_owner") as owner,
        Client(two.url, "ow_ann") as ann,
        Client(two.url, "ow_ben") as ben,
    ):
        await owner.submit("/chat/", {"room": "ow_private", "private": "1"})
        for name in ("ow_ann", "ow_ben"):
            await owner.submit("/chat/ow_private/members/", {"username": name})
        o = await owner.enter("ow_private")
        a = await ann.enter("ow_private")
        b = await ben.enter("ow_private")
        said = await a.say("off topic")
        await b.send_frame(type="delete", id=said["id"])
        assert (await b.error())["code"] == "forbidden"
        await o.send_frame(type="delete", id=said["id"])
        assert (await a.update(said["id"]))["message"]["deleted"] is True
        # Owning a private room gives no rights elsewhere: a public room has no owner.
        o_public = await owner.enter("ow_public")
        a_public = await ann.enter("ow_public")
        elsewhere = await a_public.say("on topic")
        await o_public.send_frame(type="delete", id=elsewhere["id"])
        assert (await o_public.error())["code"] == "forbidden"


async def test_reactions_toggle_per_person_and_everyone_sees_who(apps, room):
    one, two = apps
    async with Client(one.url, "re_alice") as alice, Client(two.url, "re_bob") as bob:
        a = await alice.enter(room)
        b = await bob.enter(room)
        said = await a.say("ship it?")
        await b.next("message")

        async def both_see() -> dict:
            seen_by_a, seen_by_b = await a.update(said["id"]), await b.update(said["id"])
            assert seen_by_a == seen_by_b
            return seen_by_a["message"].get("reactions")

        await a.send_frame(type="react", id=said["id"], emoji="👍")
        assert await both_see() == {"👍": ["re_alice"]}
        await b.send_frame(type="react", id=said["id"], emoji="👍")
        assert await both_see() == {"👍": ["re_alice", "re_bob"]}
        await a.send_frame(type="react", id=said["id"], emoji="👍")  # again: taken back
        assert await both_see() == {"👍": ["re_bob"]}
        await b.send_frame(type="react", id=said["id"], emoji="👍")
        assert await both_see() is None  # none left: no reactions field

        await a.send_frame(type="react", id=said["id"], emoji="not an emoji")
        assert (await a.error())["code"] == "bad_emoji"
        for emoji in ("👍👍", "", "a", "<b>"):
            await a.send_frame(type="react", id=said["id"], emoji=emoji)
            assert (await a.error())["code"] == "bad_emoji"
        for emoji in ("👨‍👩‍👧", "🇫🇷", "👍🏽", "❤️"):  # any single emoji
            await a.send_frame(type="react", id=said["id"], emoji=emoji)
            assert emoji in (await a.update(said["id"]))["message"]["reactions"]


async def test_a_message_takes_at_most_20_different_reactions(apps, room):
    one, _ = apps
    async with Client(one.url, "tw_alice") as alice:
        a = await alice.enter(room)
        said = await a.say("react away")
        faces = [chr(0x1F600 + i) for i in range(21)]
        for face in faces[:20]:
            await a.send_frame(type="react", id=said["id"], emoji=face)
            await a.update(said["id"])
        await a.send_frame(type="react", id=said["id"], emoji=faces[20])
        assert (await a.error())["code"] == "too_many_reactions"
        await a.send_frame(type="react", id=said["id"], emoji=faces[0])  # one more of one
        update = await a.update(said["id"])
        assert len(update["message"]["reactions"]) == 19


async def test_resume_with_after_and_rev_gets_exactly_the_missed_changes(apps, room):
    one, two = apps
    async with Client(one.url, "rs_alice") as alice, Client(two.url, "rs_bob") as bob:
        a = await alice.enter(room)
        b = await bob.enter(room)
        said = [await a.say(f"message {n}") for n in range(1, 5)]
        ids = [m["id"] for m in said]
        await a.send_frame(type="react", id=ids[0], emoji="🎉")  # before bob leaves
        seen = await b.update(ids[0])
        last_id, rev = ids[-1], seen["rev"]
        await b.close()

        await a.send_frame(type="edit", id=ids[1], text="message 2, fixed")
        await a.update(ids[1])
        await a.send_frame(type="delete", id=ids[2])
        await a.update(ids[2])
        await a.send_frame(type="react", id=ids[3], emoji="👀")
        await a.update(ids[3])
        new = await a.say("message 5")

        back = await bob.enter(room, after=last_id, rev=rev)
        history = back.history
        assert [m["id"] for m in history["messages"]] == [new["id"]]
        updates = {m["id"]: m for m in history["updates"]}
        assert len(history["updates"]) == 3  # nothing twice
        assert set(updates) == {ids[1], ids[2], ids[3]}  # not the change bob saw
        assert updates[ids[1]]["text"] == "message 2, fixed"
        assert updates[ids[2]]["deleted"] is True
        assert updates[ids[3]]["reactions"] == {"👀": ["rs_alice"]}
        assert history["rev"] == rev + 3
        assert all(m["rev"] > rev for m in history["updates"])

        # Resuming from where it is now: nothing again.
        latest = await bob.enter(room, after=new["id"], rev=history["rev"])
        assert latest.history["messages"] == [] and latest.history["updates"] == []
        # Without rev (a client from before this feature): messages only, as before.
        plain = await bob.enter(room, after=last_id, base=one.url)
        assert "updates" not in plain.history and plain.history["rev"] == rev + 3


async def test_reply_to_a_held_message_and_not_to_one_that_is_not(apps, room):
    one, two = apps
    async with Client(one.url, "rp_alice") as alice, Client(two.url, "rp_bob") as bob:
        a = await alice.enter(room)
        b = await bob.enter(room)
        question = await a.say("lunch at noon?")
        answer = await b.say("yes!", reply_to=question["id"])
        assert answer["reply_to"] == question["id"]
        assert (await a.until(lambda f: f.get("id") == answer["id"]))["reply_to"] == question["id"]
        await b.send_frame(type="message", text="to nothing", client_id="x1", reply_to=999)
        refused = await b.error()
        assert refused["code"] == "not_found" and refused["client_id"] == "x1"
        for bad in ("1", -1, 1.5, None):
            await b.send_frame(type="message", text="bad reply", client_id="x2", reply_to=bad)
            if bad is None:  # null is no reply at all
                assert "reply_to" not in await b.until(lambda f: f.get("client_id") == "x2")
            else:
                assert (await b.error())["code"] == "bad_frame"
        # Nothing was stored for the refused ones: ids stay consecutive.
        assert (await a.say("next"))["id"] == answer["id"] + 2


async def test_typing_is_relayed_to_the_others_across_workers_once_per_2s(apps, room):
    one, two = apps
    async with Client(one.url, "ty_alice") as alice, Client(two.url, "ty_bob") as bob:
        a = await alice.enter(room)
        b = await bob.enter(room)
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(50):  # 50 typing frames in well under a second
            await a.send_frame(type="typing")
        burst = loop.time() - started
        assert (await b.next("typing", timeout=1.0)) == {"type": "typing", "username": "ty_alice"}
        marker = await a.say("done typing")
        frames = await b.until(lambda f: f.get("id") == marker["id"])
        assert frames["text"] == "done typing"
        relayed = [f for f in b.seen if f["type"] == "typing"]
        assert len(relayed) == 1, (relayed, burst)
        # Never to the typist's own sockets, never stored.
        assert not [f for f in a.seen if f["type"] == "typing"]
        late = await bob.enter(room, base=one.url)
        assert all(m["type"] == "message" for m in late.history["messages"])


async def test_bad_edits_are_refused_and_change_nothing(apps, room):
    one, _ = apps
    async with Client(one.url, "be_alice") as alice:
        a = await alice.enter(room)
        said = await a.say("original")
        cases = [
            ({"type": "edit", "id": 999, "text": "x"}, "not_found"),
            ({"type": "edit", "id": said["id"], "text": "   "}, "empty_message"),
            ({"type": "edit", "id": said["id"], "text": "x" * 4001}, "message_too_long"),
            ({"type": "edit", "id": said["id"]}, "bad_frame"),
            ({"type": "edit", "id": "1", "text": "x"}, "bad_frame"),
            ({"type": "delete", "id": 0}, "not_found"),
            ({"type": "delete"}, "bad_frame"),
            ({"type": "react", "id": 999, "emoji": "👍"}, "not_found"),
            ({"type": "react", "id": said["id"], "emoji": 5}, "bad_emoji"),
        ]
        for frame, code in cases:
            await a.send_frame(**frame)
            assert (await a.error())["code"] == code, frame
        again = await alice.enter(room)
        assert again.history["messages"][0]["text"] == "original"
        assert "edited" not in again.history["messages"][0]
        assert again.history["rev"] == 0


async def test_changes_count_toward_the_rate_limit(start_server):
    base = await start_server(chat={"rate_limit_messages": 3, "rate_limit_seconds": 60})
    async with Client(base, "rl_alice") as alice:
        a = await alice.enter("lobby")
        said = await a.say("one")
        await a.send_frame(type="edit", id=said["id"], text="two")
        await a.update(said["id"])
        await a.send_frame(type="react", id=said["id"], emoji="👍")
        await a.update(said["id"])
        await a.send_frame(type="delete", id=said["id"])
        refused = await a.error()
        assert refused["code"] == "rate_limited"
        # Typing is not counted, and past its throttle it is dropped silently.
        await a.send_frame(type="typing")
        await a.send_frame(type="typing")
        await a.send_frame(type="message", text="four", client_id="c4")
        assert (await a.error())["client_id"] == "c4"


async def test_changes_are_kept_as_long_as_their_messages_are_held(start_server, redis_url):
    base = await start_server(chat={"history_limit": 3})
    store = redis.Redis.from_url(redis_url)
    async with Client(base, "kp_alice") as alice:
        a = await alice.enter("lobby")
        first = await a.say("m1")
        for n in range(2, 4):
            said = await a.say(f"m{n}")
            await a.send_frame(type="react", id=said["id"], emoji="👍")
            await a.update(said["id"])
        await a.send_frame(type="react", id=first["id"], emoji="👍")
        await a.update(first["id"])
        assert store.zcard("chatapp:{room:lobby}:changes") == 3
        for n in range(4, 7):  # pushes m1..m3 out of the held history
            await a.say(f"m{n}")
        assert store.zcard("chatapp:{room:lobby}:changes") == 0
        resumed = await alice.enter("lobby", after=3, rev=0)
        assert resumed.history["updates"] == [] and resumed.history["rev"] == 3
        await a.send_frame(type="edit", id=first["id"], text="gone")
        assert (await a.error())["code"] == "not_found"
    store.close()
