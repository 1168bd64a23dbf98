"""Conversations: public rooms, private rooms and direct messages; who may read which.

A conversation is named like a room. A public room is any room name; a
private room is a room name with a `Keys.room_meta` hash (kind, owner) and a
`Keys.room_access` set of members; a direct conversation is named
`@alice:bob` (the two lower-case usernames, sorted), the same string for both.
All three share the room machinery (ids, history, resume, presence, the
socket path); this module adds only kinds, access and each person's list.

Access is the single rule every page, socket and API applies: a public room
is open to everyone logged in; a private room to its members; a direct
conversation to its two people. Anyone else is told it does not exist (404).

Each person keeps a sidebar list (`Keys.user_conversations`): the public
rooms they opened, the private rooms they belong to, the direct
conversations that hold a message; and read markers (`Keys.user_read`).
Unread counts are computed when asked (`summaries`), from the messages after
the marker: nothing per recipient is written when a message is stored.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Literal

import redis.asyncio as aioredis

from chatapp.store.client import is_cluster, run_script_many
from chatapp.store.keys import Keys

Kind = Literal["room", "private", "dm"]
DM_PREFIX = "@"
UNREAD_READ_CAP = (
    1000  # messages read to count one conversation's unread (its history holds no more)
)

# Create a private room unless its name is taken. KEYS: seq, meta, access.
# ARGV: owner (lower case), owner's name, now. Returns 1 created, 0 taken.
_CREATE_PRIVATE = """
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[2], 'kind', 'private', 'owner', ARGV[1], 'owner_name', ARGV[2],
           'created', ARGV[3])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('SET', KEYS[1], 0)
return 1
"""

# Whether the conversation exists, its newest id, its last message, and the
# messages after a read marker. KEYS: seq, history; ARGV: marker, cap.
# Returns {exists, seq, last message or '', messages...}.
_AFTER_MARKER = """
local exists = redis.call('EXISTS', KEYS[1])
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
local last = redis.call('LINDEX', KEYS[2], -1) or ''
local out = {exists, seq, last}
local marker = tonumber(ARGV[1])
if seq <= marker then return out end
local len = redis.call('LLEN', KEYS[2])
local first = seq - len + 1
local start = marker - first + 1
if start < 0 then start = 0 end
if len - start > tonumber(ARGV[2]) then start = len - tonumber(ARGV[2]) end
for _, m in ipairs(redis.call('LRANGE', KEYS[2], start, -1)) do out[#out + 1] = m end
return out
"""

# Move a read marker forward only. KEYS: read hash; ARGV: conversation, id.
_MARK_READ = """
local now = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > now then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]); return 1 end
return 0
"""


DM_RE = re.compile(r"@[a-z_][a-z0-9_]{0,31}:[a-z_][a-z0-9_]{0,31}")


def is_dm(name: str) -> bool:
    return name.startswith(DM_PREFIX)


def dm_name(a: str, b: str) -> str:
    """The direct conversation of two people: the same string whoever asks."""
    return DM_PREFIX + ":".join(sorted((a.lower(), b.lower())))


def dm_people(name: str) -> tuple[str, str]:
    """The two lower-case usernames of a direct conversation's name."""
    first, _, second = name[len(DM_PREFIX) :].partition(":")
    return first, second


def dm_peer(name: str, me: str) -> str:
    """The other person of a direct conversation, seen by `me` (lower case)."""
    first, second = dm_people(name)
    return second if first == me.lower() else first


def mentioned(text: str) -> set[str]:
    """The lower-case names written as `@name` in `text` (whole words, any case)."""
    return {m.lower() for m in _MENTION.findall(text)}


_MENTION = re.compile(r"(?<![\w@])@([A-Za-z_][A-Za-z0-9_]{0,31})(?![\w])")


def mentions_of(text: str, name: str) -> bool:
    return name.lower() in mentioned(text)


@dataclass(frozen=True)
class Conversation:
    name: str
    kind: Kind
    owner: str | None = None  # a private room's owner (lower case)

    @property
    def expires_when_empty(self) -> bool:
        """Only public rooms: private rooms and direct conversations keep their history."""
        return self.kind == "room"

    def url_for(self, me: str, peer_name: str | None = None) -> str:
        if self.kind == "dm":
            return f"/dm/{peer_name or dm_peer(self.name, me)}/"
        return f"/chat/{self.name}/"


@dataclass(frozen=True)
class Summary:
    """One line of a person's sidebar (GET /api/conversations)."""

    conversation: Conversation
    title: str  # a room's name, or the other person's name
    url: str
    unread: int
    mentions: int
    last_id: int
    last_activity: float | None

    def as_json(self) -> dict:
        return {
            "kind": self.conversation.kind,
            "name": self.title,
            "conversation": self.conversation.name,
            "url": self.url,
            "unread": self.unread,
            "mentions": self.mentions,
            "last_id": self.last_id,
            "last_activity": self.last_activity,
        }


class NameTaken(Exception):
    """A private room's name belongs to a room already (of any kind, in any letter case)."""


class Conversations:
    """Kinds, access, private rooms' members, each person's list and read markers."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._create_private = redis.register_script(_CREATE_PRIVATE)
        self._after_marker = redis.register_script(_AFTER_MARKER)
        self._mark_read = redis.register_script(_MARK_READ)

    # -- kinds and access ------------------------------------------------------------

    async def get(self, name: str) -> Conversation:
        """The conversation `name` names (a room without a private record is public)."""
        if is_dm(name):
            return Conversation(name, "dm")
        meta = await self._redis.hmget(Keys.room_meta(name), "kind", "owner")
        if meta[0] == b"private":
            return Conversation(name, "private", (meta[1] or b"").decode())
        return Conversation(name, "room")

    async def find_readable(self, typed: str, username: str) -> Conversation | None:
        """The room `typed` names in any letter case, if `username` may read it.

        One round trip when the name is typed as it was created (the usual case):
        its first casing, its kind and the membership are asked together.
        """
        me = username.lower()
        pipe = self._redis.pipeline(transaction=False)
        pipe.hget(Keys.room_names, typed.lower())
        pipe.hmget(Keys.room_meta(typed), "kind", "owner")
        pipe.sismember(Keys.room_access(typed), me)
        known, (kind, owner), member = await pipe.execute()
        if known is not None and known.decode() != typed:
            return await self.readable(known.decode(), username)
        if kind != b"private":
            return Conversation(typed, "room")
        return Conversation(typed, "private", (owner or b"").decode()) if member else None

    async def readable(self, name: str, username: str) -> Conversation | None:
        """The conversation if `username` may read it, else None (it "does not exist")."""
        conversation = await self.get(name)
        me = username.lower()
        if conversation.kind == "room":
            return conversation
        if conversation.kind == "dm":
            return conversation if me in dm_people(name) else None
        if await self._redis.sismember(Keys.room_access(name), me):
            return conversation
        return None

    # -- private rooms ---------------------------------------------------------------

    async def create_private(self, name: str, owner: str) -> None:
        """Create a private room owned by `owner`; NameTaken if the name is a room already."""
        if await self._redis.zscore(Keys.rooms, name) is not None:
            raise NameTaken(name)
        created = await self._create_private(
            keys=[Keys.room_seq(name), Keys.room_meta(name), Keys.room_access(name)],
            args=[owner.lower(), owner, repr(time.time())],
        )
        if not created:
            raise NameTaken(name)
        pipe = self._redis.pipeline(transaction=False)
        pipe.zadd(Keys.private_conversations, {name: time.time()})
        pipe.zadd(Keys.user_conversations(owner), {name: time.time()})
        await pipe.execute()

    async def members(self, name: str) -> list[str]:
        return sorted(m.decode() for m in await self._redis.smembers(Keys.room_access(name)))

    async def add_member(self, name: str, username: str) -> bool:
        """Add a member (lower case kept); False if they were one already."""
        # The room's access set and the person's list are in different hash
        # slots: one MULTI on a single Redis, a plain pipeline on a cluster
        # (each write is idempotent; the access set, written first, decides).
        pipe = self._redis.pipeline(transaction=not is_cluster(self._redis))
        pipe.sadd(Keys.room_access(name), username.lower())
        pipe.zadd(Keys.user_conversations(username), {name: time.time()})
        added, _ = await pipe.execute()
        return bool(added)

    async def remove_member(self, name: str, username: str) -> bool:
        """Remove a member; False if they were none."""
        # As in add_member: per-slot keys, a plain pipeline on a cluster.
        pipe = self._redis.pipeline(transaction=not is_cluster(self._redis))
        pipe.srem(Keys.room_access(name), username.lower())
        pipe.zrem(Keys.user_conversations(username), name)
        pipe.hdel(Keys.user_read(username), name)
        removed, _, _ = await pipe.execute()
        return bool(removed)

    # -- each person's list and read markers -----------------------------------------

    async def names(self, username: str) -> list[str]:
        """The conversations in a person's list (to follow for their sidebar)."""
        return [
            n.decode() for n in await self._redis.zrange(Keys.user_conversations(username), 0, -1)
        ]

    async def remember(self, username: str, name: str) -> None:
        """Put a conversation in a person's list (a public room they opened, a DM)."""
        await self._redis.zadd(Keys.user_conversations(username), {name: time.time()}, nx=True)

    async def mark_read(self, username: str, name: str, message_id: int) -> bool:
        """Move the read marker forward (never back); True if it moved."""
        moved = await self._mark_read(keys=[Keys.user_read(username)], args=[name, message_id])
        return bool(moved)

    async def read_marker(self, username: str, name: str) -> int:
        """The id `username` has read `name` up to (0: never read)."""
        return int(await self._redis.hget(Keys.user_read(username), name) or 0)

    async def display_names(self, lower_names: list[str]) -> dict[str, str]:
        """Lower-case usernames -> their displayed case (as registered)."""
        pipe = self._redis.pipeline(transaction=False)
        for name in lower_names:
            pipe.hget(Keys.user(name), "name")
        shown = await pipe.execute()
        return {n: (s.decode() if s else n) for n, s in zip(lower_names, shown, strict=True)}

    async def summaries(self, username: str) -> list[Summary]:
        """The person's sidebar: each readable conversation with its unread counts."""
        me = username.lower()
        names = [n.decode() for n in await self._redis.zrange(Keys.user_conversations(me), 0, -1)]
        if not names:
            return []
        pipe = self._redis.pipeline(transaction=False)
        pipe.hmget(Keys.user_read(me), names)
        for name in names:
            pipe.hmget(Keys.room_meta(name), "kind")
        results = await pipe.execute()
        markers = [int(m or 0) for m in results[0]]
        kinds = [k[0] for k in results[1:]]
        conversations, gone = [], []
        for name, kind in zip(names, kinds, strict=True):
            if is_dm(name):
                conversations.append(Conversation(name, "dm"))
            elif kind == b"private":
                conversations.append(Conversation(name, "private"))
            else:
                conversations.append(Conversation(name, "room"))
        pipe_results = await run_script_many(
            self._redis,
            self._after_marker,
            [
                (
                    [Keys.room_seq(conversation.name), Keys.room_history(conversation.name)],
                    [marker, UNREAD_READ_CAP],
                )
                for conversation, marker in zip(conversations, markers, strict=True)
            ],
        )
        peers = [dm_peer(c.name, me) for c in conversations if c.kind == "dm"]
        display_names = await self.display_names(peers) if peers else {}
        out = []
        for conversation, result in zip(conversations, pipe_results, strict=True):
            summary = _summary(conversation, result, me, display_names)
            if summary is None:
                gone.append(conversation.name)
            else:
                out.append(summary)
        if gone:  # deleted, or expired while empty
            await self._redis.zrem(Keys.user_conversations(me), *gone)
        out.sort(key=lambda s: -(s.last_activity or 0))
        return out


def _summary(
    conversation: Conversation, result: list, me: str, display_names: dict[str, str]
) -> Summary | None:
    exists, last_id, last = int(result[0]), int(result[1]), result[2]
    if not exists:
        return None
    unread = mentions = 0
    for raw in result[3:]:
        message = json.loads(raw)
        if message.get("username", "").lower() == me:
            continue
        unread += 1
        if conversation.kind == "dm" or mentions_of(message.get("text", ""), me):
            mentions += 1
    last_activity = json.loads(last)["ts"] if last else None
    if conversation.kind == "dm":
        peer = dm_peer(conversation.name, me)
        title = display_names.get(peer, peer)
        url = f"/dm/{title}/"
    else:
        title = conversation.name
        url = f"/chat/{conversation.name}/"
    return Summary(conversation, title, url, unread, mentions, last_id, last_activity)
