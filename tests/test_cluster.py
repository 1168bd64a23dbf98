"""chatapp on a real local Redis Cluster (3 primaries + 3 replicas): two app
processes carry messages, history, resume, presence, admin close events,
sessions, throttling and message actions across workers as they do on one
Redis; start-up refuses a wrong URL kind. The failure tests (a primary killed,
a slot resharded live) are in test_cluster_failure.py.
"""

from __future__ import annotations

import pytest

from chatapp.chat import presence as presence_module
from chatapp.store.client import make_store

from .client import Client
from .cluster_support import LocalCluster
from .support import ROOT, RedisServer, app_env, app_pair, free_port, run_cli
from .test_presence import Told, presence_of, refresh_sweeps

pytestmark = [pytest.mark.cluster, pytest.mark.multiprocess]

# A rate limit the ordinary tests stay under (per person per room) and the
# throttling test goes over.
RATE = {"CHATAPP_CHAT_RATE_LIMIT_MESSAGES": "150", "CHATAPP_CHAT_RATE_LIMIT_SECONDS": "30"}


@pytest.fixture(scope="module")
def cluster():
    """One local cluster for this module, always torn down."""
    local = LocalCluster().start()
    try:
        yield local
    finally:
        local.cleanup()


@pytest.fixture(scope="module")
def workers(cluster):
    with app_pair(cluster.url, **RATE) as pair:
        yield pair


@pytest.fixture
def pair(workers, cluster, room):
    cluster.flushall()
    return workers[0].url, workers[1].url, room


def cli(url: str, *args: str):
    return run_cli("--config", str(ROOT / "config.yaml"), *args, env=app_env(url))


async def test_cluster_messages_cross_workers_in_order_with_consecutive_ids(pair):
    one, two, room = pair
    async with Client(one, "ann") as ann, Client(two, "ben") as ben:
        a, b = await ann.join(room), await ben.join(room)
        await a.presence(["ann", "ben"])
        for i in range(100):
            await a.send(f"m{i}")
        for sock in (a, b):
            got = await sock.messages(100)
            assert [m["text"] for m in got] == [f"m{i}" for i in range(100)]
            assert [m["id"] for m in got] == list(range(1, 101))


async def test_cluster_rooms_on_every_shard_one_subscriber_connection_per_shard(pair, cluster):
    """Rooms spread over the three primaries all carry messages across workers,
    and each worker holds one shard subscriber connection per primary, not one
    per room."""
    one, two, room = pair
    rooms = [f"{room}_{i}" for i in range(12)]
    async with Client(one, "ann") as ann, Client(two, "ben") as ben:
        for name in rooms:
            a, b = await ann.join(name), await ben.join(name)
            await a.presence(["ann", "ben"])
            await b.send(f"hello {name}")
            assert (await a.next("message"))["text"] == f"hello {name}"
        owned: dict[int, int] = {}
        with cluster.live_node().client() as c:
            for name in rooms:
                slot = c.execute_command("CLUSTER", "KEYSLOT", f"chatapp:{{room:{name}}}:channel")
                port = cluster.owner(slot).port
                owned[port] = owned.get(port, 0) + 1
        assert len(owned) == 3  # the names spread over every shard
        for port, count in owned.items():
            with cluster.node(port).client(decode_responses=True) as c:
                clients = c.client_list()
            shard_subs = [cl for cl in clients if int(cl.get("ssub", 0)) > 0]
            assert len(shard_subs) == 2, clients  # one connection per worker
            # each holds (at least: a sidebar follows earlier rooms too) this shard's rooms
            assert all(int(cl["ssub"]) >= count for cl in shard_subs), shard_subs


async def test_cluster_late_joiner_gets_history_and_resumes_after(pair):
    one, two, room = pair
    async with Client(one, "ann") as ann, Client(two, "dan") as dan:
        a = await ann.join(room)
        for i in range(10):
            await a.send(f"m{i}")
        await a.messages(10)
        late = await dan.join(room)
        history = await late.next("history")
        assert [m["id"] for m in history["messages"]] == list(range(1, 11))
        resumed = await dan.join(room, after=7)
        assert [m["id"] for m in (await resumed.next("history"))["messages"]] == [8, 9, 10]


async def test_cluster_presence_and_counts_agree_across_workers(pair):
    one, two, room = pair
    async with Client(one, "ann") as ann, Client(two, "ben") as ben:
        a = await ann.join(room)
        b = await ben.join(room)
        for sock in (a, b):
            assert (await sock.presence(["ann", "ben"]))["count"] == 2
        for base in (one, two):
            rooms = (await ann.json(base + "/api/rooms"))["rooms"]
            assert {r["name"]: r["count"] for r in rooms} == {room: 2}
        await b.close()
        await a.presence(["ann"])


async def test_cluster_disable_command_closes_the_users_sockets_on_both_workers(pair, cluster):
    one, two, room = pair
    async with Client(one, "ann") as ann, Client(two, "ben") as ben:
        on_one, on_two = await ann.join(room), await ann.join(room, base=two)
        watcher = await ben.join(room)
        await watcher.presence(["ann", "ben"])
        result = cli(cluster.url, "disable", "ann")
        assert result.returncode == 0, result.stderr
        assert await on_one.closed(5.0) == 1008
        assert await on_two.closed(5.0) == 1008
        await watcher.presence(["ben"])


async def test_cluster_session_works_on_both_workers_and_logout_closes_the_other(pair):
    one, two, room = pair
    async with Client(one, "ann") as ann:
        on_two = await ann.join(room, base=two)  # the session made on one, used on two
        await on_two.next("history")
        page = await ann.get(two + "/chat/")
        assert page.status == 200 and "ann" in page.body
        assert (await ann.logout()).status == 302
        assert await on_two.closed(timeout=5.0) == 1008
        assert await ann.is_anonymous()


async def test_cluster_rate_limit_counts_per_person_and_room(pair):
    one, _, room = pair
    async with Client(one, "ann") as ann:
        a = await ann.join(room)
        await a.next("history")
        for i in range(155):
            await a.send(f"m{i}")
        frames = []
        while len(frames) < 155:
            frame = await a.frame()
            if frame["type"] in ("message", "error"):
                frames.append(frame)
        limited = [f for f in frames if f["type"] == "error"]
        stored = [f for f in frames if f["type"] == "message"]
        assert len(stored) == 150
        assert [e["code"] for e in limited] == ["rate_limited"] * 5


async def test_cluster_edit_reaches_the_other_worker(pair):
    one, two, room = pair
    async with Client(one, "ann") as ann, Client(two, "ben") as ben:
        a, b = await ann.join(room), await ben.join(room)
        await a.presence(["ann", "ben"])
        sent = await a.say("hello")
        await b.next("message")
        await a.send_frame(type="edit", id=sent["id"], text="hello world")
        update = await b.next("update")
        assert update["message"]["text"] == "hello world"
        assert update["message"]["id"] == sent["id"]
        assert update["rev"] == 1


async def test_cluster_deleteroom_closes_the_rooms_sockets_on_both_workers(pair, cluster):
    one, two, room = pair
    async with Client(one, "ann") as ann, Client(two, "ben") as ben:
        a, b = await ann.enter(room), await ben.enter(room)
        await a.say("hello")
        result = cli(cluster.url, "deleteroom", room)
        assert result.returncode == 0, result.stderr
        assert await a.closed(5.0) == 1008
        assert await b.closed(5.0) == 1008
        again = await ben.enter(room, base=one)
        assert again.history["messages"] == []


async def test_cluster_mentions_notify_and_direct_messages_cross_workers(pair):
    one, two, room = pair
    async with Client(one, "ann") as ann, Client(two, "ben") as ben:
        elsewhere = await ben.enter(f"{room}_a")  # ben's tab on another room, worker two
        writer = await ann.enter(f"{room}_b")
        said = await writer.say("hey @ben, look")
        notify = await elsewhere.next("notify", timeout=5)
        assert notify["conversation"] == f"{room}_b"
        assert notify["message"]["id"] == said["id"]
        # A direct message: its own conversation, its own slot, both workers.
        a = await ann.join_path("/ws/dm/ben/")
        b = await ben.join_path("/ws/dm/ann/", base=two)
        await a.next("history")
        await b.next("history")
        sent = await a.say("psst")
        got = await b.next("message")
        assert (got["room"], got["text"], got["id"]) == ("@ann:ben", "psst", sent["id"])


async def test_cluster_presence_refresh_extends_records_and_sweeps_a_vanished_workers(
    cluster, monkeypatch
):
    """The refresh on a cluster: plain commands in a cluster pipeline (one room, one
    slot), in batches, over rooms on every shard."""
    monkeypatch.setattr(presence_module, "REFRESH_BATCH", 5)
    cluster.flushall()
    store = make_store(cluster.url)
    try:
        told = Told()
        presence = presence_of(store, told)
        rooms = [f"pr_room{i}" for i in range(12)]
        for room in rooms:  # as a join on a cluster: no MULTI across slots
            await presence.join(room, "ann", store.raw.pipeline(transaction=False))
        await refresh_sweeps(store, presence, told, rooms, ("pr_room2", "pr_room9"), ("ann",))
    finally:
        await store.close()


# -- start-up refusals --------------------------------------------------------------


def serve(url: str):
    env = app_env(url, CHATAPP_REDIS_CONNECT_TIMEOUT="1")
    return run_cli("--config", str(ROOT / "config.yaml"), "--port", str(free_port()), env=env)


def refusal(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("chatapp:")]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_cluster_url_with_no_reachable_node_exits_2_naming_the_urls():
    dead = f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    line = refusal(serve(dead))
    assert dead in line and "no reachable node" in line


def test_cluster_url_on_a_plain_redis_exits_2_saying_so():
    server = RedisServer().start()
    try:
        line = refusal(serve(f"redis+cluster://127.0.0.1:{server.port}"))
        assert "not a Redis Cluster node" in line
    finally:
        server.cleanup()


def test_plain_url_on_a_cluster_node_exits_2_saying_so(cluster):
    line = refusal(serve(f"redis://127.0.0.1:{cluster.nodes[0].port}/0"))
    assert "is a Redis Cluster node" in line and "redis+cluster://" in line


def test_cluster_check_flags_wait_replicas_above_the_replicas_there_are(cluster):
    env = app_env(cluster.url, CHATAPP_REDIS_WAIT_REPLICAS="2")
    result = run_cli("--config", str(ROOT / "config.yaml"), "check", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "redis.wait_replicas is 2 but a primary has 1 replica(s)" in result.stdout
    env = app_env(cluster.url, CHATAPP_REDIS_WAIT_REPLICAS="1")
    result = run_cli("--config", str(ROOT / "config.yaml"), "check", env=env)
    assert "wait_replicas" not in result.stdout
