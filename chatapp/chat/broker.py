"""Store-and-publish and history reads over Redis; knows nothing of sockets.

Contract: a message is stored and published in one Lua script, so the room's
next id, the append to its history list, the trim to the limit and the
publish happen atomically: ids, history order and delivery order agree.
Delivery over pub/sub is at most once; the worker's rooms fill gaps from
history after a reconnect (`chat.local_rooms`), and clients resume with `?after=ID`.
Subscribing is `chat.subscriber`'s job.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from chatapp.chat import frames
from chatapp.chat.listing import ActivityListing
from chatapp.store.client import Store
from chatapp.store.keys import Keys

log = logging.getLogger(__name__)

# KEYS: seq, history, channel, rate, changes (all in the room's hash slot)
# ARGV: body (after "ts"), history limit, rate limit, rate window (ms),
# reply_to (0: none)
# Returns the stored message, -1 when the sender is over the rate limit, -2
# when reply_to is not a held message.
_APPEND = """
local sent = redis.call('INCR', KEYS[4])
if sent == 1 then redis.call('PEXPIRE', KEYS[4], ARGV[4]) end
if sent > tonumber(ARGV[3]) then return -1 end
local reply_to = tonumber(ARGV[5])
if reply_to > 0 then
  local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
  if reply_to > seq or reply_to <= seq - redis.call('LLEN', KEYS[2]) then return -2 end
end
local id = redis.call('INCR', KEYS[1])
local now = redis.call('TIME')
local msg = '{"type":"message","id":' .. id .. ',"ts":' .. now[1] .. '.'
            .. string.format('%06d', now[2]) .. ARGV[1]
redis.call('RPUSH', KEYS[2], msg)
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
local gone = id - tonumber(ARGV[2])
if gone > 0 then redis.call('ZREM', KEYS[5], gone) end
redis.call('PERSIST', KEYS[1])
redis.call('PERSIST', KEYS[2])
redis.call('PUBLISH', KEYS[3], msg)
return msg
"""

# With `redis.wait_replicas`, the append script stores without publishing
# (_APPEND less its PUBLISH line), WAIT follows on the same connection, and
# once enough replicas hold the message this publishes every stored message
# not published yet, up to ARGV[1], in id order, exactly once whoever runs it.
# A message whose WAIT fell short is published with the next one that is
# replicated (replication is one ordered stream per primary, so that one's
# WAIT covers it): an echo then always means "replicated".
# KEYS: published, history, seq, channel (the room's slot). Returns how many.
_PUBLISH_UPTO = """
local seq = tonumber(redis.call('GET', KEYS[3]) or '0')
local pub = tonumber(redis.call('GET', KEYS[1]) or '0')
if pub > seq then pub = 0 end
local upto = math.min(tonumber(ARGV[1]), seq)
if upto <= pub then return 0 end
local first = seq - redis.call('LLEN', KEYS[2]) + 1
local from = math.max(pub + 1, first)
local held = redis.call('LRANGE', KEYS[2], from - first, upto - first)
for _, m in ipairs(held) do redis.call('PUBLISH', KEYS[4], m) end
redis.call('SET', KEYS[1], upto)
return #held
"""

# An edit, delete or reaction toggle of a held message, stored and published
# in one step like a message: the message is rewritten in place (its list
# index follows from its id), takes the room's next rev, and the changes zset
# records id -> rev so a resume finds what changed after its rev.
# KEYS: seq, history, channel, rate, rev, changes
# ARGV: action (edit | delete | react), id, user (lower case), the user's name,
#       text or emoji, moderator (1: may delete anyone's), rate limit, rate
#       window (ms), most reactions per message
# Returns the update frame, or -1 rate limited, -2 not held (or deleted),
# -3 forbidden, -4 too many different reactions.
_CHANGE = """
local sent = redis.call('INCR', KEYS[4])
if sent == 1 then redis.call('PEXPIRE', KEYS[4], ARGV[8]) end
if sent > tonumber(ARGV[7]) then return -1 end
local id = tonumber(ARGV[2])
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
local index = redis.call('LLEN', KEYS[2]) - 1 - (seq - id)
if id > seq or index < 0 then return -2 end
local raw = redis.call('LINDEX', KEYS[2], index)
local m = cjson.decode(raw)
if m.deleted then return -2 end
local own = string.lower(m.username) == ARGV[3]
local action = ARGV[1]
local edited = string.match(raw, ',"edited":([%d%.]+)')
local reactions = m.reactions
if type(reactions) ~= 'table' then reactions = nil end
local now = redis.call('TIME')
if action == 'edit' then
  if not own then return -3 end
  m.text = ARGV[5]
  edited = now[1] .. '.' .. string.format('%06d', now[2])
elseif action == 'delete' then
  if not own and ARGV[6] ~= '1' then return -3 end
  m.text = ''
  m.deleted = true
  edited = nil
  reactions = nil
else
  reactions = reactions or {}
  local people = reactions[ARGV[5]]
  if people == nil then
    local kinds = 0
    for _ in pairs(reactions) do kinds = kinds + 1 end
    if kinds >= tonumber(ARGV[9]) then return -4 end
    reactions[ARGV[5]] = {ARGV[4]}
  else
    local found = nil
    for i, name in ipairs(people) do
      if string.lower(name) == ARGV[3] then found = i end
    end
    if found then table.remove(people, found) else people[#people + 1] = ARGV[4] end
    if #people == 0 then reactions[ARGV[5]] = nil end
  end
  if next(reactions) == nil then reactions = nil end
end
local rev = redis.call('INCR', KEYS[5])
local client_id = 'null'
if type(m.client_id) == 'string' then client_id = cjson.encode(m.client_id) end
local parts = {
  '{"type":"message","id":', string.format('%d', id),
  ',"ts":', string.match(raw, '"ts":([%d%.]+)'),
  ',"room":', cjson.encode(m.room), ',"username":', cjson.encode(m.username),
  ',"text":', cjson.encode(m.text), ',"client_id":', client_id}
if type(m.reply_to) == 'number' then
  parts[#parts + 1] = ',"reply_to":' .. string.format('%d', m.reply_to)
end
if edited then parts[#parts + 1] = ',"edited":' .. edited end
if m.deleted then parts[#parts + 1] = ',"deleted":true' end
if reactions then parts[#parts + 1] = ',"reactions":' .. cjson.encode(reactions) end
parts[#parts + 1] = ',"rev":' .. rev .. '}'
local msg = table.concat(parts)
redis.call('LSET', KEYS[2], index, msg)
redis.call('ZADD', KEYS[6], rev, id)
local update = '{"type":"update","rev":' .. rev .. ',"message":' .. msg .. '}'
redis.call('PUBLISH', KEYS[3], update)
return update
"""

# Messages with id > ARGV[1] (all when ARGV[1] is past seq: ids started over),
# and with ARGV[2] >= 0 the held messages changed after rev ARGV[2].
# ARGV[3] >= 0: of those, only the newest ARGV[3] (a newcomer's first frame is
# bounded), except that ARGV[4] >= 0 asks for every id > ARGV[4] too (what the
# sockets already in the room have not been given).
# The list holds ids seq-len+1 .. seq (consecutive), so an index follows from
# an id. KEYS: seq, history, rev, changes.
# Returns {seq, first held id, rev, count, read from (every held id above it is
# in the messages), messages..., (rev, message)...}.
_HISTORY_AFTER = """
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
local len = redis.call('LLEN', KEYS[2])
local first = seq - len + 1
local from = tonumber(ARGV[1])
if from > seq then from = 0 end
local newest = tonumber(ARGV[3])
if newest >= 0 and seq - newest > from then from = seq - newest end
local keep = tonumber(ARGV[4])
if keep >= 0 and keep < from then from = keep end
local start = from - first + 1
if start < 0 then start = 0 end
local held = redis.call('LRANGE', KEYS[2], start, -1)
local out = {seq, first, tonumber(redis.call('GET', KEYS[3]) or '0'), #held, from}
for _, m in ipairs(held) do out[#out + 1] = m end
if tonumber(ARGV[2]) >= 0 then
  local changed = redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. ARGV[2], '+inf', 'WITHSCORES')
  for i = 1, #changed, 2 do
    local id = tonumber(changed[i])
    if id >= first and id <= seq then
      out[#out + 1] = tonumber(changed[i + 1])
      out[#out + 1] = redis.call('LINDEX', KEYS[2], id - first)
    end
  end
end
return out
"""

# A page of held messages: up to ARGV[2] with id < ARGV[1] (-1: the newest),
# oldest first, read with the newest id, the oldest held id and the room's rev
# in one step. KEYS: seq, history, rev.
# Returns {seq, first held id, rev, first id returned, messages...}.
_PAGE = """
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
local len = redis.call('LLEN', KEYS[2])
local first = seq - len + 1
local rev = tonumber(redis.call('GET', KEYS[3]) or '0')
local last = seq
local before = tonumber(ARGV[1])
if before >= 0 and before - 1 < last then last = before - 1 end
local from = last - tonumber(ARGV[2]) + 1
if from < first then from = first end
if last < from then return {seq, first, rev, last + 1} end
local out = {seq, first, rev, from}
for _, m in ipairs(redis.call('LRANGE', KEYS[2], from - first, last - first)) do
  out[#out + 1] = m
end
return out
"""


def _sharded(script: str, cluster: bool, channel: str = "KEYS[3]") -> str:
    """The script publishing with SPUBLISH on a cluster (`channel` is in KEYS)."""
    if not cluster:
        return script
    assert script.count(f"redis.call('PUBLISH', {channel}") == 1
    return script.replace(f"redis.call('PUBLISH', {channel}", f"redis.call('SPUBLISH', {channel}")


_APPEND_QUIET = _APPEND.replace("redis.call('PUBLISH', KEYS[3], msg)\n", "")
assert "PUBLISH" not in _APPEND_QUIET


@dataclass(frozen=True)
class Change:
    """A held message's present state, last changed at `rev`."""

    rev: int
    message: bytes

    @property
    def id(self) -> int:
        return frames.message_id(self.message) or 0


@dataclass(frozen=True)
class History:
    messages: list[bytes]
    truncated: bool
    last_id: int  # the room's newest id when read (0: no message yet)
    first_id: int  # the oldest id still held (last_id + 1 when none is)
    rev: int = 0  # the room's latest change number when read
    changes: list[Change] = field(default_factory=list)  # after the rev asked for, by rev
    read_from: int = 0  # every held message with a greater id is in `messages`


@dataclass(frozen=True)
class Page:
    """Held messages read in one step (`Broker.page`), oldest first."""

    messages: list[bytes]
    last_id: int  # the room's newest id when read (0: no message yet)
    first_id: int  # the oldest id still held (last_id + 1 when none is)
    rev: int  # the room's latest change number when read
    start: int  # the id of the first message returned (one past the end when none)

    @property
    def more_before(self) -> bool:
        """Older messages are held than those returned."""
        return self.start > self.first_id

    @property
    def more_after(self) -> bool:
        """Newer messages are held than those returned."""
        return self.start + len(self.messages) <= self.last_id


class RateLimited(Exception):
    """The sender is over `chat.rate_limit_messages` per `chat.rate_limit_seconds`."""


class NotHeld(Exception):
    """No such message in the room's history any more (or it was deleted)."""


class Forbidden(Exception):
    """That change is not the sender's to make."""


class TooManyReactions(Exception):
    """The message already has the most different reactions allowed."""


_REFUSALS = {-1: RateLimited, -2: NotHeld, -3: Forbidden, -4: TooManyReactions}
MAX_REACTIONS = 20  # different emoji on one message
# The WAIT sender's attempts while a room's slot moves (-MOVED, -ASK, -TRYAGAIN
# during a migration, CLUSTERDOWN during a failover), and its first backoff:
# doubling, about 2.5 s in all, so a live reshard (milliseconds) refuses nothing.
SLOT_MOVE_ATTEMPTS = 8
SLOT_MOVE_BACKOFF = 0.02


class Unavailable(Exception):
    """Redis did not take the message, or did not answer in time (`maybe_stored`:
    a hung Redis may still run the script when it wakes up)."""

    def __init__(self, detail: str, maybe_stored: bool = False, unreplicated: bool = False) -> None:
        super().__init__(detail)
        self.maybe_stored = maybe_stored
        # Stored on the primary, but fewer replicas than `redis.wait_replicas`
        # confirmed it in time.
        self.unreplicated = unreplicated


def _script_keys(room: str, username: str) -> list[str]:
    """The first KEYS of the append and change scripts: seq, history, channel, rate."""
    return [
        Keys.room_seq(room),
        Keys.room_history(room),
        Keys.room_channel(room),
        Keys.send_rate(room, username),
    ]


class Broker:
    """Store-and-publish and history reads for every room."""

    def __init__(
        self,
        store: Store,
        *,
        history_limit: int,
        rate_limit: int,
        rate_window: float,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
    ) -> None:
        self._redis = store.raw
        self._cluster = store.cluster
        self._history_limit = history_limit
        self._rate_limit = rate_limit
        self._rate_window_ms = max(1, int(rate_window * 1000))
        # On a cluster room channels are shard channels: the scripts SPUBLISH
        # (Redis 7.0+ allows it in a script for a channel declared in KEYS, of
        # the script's slot). Two texts rather than a command name in ARGV: the
        # single-Redis script stays as it was.
        self._append = self._redis.register_script(_sharded(_APPEND, self._cluster))
        self._history_after = self._redis.register_script(_HISTORY_AFTER)
        self._change = self._redis.register_script(_sharded(_CHANGE, self._cluster))
        self._page = self._redis.register_script(_PAGE)
        self.listing = ActivityListing(self._redis)  # rooms' activity times, in batches
        self._wait_replicas = wait_replicas
        self._wait_ms = max(1, int(wait_timeout * 1000))
        if wait_replicas:
            self._append_quiet = self._redis.register_script(_APPEND_QUIET)
            self._publish_upto = self._redis.register_script(
                _sharded(_PUBLISH_UPTO, self._cluster, "KEYS[4]")
            )

    # -- publishing and reading -------------------------------------------------

    async def publish_message(
        self,
        room: str,
        username: str,
        text: str,
        client_id: str | None,
        *,
        public: bool = True,
        reply_to: int | None = None,
    ) -> bytes:
        """Store and publish a message; return it as stored (its id is `frames.message_id`).

        `public`: list the room in the public room list (else in the list of
        private conversations, which only the admin page shows). Raise
        RateLimited, or NotHeld when `reply_to` is not a held message.
        """
        body = frames.message_body(room, username, text, client_id, reply_to)
        keys = [*_script_keys(room, username), Keys.room_changes(room)]
        args = [body, self._history_limit, self._rate_limit, self._rate_window_ms, reply_to or 0]
        if self._wait_replicas:
            result = await self._append_replicated(room, keys, args)
        else:
            result = await self._run(self._append, keys=keys, args=args)
        if isinstance(result, int):
            raise _REFUSALS[result]
        if frames.message_id(result) == 1:
            await self.listing.list_now(room, public)
        else:
            self.listing.touch(room, public)
        return result

    async def change_message(
        self,
        room: str,
        username: str,
        action: str,
        message_id: int,
        value: str = "",
        *,
        moderator: bool = False,
    ) -> bytes:
        """Edit (`value`: the new text), delete or toggle a reaction (`value`: the
        emoji) of a held message; store and publish its new state under the
        room's next rev. Return the `update` frame.

        Raise RateLimited, NotHeld, Forbidden (edit: not the author; delete:
        not the author and not `moderator`) or TooManyReactions.
        """
        result = await self._run(
            self._change,
            keys=[*_script_keys(room, username), Keys.room_rev(room), Keys.room_changes(room)],
            args=[
                action,
                message_id,
                username.lower(),
                username,
                value,
                "1" if moderator else "0",
                self._rate_limit,
                self._rate_window_ms,
                MAX_REACTIONS,
            ],
        )
        if isinstance(result, int):
            raise _REFUSALS[result]
        return result

    # -- redis.wait_replicas -------------------------------------------------------------

    async def _append_replicated(self, room: str, keys: list, args: list) -> bytes | int:
        """Store (not publish), WAIT on that connection, publish once replicated.

        Unavailable(maybe_stored=True) when fewer replicas than asked confirmed
        in time: the message is on the primary and shows up (is published)
        with the next replicated one, unless a failover loses it.
        """
        if self._cluster:
            stored, acked = await self._script_and_wait_on_node(keys, args)
        else:
            # A plain pipeline is one connection: WAIT counts the script's writes.
            pipe = self._redis.pipeline(transaction=False)
            await self._append_quiet(keys=keys, args=args, client=pipe)
            pipe.execute_command("WAIT", self._wait_replicas, self._wait_ms)
            stored, acked = await self._run(pipe.execute)
        if isinstance(stored, int):
            return stored  # refused: nothing stored, nothing to wait for
        if int(acked) < self._wait_replicas:
            raise Unavailable(
                f"WAIT {self._wait_replicas}: {acked} replica(s) confirmed in {self._wait_ms} ms",
                maybe_stored=True,
                unreplicated=True,
            )
        try:
            await self._publish_upto(
                keys=[Keys.room_published(room), keys[1], keys[0], keys[2]],
                args=[frames.message_id(stored)],
            )
        except (RedisError, OSError) as exc:
            # Stored and replicated: the next message, or the gap fill after the
            # subscriber re-homes, delivers it.
            log.warning("room %s: publish after WAIT failed: %s", room, exc)
        return stored

    async def _script_and_wait_on_node(self, keys: list, args: list) -> tuple:
        """EVALSHA then WAIT, pipelined on one connection to the primary of the
        keys' slot (WAIT counts that connection's writes), following MOVED/ASK."""
        rc = self._redis
        script = self._append_quiet
        asking = None
        for attempt in range(SLOT_MOVE_ATTEMPTS):
            node = asking or rc.get_node_from_key(keys[0])
            commands = [("EVALSHA", script.sha, len(keys), *keys, *args)]
            if asking is not None:
                commands.insert(0, ("ASKING",))
            commands.append(("WAIT", self._wait_replicas, self._wait_ms))
            conn = node.acquire_connection()
            sent = False
            replies: list = []
            try:
                await conn.send_packed_command(conn.pack_commands(commands))
                sent = True
                for _ in commands:
                    try:
                        replies.append(await conn.read_response())
                    except ResponseError as exc:
                        replies.append(exc)
            except (RedisError, OSError) as exc:
                await conn.disconnect()
                timed_out = isinstance(exc, RedisTimeoutError | TimeoutError)
                raise Unavailable(str(exc), maybe_stored=sent and timed_out) from exc
            finally:
                node.release(conn)
            stored, acked = replies[-2], replies[-1]
            asking = None
            if isinstance(stored, NoScriptError):
                await rc.script_load(script.script)
            elif isinstance(stored, AskError):
                asking = rc.get_node(host=stored.host, port=stored.port)
            elif isinstance(stored, MovedError | TryAgainError | ClusterDownError):
                if not isinstance(stored, MovedError):  # mid-migration or mid-failover
                    await asyncio.sleep(SLOT_MOVE_BACKOFF * 2**attempt)
                await rc.nodes_manager.initialize()  # the slot map now
            elif isinstance(stored, ResponseError):
                raise Unavailable(str(stored))
            else:
                return stored, acked if not isinstance(acked, Exception) else 0
        raise Unavailable("the room's slot kept moving")

    @staticmethod
    async def _run(call, **kwargs) -> bytes | int | list:
        try:
            return await call(**kwargs)
        except (RedisError, OSError) as exc:
            timed_out = isinstance(exc, RedisTimeoutError | TimeoutError)
            raise Unavailable(str(exc), maybe_stored=timed_out) from exc

    async def publish_frame(self, room: str, frame: bytes) -> None:
        """Publish a frame that is not stored (presence, typing) to everyone in the room."""
        if self._cluster:
            await self._redis.spublish(Keys.room_channel(room), frame)
        else:
            await self._redis.publish(Keys.room_channel(room), frame)

    async def history(
        self,
        room: str,
        after: int | None = None,
        changed_after: int | None = None,
        *,
        newest: int | None = None,
        keep: int | None = None,
    ) -> History:
        """The held messages (all, or those with id > after) and whether some were
        missed; with `changed_after`, also every held message changed after that rev.

        `newest`: of those, only the newest `newest` (a first frame is bounded),
        except that with `keep` every message with id > keep is read too.
        `History.read_from` says where the messages start.
        """
        result = await self._history_after(
            keys=[
                Keys.room_seq(room),
                Keys.room_history(room),
                Keys.room_rev(room),
                Keys.room_changes(room),
            ],
            args=[
                after or 0,
                -1 if changed_after is None else changed_after,
                -1 if newest is None else newest,
                -1 if keep is None else keep,
            ],
        )
        last_id, first_id, rev, count, read_from = (int(n) for n in result[:5])
        truncated = after is not None and (after > last_id or after < first_id - 1)
        changed = result[5 + count :]
        changes = [Change(int(changed[i]), changed[i + 1]) for i in range(0, len(changed), 2)]
        changes.sort(key=lambda change: change.rev)
        messages = list(result[5 : 5 + count])
        return History(messages, truncated, last_id, first_id, rev, changes, read_from)

    async def page(self, room: str, before: int | None, limit: int) -> Page:
        """Up to `limit` held messages with id < `before` (None: the newest), oldest
        first, with the room's newest id, oldest held id and rev, read in one step."""
        result = await self._page(
            keys=[Keys.room_seq(room), Keys.room_history(room), Keys.room_rev(room)],
            args=[-1 if before is None else before, limit],
        )
        last_id, first_id, rev, start = (int(n) for n in result[:4])
        return Page(list(result[4:]), last_id, first_id, rev, start)

    async def rev(self, room: str) -> int:
        """The room's latest change number (0: nothing changed yet)."""
        return int(await self._redis.get(Keys.room_rev(room)) or 0)

    async def last_id(self, room: str) -> int:
        """The room's newest message id (0: none yet)."""
        return int(await self._redis.get(Keys.room_seq(room)) or 0)
