"""W8: search and scroll-back over held history (issue 16).

CONVERSATIONS public rooms each hold MESSAGES messages, written straight into
the server's Redis in the layout chatapp stores them in (through
`chatapp.store.keys` and `chatapp.chat.frames`, so it stays the app's own);
about one message in ten is Russian. One logged-in person then, one request at
a time:
- searches (`GET /api/search?q=...`) with a mix of queries: a rare word, two
  common words, a Cyrillic word, a word nobody wrote; every conversation is
  scanned, so the latency is that of the documented size;
- scrolls back (`GET /api/chat/{room}/history?before=ID&limit=100`) at
  random places of random rooms.
Latency is the request's round trip as the client sees it. chatapp only.
"""

from __future__ import annotations

import random
import secrets
import time
from collections import Counter
from dataclasses import asdict, dataclass

import aiohttp
import redis.asyncio as aioredis

from bench.loadgen import Target, login_many, now, percentiles_ms
from bench.procstat import Probe
from chatapp.chat import frames
from chatapp.store.keys import Keys

ENGLISH = [
    "the",
    "a",
    "to",
    "and",
    "of",
    "we",
    "it",
    "is",
    "in",
    "for",
    "on",
    "that",
    "this",
    "with",
    "deploy",
    "release",
    "build",
    "test",
    "review",
    "meeting",
    "lunch",
    "tomorrow",
    "today",
    "code",
    "fix",
    "bug",
    "issue",
    "please",
    "thanks",
    "ok",
    "yes",
    "no",
    "server",
    "client",
    "room",
    "message",
    "page",
    "search",
    "history",
    "link",
    "doc",
    "plan",
    "sprint",
    "merge",
]
RUSSIAN = [
    "привет",
    "мир",
    "встреча",
    "завтра",
    "сегодня",
    "код",
    "сборка",
    "выпуск",
    "спасибо",
    "да",
    "нет",
]
RARE = "kumquat"  # one message in 2,000
QUERIES = {
    "rare word": RARE,
    "two common words": "deploy tomorrow",
    "cyrillic word": "Встреча",
    "no match": "zyzzyva",
}


@dataclass(frozen=True)
class SearchSpec:
    conversations: int = 50
    messages: int = 1000  # per conversation (chat.history_limit is 1,000)
    searches: int = 50  # per query
    pages: int = 300  # scroll-back requests
    seed: int = 7


def _text(rng: random.Random, i: int) -> str:
    if rng.random() < 0.1:
        words = [rng.choice(RUSSIAN) for _ in range(rng.randint(3, 14))]
    else:
        words = [rng.choice(ENGLISH) for _ in range(rng.randint(3, 18))]
    if i % 2000 == 1000:
        words.insert(rng.randrange(len(words)), RARE)
    return " ".join(words)


async def seed(redis_url: str, rooms: list[str], spec: SearchSpec) -> int:
    """Write the rooms' histories as chatapp stores them; return the bytes held."""
    rng = random.Random(spec.seed)
    redis = aioredis.from_url(redis_url)
    held = 0
    n = 0
    try:
        start_ts = time.time() - spec.messages * len(rooms)
        for room in rooms:
            pipe = redis.pipeline(transaction=False)
            batch = []
            for mid in range(1, spec.messages + 1):
                n += 1
                body = frames.message_body(room, f"w7u{mid % 40}", _text(rng, n), None)
                ts = f"{start_ts + n:.6f}"
                batch.append(f'{{"type":"message","id":{mid},"ts":{ts}{body}'.encode())
            held += sum(map(len, batch))
            pipe.rpush(Keys.room_history(room), *batch)
            pipe.set(Keys.room_seq(room), spec.messages)
            pipe.zadd(Keys.rooms, {room: time.time()})
            pipe.hset(Keys.room_names, room.lower(), room)
            await pipe.execute()
    finally:
        await redis.aclose()
    return held


async def _timed_get(
    http: aiohttp.ClientSession, url: str, errors: Counter, into: list[float]
) -> dict | None:
    started = now()
    try:
        async with http.get(url) as response:
            body = await response.json() if response.status == 200 else None
            if response.status != 200:
                errors[f"http:{response.status}"] += 1
    except (aiohttp.ClientError, TimeoutError) as exc:
        errors[f"error:{type(exc).__name__}"] += 1
        return None
    into.append(now() - started)
    return body


async def run_search(
    target: Target, spec: SearchSpec, probe: Probe | None = None, redis_url: str | None = None
) -> dict:
    if not redis_url:
        raise SystemExit("W8 writes the histories into the server's Redis: --redis-url")
    tag = secrets.token_hex(3)
    rooms = [f"w7_{tag}_{i}" for i in range(spec.conversations)]
    started = now()
    held_bytes = await seed(redis_url, rooms, spec)
    seed_s = now() - started
    [cookie] = await login_many(target, 1, f"w7p{tag}")
    rng = random.Random(spec.seed + 1)
    errors: Counter[str] = Counter()
    by_query: dict[str, list[float]] = {name: [] for name in QUERIES}
    found: dict[str, int] = {}
    history_s: list[float] = []
    if probe:
        probe.start_sampling()
    async with aiohttp.ClientSession(headers={"Cookie": cookie}) as http:
        for _ in range(spec.searches):
            for name, q in QUERIES.items():
                url = f"{target.origin}/api/search?q={q}&limit=50"
                body = await _timed_get(http, url, errors, by_query[name])
                if body is not None:
                    found[name] = len(body["results"])
        for _ in range(spec.pages):
            room = rng.choice(rooms)
            before = rng.randint(2, spec.messages + 1)
            url = f"{target.origin}/api/chat/{room}/history?before={before}&limit=100"
            body = await _timed_get(http, url, errors, history_s)
            if body is not None and len(body["messages"]) != min(100, before - 1):
                errors["history:wrong_count"] += 1
    if probe:
        await probe.stop_sampling()
    every = [t for times in by_query.values() for t in times]
    search_ms = percentiles_ms(sorted(every))
    return {
        "spec": asdict(spec),
        "messages_held": spec.conversations * spec.messages,
        "held_mb": round(held_bytes / 1e6, 1),
        "seed_s": round(seed_s, 1),
        "search_ms": search_ms,
        "search_by_query_ms": {name: percentiles_ms(sorted(t)) for name, t in by_query.items()},
        "search_results": found,
        "history_ms": percentiles_ms(sorted(history_s)),
        "latency_ms": search_ms,
        "errors": dict(errors),
        "lost": 0,
        "server_peak_rss_mb": round(probe.peak_rss_kb / 1024, 1) if probe else None,
    }
