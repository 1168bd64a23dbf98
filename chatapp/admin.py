"""Admin actions shared by the admin page and the command line.

Every action changes Redis first (flags, sessions, room keys), then publishes
a control event on `Keys.control_channel`; every worker's ChatService closes
its matching sockets with 1008 when it reads the event. The command line
publishes the very same events, so it reaches running workers too. Each
action is written to the audit log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from chatapp.accounts.audit import AuditLog
from chatapp.accounts.sessions import end_all_sessions
from chatapp.accounts.users import Accounts, User
from chatapp.names import ROOM_RE
from chatapp.store.keys import Keys

log = logging.getLogger(__name__)

USER_DISABLED = "user disabled"
ROOM_DELETED = "room deleted"
LOGGED_OUT = "logged out"

# How long deleting a room waits for the closed sockets to leave before the
# keys go, so a message sent in the meantime cannot bring the history back.
ROOM_EMPTY_WAIT = 2.0

# -- control events (the format ChatService._control reads) --------------------


def close_user_event(username: str, reason: str) -> bytes:
    """The control event that closes every socket of `username` on every worker."""
    return json.dumps({"action": "close_user", "username": username, "reason": reason}).encode()


def close_room_event(room: str, reason: str) -> bytes:
    """The control event that closes every socket in `room` on every worker."""
    return json.dumps({"action": "close_room", "room": room, "reason": reason}).encode()


async def publish_control(redis: aioredis.Redis, event: bytes) -> int:
    """Publish a control event; return how many workers were listening."""
    return await redis.publish(Keys.control_channel, event)


# -- errors ----------------------------------------------------------------------


class NotFound(Exception):
    """No such user or room; the message says which."""


# -- what the admin page shows -----------------------------------------------------


@dataclass(frozen=True)
class RoomRow:
    name: str
    people: list[str]
    messages: int
    last_activity: float | None


async def live_members(redis: aioredis.Redis, rooms: list[str]) -> dict[str, list[str]]:
    """Room -> usernames with a live presence record there (any worker)."""
    now = time.time()
    pipe = redis.pipeline(transaction=False)
    for room in rooms:
        pipe.zrangebyscore(Keys.room_members(room), now, "+inf")
    results = await pipe.execute()
    out = {}
    for room, members in zip(rooms, results, strict=True):
        names = {m.decode().rpartition("|")[2] for m in members}
        out[room] = sorted(names, key=str.lower)
    return out


async def all_room_names(redis: aioredis.Redis) -> list[str]:
    return [n.decode() for n in await redis.zrange(Keys.rooms, 0, -1)]


async def online_users(redis: aioredis.Redis) -> dict[str, list[str]]:
    """Lower-case username -> the rooms they have a socket in right now."""
    members = await live_members(redis, await all_room_names(redis))
    online: dict[str, list[str]] = {}
    for room, names in members.items():
        for name in names:
            online.setdefault(name.lower(), []).append(room)
    return {name: sorted(rooms, key=str.lower) for name, rooms in online.items()}


async def search_rooms(
    redis: aioredis.Redis, query: str = "", offset: int = 0, limit: int = 50
) -> tuple[int, list[RoomRow]]:
    """Rooms whose name contains `query` (any case), newest activity first."""
    pairs = await redis.zrevrange(Keys.rooms, 0, -1, withscores=True)
    query = query.lower()
    rooms = [(n.decode(), s) for n, s in pairs if not query or query in n.decode().lower()]
    page = rooms[max(0, offset) : max(0, offset) + limit]
    names = [name for name, _ in page]
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.llen(Keys.room_history(name))
    lengths = await pipe.execute()
    people = await live_members(redis, names)
    rows = [
        RoomRow(name, people[name], length, score or None)
        for (name, score), length in zip(page, lengths, strict=True)
    ]
    return len(rooms), rows


async def room_exists(redis: aioredis.Redis, room: str) -> bool:
    if not ROOM_RE.fullmatch(room or ""):
        return False
    pipe = redis.pipeline(transaction=False)
    pipe.zscore(Keys.rooms, room)
    pipe.exists(Keys.room_seq(room), Keys.room_history(room), Keys.room_members(room))
    score, count = await pipe.execute()
    return score is not None or count > 0


# -- the actions -------------------------------------------------------------------


class AdminActions:
    """Create a user, disable, enable, grant, revoke, set a password, delete a room; all audited."""

    def __init__(
        self, redis: aioredis.Redis, accounts: Accounts, *, session_cookie_name: str
    ) -> None:
        self._redis = redis
        self._accounts = accounts
        self._cookie_name = session_cookie_name
        self.audit = AuditLog(redis)

    async def _user(self, name: str) -> User:
        user = await self._accounts.get(name)
        if user is None:
            raise NotFound(f"There is no user named {name!r}.")
        return user

    async def _set(self, name: str, flag: str, value: bool) -> User:
        user = await self._user(name)
        if not await self._accounts.set_flag_guarded(user.username, flag, value):
            raise NotFound(f"There is no user named {name!r}.")
        return user

    async def _log_out_everywhere(self, username: str, reason: str) -> int:
        """End every session of `username` and close their sockets on every worker."""
        ended = await end_all_sessions(self._redis, self._cookie_name, username)
        await publish_control(self._redis, close_user_event(username, reason))
        return ended

    async def create_user(
        self, actor: str, name: str, password: str, *, superuser: bool = False
    ) -> User:
        """Create a user (rules checked by the caller); raise accounts.UsernameTaken."""
        user = await self._accounts.create(name, password, superuser=superuser)
        detail = "superuser" if superuser else ""
        await self.audit.record(actor, "createuser", user.username, detail)
        return user

    async def disable_user(self, actor: str, name: str) -> User:
        """Refuse logins, end every session, close every socket (1008).

        Raise NotFound, or accounts.LastSuperuser if it would leave no enabled superuser.
        """
        user = await self._set(name, "disabled", True)
        # The flag is set first: from now on the auth middleware refuses the
        # user's requests and handshakes, so no new session or socket appears.
        ended = await self._log_out_everywhere(user.username, USER_DISABLED)
        await self.audit.record(actor, "disable", user.username, f"{ended} session(s) ended")
        return user

    async def enable_user(self, actor: str, name: str) -> User:
        user = await self._set(name, "disabled", False)
        await self.audit.record(actor, "enable", user.username)
        return user

    async def grant(self, actor: str, name: str) -> User:
        user = await self._set(name, "su", True)
        await self.audit.record(actor, "grant", user.username, "superuser")
        return user

    async def revoke(self, actor: str, name: str) -> User:
        user = await self._set(name, "su", False)
        await self.audit.record(actor, "revoke", user.username, "superuser")
        return user

    async def set_password(self, actor: str, name: str, password: str) -> User:
        """Change the password (rules checked by the caller) and log the user out everywhere."""
        user = await self._user(name)
        await self._accounts.set_password(user.username, password)
        ended = await self._log_out_everywhere(user.username, LOGGED_OUT)
        await self.audit.record(actor, "setpassword", user.username, f"{ended} session(s) ended")
        return user

    async def delete_room(self, actor: str, room: str, wait: float = ROOM_EMPTY_WAIT) -> None:
        """Close the room's sockets everywhere (1008), then remove history, presence, listing.

        The keys go only once the closed sockets have left (or after `wait`
        seconds), so a message sent while the close travels cannot recreate
        the history; sockets still there after the wait are closed again.
        """
        if not await room_exists(self._redis, room):
            raise NotFound(f"There is no room named {room!r}.")
        event = close_room_event(room, ROOM_DELETED)
        await publish_control(self._redis, event)
        present = await self._wait_until_empty(room, wait)
        pipe = self._redis.pipeline(transaction=True)
        pipe.delete(Keys.room_seq(room), Keys.room_history(room), Keys.room_members(room))
        pipe.zrem(Keys.rooms, room)
        await pipe.execute()
        if present:
            log.warning("room %s: %d user(s) still present after %.1fs", room, present, wait)
            await publish_control(self._redis, event)
        await self.audit.record(actor, "deleteroom", room)

    async def _wait_until_empty(self, room: str, wait: float) -> int:
        """Poll the room's live presence until nobody is left; return who remains."""
        deadline = time.monotonic() + wait
        while True:
            present = await self._redis.zcount(Keys.room_members(room), time.time(), "+inf")
            if not present or time.monotonic() >= deadline:
                return present
            await asyncio.sleep(0.02)
