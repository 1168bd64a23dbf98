"""Search: every word of a query, any letter case, in the conversations a person can read.

A scan of held history, no index: each readable conversation's list is read
whole (one pipelined LRANGE each) and matched in a worker thread, so a big
search never holds the event loop. Words are compared after `str.casefold`
(Cyrillic, Greek, "ß" = "ss" alike) and literally: no character of a query
means anything but itself. Only a message's present text is matched: a
deleted message (text "") never matches, an edited one matches its new text.

A prefilter on the raw stored JSON keeps the scan cheap: a conversation all
of whose messages are ASCII is lower-cased in one call and searched for the
longest word with `bytes.find`; other messages are decoded and case-folded
one by one. The prefilter only ever keeps too much (it also sees the author,
the room, reactions); the final check parses the candidates and matches
their text. Words with a character JSON may escape (`"`, `\\`, `/`, control
characters) skip the prefilter and are matched on the parsed text only, and
so is every message holding a `\\uXXXX` escape.

The size this answers within 100 ms is measured by `bench/search.py` and
stated in the README. Debian's redis-server 7.0 has no Query Engine (RediSearch
ships with Redis 8); past that size, an index is the next step.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
from dataclasses import dataclass

import redis.asyncio as aioredis

from chatapp.chat.conversations import Conversation, Conversations, dm_peer, dm_people, is_dm
from chatapp.store.keys import Keys

MAX_QUERY_CHARS = 500
MAX_QUERY_WORDS = 50
DEFAULT_RESULTS = 50
MAX_RESULTS = 100
# Characters stored JSON may write as an escape (json.dumps, and Redis' cjson for
# an edited text): a word holding one cannot be looked for in the raw JSON.
_ESCAPED = frozenset('"\\/\x7f') | frozenset(chr(c) for c in range(32))
_SEPARATOR = b"\x1e"  # a control character: always escaped inside stored JSON
_UNICODE_ESCAPE = b"\\u"  # a character written as \uXXXX (a control character, or
# any character in JSON written by another tool): such a message is parsed


class BadQuery(ValueError):
    """The query breaks a rule; the message says which, for a 400 answer."""


def query_words(q: str) -> list[str]:
    """The words to look for: case-folded, each once, in the order typed."""
    if len(q) > MAX_QUERY_CHARS:
        raise BadQuery(f"A search is at most {MAX_QUERY_CHARS} characters.")
    typed = q.casefold().split()
    if not typed:
        raise BadQuery("Type a word to search for.")
    if len(typed) > MAX_QUERY_WORDS:
        raise BadQuery(f"A search is at most {MAX_QUERY_WORDS} words.")
    return list(dict.fromkeys(typed))


def _text_matches(message: dict, words: list[str]) -> bool:
    if message.get("deleted"):
        return False
    text = message.get("text")
    if not isinstance(text, str):
        return False
    folded = text.casefold()
    return all(w in folded for w in words)


def _candidates(held: list[bytes], words: list[str]) -> list[int]:
    """Indexes of the messages whose raw JSON may hold every word (a superset)."""
    raw_words = [w for w in words if not _ESCAPED.intersection(w)]
    if not raw_words:
        return list(range(len(held)))
    ascii_words = all(w.isascii() for w in raw_words)
    encoded = [w.encode() for w in raw_words]
    joined = _SEPARATOR.join(held)
    if joined.isascii() and _UNICODE_ESCAPE not in joined:
        # Casefold of ASCII text is its lower case; a word with any other
        # character cannot be in it.
        if not ascii_words:
            return []
        low = joined.lower()
        ends = list(itertools.accumulate(len(m) + 1 for m in held))
        longest = max(encoded, key=len)
        found: list[int] = []
        pos = low.find(longest)
        while pos != -1:
            i = bisect.bisect_right(ends, pos)
            found.append(i)
            pos = low.find(longest, ends[i]) if i + 1 < len(ends) else -1
        others = [w for w in encoded if w is not longest]
        return [i for i in found if all(w in held[i].lower() for w in others)]
    out = []
    for i, raw in enumerate(held):
        if _UNICODE_ESCAPE in raw:  # \uXXXX: only the parsed text can tell
            out.append(i)
        elif raw.isascii():
            if ascii_words:
                low = raw.lower()
                if all(w in low for w in encoded):
                    out.append(i)
        else:
            folded = raw.decode("utf-8", "replace").casefold()
            if all(w in folded for w in raw_words):
                out.append(i)
    return out


def match(held: list[bytes], words: list[str], limit: int) -> list[dict]:
    """The newest `limit` messages of one conversation's history (oldest first)
    whose present text holds every word, newest first. CPU only: run in a thread."""
    out = []
    for i in reversed(_candidates(held, words)):
        try:
            message = json.loads(held[i])
        except ValueError:
            continue
        if _text_matches(message, words):
            out.append(message)
            if len(out) >= limit:
                break
    return out


def _match_all(lists: list[list[bytes]], words: list[str], limit: int) -> list[list[dict]]:
    return [match(held, words, limit) for held in lists]


@dataclass(frozen=True)
class Found:
    """A matching message and where it is."""

    message: dict
    conversation: Conversation
    title: str  # the room's name, or the other person's name
    url: str  # the conversation's page at this message (`?at=ID`)

    def as_json(self) -> dict:
        return {
            **self.message,
            "kind": self.conversation.kind,
            "title": self.title,
            "url": self.url,
        }


class Search:
    """Searches held history for one person."""

    def __init__(self, redis: aioredis.Redis, conversations: Conversations) -> None:
        self._redis = redis
        self._conversations = conversations

    async def exists(self, name: str) -> bool:
        """Whether the conversation exists (its id counter does)."""
        return bool(await self._redis.exists(Keys.room_seq(name)))

    async def readable(self, username: str) -> list[Conversation]:
        """Every conversation `username` may read that can hold messages: the public
        rooms, the private rooms they belong to, their direct conversations."""
        me = username.lower()
        pipe = self._redis.pipeline(transaction=False)
        pipe.zrange(Keys.rooms, 0, -1)
        pipe.zrange(Keys.user_conversations(me), 0, -1)
        public, mine = await pipe.execute()
        names = list(dict.fromkeys(n.decode() for n in [*public, *mine]))
        out: list[Conversation] = []
        rooms = []
        for name in names:
            if is_dm(name):
                if me in dm_people(name):
                    out.append(Conversation(name, "dm"))
            else:
                rooms.append(name)
        pipe = self._redis.pipeline(transaction=False)
        for name in rooms:
            pipe.hget(Keys.room_meta(name), "kind")
            pipe.sismember(Keys.room_access(name), me)
        answers = await pipe.execute()
        for i, name in enumerate(rooms):
            kind, member = answers[2 * i], answers[2 * i + 1]
            if kind != b"private":
                out.append(Conversation(name, "room"))
            elif member:
                out.append(Conversation(name, "private"))
        return out

    async def search(
        self, username: str, words: list[str], conversations: list[Conversation], limit: int
    ) -> list[Found]:
        """The newest `limit` messages of `conversations` holding every word."""
        if not conversations:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for conversation in conversations:
            pipe.lrange(Keys.room_history(conversation.name), 0, -1)
        lists = await pipe.execute()
        matched = await asyncio.to_thread(_match_all, lists, words, limit)
        me = username.lower()
        peers = sorted({dm_peer(c.name, me) for c in conversations if c.kind == "dm"})
        shown = await self._conversations.display_names(peers) if peers else {}
        found = []
        for conversation, messages in zip(conversations, matched, strict=True):
            if conversation.kind == "dm":
                peer = dm_peer(conversation.name, me)
                title = shown.get(peer, peer)
                base = f"/dm/{title}/"
            else:
                title = conversation.name
                base = f"/chat/{conversation.name}/"
            for message in messages:
                found.append(Found(message, conversation, title, f"{base}?at={message['id']}"))
        found.sort(key=lambda f: (f.message.get("ts", 0), f.message["id"]), reverse=True)
        return found[:limit]
