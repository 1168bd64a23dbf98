"""Conversations (PROTOCOL.md, "Conversations"): private rooms, direct messages, read
markers, unread counts, mentions and `notify`, across two app processes."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from .client import Client
from .support import app_pair

pytestmark = pytest.mark.multiprocess


@pytest.fixture(scope="module")
def apps(redis_server):
    """Two app processes on one Redis (module-scoped; each test uses its own names)."""
    client = redis_server.client()
    client.flushall()
    client.close()
    with app_pair(redis_server.url) as pair:
        yield pair


async def handshake_status(person: Client, path: str, base: str | None = None) -> int:
    url = (base or person.base) + path
    try:
        ws = await person.http.ws_connect(url, headers={"Origin": base or person.base})
    except aiohttp.WSServerHandshakeError as error:
        return error.status
    await ws.close()
    return 101


async def test_private_room_is_invisible_to_others_until_they_are_added(apps):
    one, two = apps
    async with (
        Client(one.url, "pr_owner") as owner,
        Client(one.url, "pr_guest") as guest,
        Client(one.url, "pr_other") as other,
    ):
        created = await owner.submit("/chat/", {"room": "pr_secret", "private": "1"})
        assert created.location == "/chat/pr_secret/"
        for path in ("/chat/pr_secret/", "/api/chat/pr_secret/members"):
            assert (await guest.get(path)).status == 404, path
        assert await handshake_status(guest, "/ws/chat/pr_secret/") == 404
        assert "pr_secret" not in (await guest.get("/chat/")).body
        listed = await guest.json("/api/conversations")
        assert "pr_secret" not in [c["conversation"] for c in listed["conversations"]]
        # The name is taken for everyone, in any letter case; no answer tells a
        # stranger how the room is spelled.
        again = await other.submit("/chat/", {"room": "PR_SECRET", "private": "1"})
        assert again.status == 400 and "pr_secret" not in again.text
        assert (await guest.get("/chat/PR_Secret/")).status == 404  # not a redirect to it
        entered = await guest.submit("/chat/", {"room": "Pr_Secret"})
        assert entered.location == "/chat/Pr_Secret/"

        added = await owner.submit("/chat/pr_secret/members/", {"username": "pr_guest"})
        assert added.status == 302
        sock = await guest.enter("pr_secret", base=two.url)  # at once, on the other worker
        assert sock.history["messages"] == []
        members = await guest.json("/api/chat/pr_secret/members")
        assert members == {"owner": "pr_owner", "members": ["pr_guest", "pr_owner"]}
        mine = await guest.json("/api/conversations")
        [entry] = [c for c in mine["conversations"] if c["conversation"] == "pr_secret"]
        assert (entry["kind"], entry["url"]) == ("private", "/chat/pr_secret/")

        # Only the owner manages members.
        refused = await guest.submit("/chat/pr_secret/members/", {"username": "pr_other"})
        assert refused.status == 403
        assert (await guest.submit("/chat/pr_secret/members/pr_owner/remove")).status == 403

        # Removed: the open socket on the other worker closes at once, then 404.
        loop = asyncio.get_running_loop()
        started = loop.time()
        removed = await owner.submit(
            "/chat/pr_secret/members/pr_guest/remove", token_from="/chat/pr_secret/"
        )
        assert removed.status == 302
        assert await sock.closed(timeout=1.0) == 1008
        assert loop.time() - started < 1.0
        assert await handshake_status(guest, "/ws/chat/pr_secret/") == 404
        assert (await guest.get("/chat/pr_secret/")).status == 404


async def test_member_changes_that_make_no_sense_are_refused_and_change_nothing(apps):
    one, _ = apps
    async with Client(one.url, "mc_owner") as owner, Client(one.url, "mc_friend") as friend:
        await owner.submit("/chat/", {"room": "mc_room", "private": "1"})
        form = "/chat/mc_room/"
        unknown = await owner.submit("/chat/mc_room/members/", {"username": "nobody_x"}, form)
        assert unknown.status == 400 and "no user named" in unknown.text
        assert (await owner.submit("/chat/mc_room/members/", {"username": "mc_friend"})).status
        duplicate = await owner.submit("/chat/mc_room/members/", {"username": "MC_FRIEND"})
        assert duplicate.status == 400 and "member already" in duplicate.text
        owner_out = await owner.submit("/chat/mc_room/members/mc_owner/remove", None, form)
        assert owner_out.status == 400 and "owner cannot be removed" in owner_out.text
        members = await owner.json("/api/chat/mc_room/members")
        assert members["members"] == ["mc_friend", "mc_owner"]
        # Any member may leave; then the room is gone for them.
        left = await friend.submit("/chat/mc_room/leave", None, form)
        assert left.location == "/chat/"
        assert (await friend.get("/chat/mc_room/")).status == 404


async def test_direct_messages_between_two_people_on_two_workers(apps):
    one, two = apps
    async with (
        Client(one.url, "dm_alice") as alice,
        Client(one.url, "dm_bob") as bob,
        Client(one.url, "dm_carol") as carol,
    ):
        page = await alice.get("/dm/dm_bob/")
        assert page.status == 200 and "dm_bob" in page.text
        a = await alice.join_path("/ws/dm/dm_bob/")
        b = await bob.join_path("/ws/dm/dm_alice/", base=two.url)
        await a.next("history")
        await b.next("history")
        sent = await a.say("hello bob")
        got = await b.next("message")
        assert got["text"] == "hello bob"
        assert got["room"] == sent["room"] == "@dm_alice:dm_bob"
        back = await b.say("hi alice")
        assert (await a.until(lambda f: f.get("id") == back["id"]))["room"] == "@dm_alice:dm_bob"
        # Nobody else reads it or connects to it.
        assert (await carol.get("/dm/dm_alice/")).status == 200  # carol's own DM with alice
        assert await handshake_status(carol, "/ws/dm/dm_nobody/") == 404
        assert (await carol.get("/dm/dm_nobody/")).status == 404
        carols = await carol.json("/api/conversations")
        assert all("dm_bob" not in c["conversation"] for c in carols["conversations"])
        bobs = await bob.json("/api/conversations")
        [dm] = [c for c in bobs["conversations"] if c["kind"] == "dm"]
        assert (dm["name"], dm["url"]) == ("dm_alice", "/dm/dm_alice/")


async def test_unread_mentions_notify_and_read_markers_across_workers(apps):
    one, two = apps
    async with Client(one.url, "ur_alice") as alice, Client(one.url, "ur_bob") as bob:
        on_a = await bob.enter("ur_room_a")  # bob's tab on room A, worker one
        other_tab = await bob.enter("ur_room_a", base=two.url)  # another tab, worker two
        writer = await alice.enter("ur_room_b", base=two.url)
        for text in ("one", "hey @UR_BOB, look", "three"):
            last = await writer.say(text)
        summary = await bob.json("/api/conversations")
        [room_b] = [c for c in summary["conversations"] if c["conversation"] == "ur_room_b"]
        assert (room_b["unread"], room_b["mentions"], room_b["last_id"]) == (3, 1, last["id"])
        notify = await on_a.next("notify")
        assert notify["conversation"] == "ur_room_b" and notify["url"] == "/chat/ur_room_b/"
        assert notify["message"]["text"] == "hey @UR_BOB, look"
        # Only one notify: the next message frames on A's socket are not notifies.
        await writer.say("no mention here")
        marker = await alice.enter("ur_room_a")
        await marker.say("marker in A")
        seen = await on_a.until(lambda f: f.get("text") == "marker in A")
        assert [f["type"] for f in on_a.seen].count("notify") == 1, seen

        # bob opens B on worker two and reads it: his other tabs hear it, counts clear.
        reader = await bob.enter("ur_room_b", base=two.url)
        newest = reader.history["messages"][-1]["id"]
        await reader.ws.send_json({"type": "read", "id": newest})
        for tab in (on_a, other_tab):
            read = await tab.next("read")
            assert (read["conversation"], read["id"]) == ("ur_room_b", newest)
        summary = await bob.json("/api/conversations")
        [room_b] = [c for c in summary["conversations"] if c["conversation"] == "ur_room_b"]
        assert (room_b["unread"], room_b["mentions"]) == (0, 0)


async def test_a_direct_message_notifies_and_its_sidebar_follows_live(apps):
    one, two = apps
    async with Client(one.url, "dl_alice") as alice, Client(one.url, "dl_bob") as bob:
        # A page with a sidebar asks for it (?sidebar=1); a socket that shows one
        # conversation only (a bot, a load generator) does not.
        elsewhere = await bob.join_path("/ws/chat/dl_lobby/?sidebar=1", base=two.url)
        await elsewhere.next("history")
        # Once it follows bob's conversations it says so: his page reads the list then.
        assert await elsewhere.next("conversations") == {"type": "conversations", "following": True}
        plain = await bob.enter("dl_hall", base=two.url)
        chat = await alice.join_path("/ws/dm/dl_bob/")
        await chat.next("history")
        first = await chat.say("are you there?")
        notify = await elsewhere.next("notify")
        assert (notify["conversation"], notify["url"]) == ("@dl_alice:dl_bob", "/dm/dl_alice/")
        assert notify["message"]["id"] == first["id"]
        # From then on bob's tab follows the conversation: activity for each message.
        second = await chat.say("hello?")
        activity = await elsewhere.until(lambda f: f["type"] == "activity")
        assert activity == {
            "type": "activity",
            "conversation": "@dl_alice:dl_bob",
            "id": second["id"],
            "username": "dl_alice",
        }
        # The plain socket got the notifies (a DM always notifies), never activity.
        await plain.until(lambda f: f["type"] == "notify" and f["message"]["id"] == second["id"])
        assert not {"activity", "conversations"} & {f["type"] for f in plain.seen}


async def test_a_direct_message_with_a_disabled_account_is_refused(apps, redis_server):
    one, _ = apps
    async with Client(one.url, "dd_alice") as alice, Client(one.url, "dd_gone") as gone:
        await gone.logout()
        redis_server.client().hset("chatapp:{users}:dd_gone", "disabled", "1")
        assert (await alice.get("/dm/dd_gone/")).status == 403
        assert await handshake_status(alice, "/ws/dm/dd_gone/") == 403


async def test_markup_in_names_and_mentions_is_refused_or_plain_text(apps):
    one, _ = apps
    async with Client(one.url, "xs_alice") as alice:
        assert (await alice.get("/dm/%3Cimg%20src=x%20onerror=alert(1)%3E/")).status == 404
        bad = await alice.submit("/chat/", {"room": "<img src=x>", "private": "1"})
        assert bad.status == 400
        sock = await alice.enter("xs_room")
        echo = await sock.say("@<img src=x onerror=alert(1)> hi")
        assert echo["text"] == "@<img src=x onerror=alert(1)> hi"  # stored as text


async def test_admin_lists_private_rooms_and_dms_without_contents_and_deletes_them(
    apps, redis_server
):
    one, two = apps
    async with (
        Client(one.url, "ad_boss") as boss,
        Client(one.url, "ad_ann") as ann,
        Client(one.url, "ad_ben") as ben,
    ):
        redis_server.client().hset("chatapp:{users}:ad_boss", "su", "1")
        await ann.submit("/chat/", {"room": "ad_private", "private": "1"})
        in_room = await ann.enter("ad_private", base=two.url)
        await in_room.say("private words")
        dm = await ann.join_path("/ws/dm/ad_ben/")
        await dm.next("history")
        await dm.say("secret words")
        page = (await boss.get("/admin/?rq=ad_")).text
        assert "private, 1 member" in page and "direct" in page
        assert "@ad_ann:ad_ben" in page
        assert "secret words" not in page and "private words" not in page
        # A superuser deletes them like any room: sockets close, history goes.
        deleted = await boss.action("/admin/rooms/@ad_ann:ad_ben/delete")
        assert deleted.status == 302
        assert await dm.closed() == 1008
        assert (await boss.action("/admin/rooms/ad_private/delete")).status == 302
        assert await in_room.closed() == 1008
        listed = await ann.json("/api/conversations")
        assert "ad_private" not in [c["conversation"] for c in listed["conversations"]]
        assert "private words" not in (await ann.get("/chat/ad_private/")).text
        again = await ben.join_path("/ws/dm/ad_ann/")
        assert (await again.next("history"))["messages"] == []
