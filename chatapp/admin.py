"""Admin actions shared by the admin page and the command line.

Every action changes Redis first (flags, sessions, room keys), then publishes
a control event (`chat.control`); every worker's chat service closes its
matching sockets with 1008 when it reads the event. The command line
publishes the very same events, so it reaches running workers too. Each
action is written to the audit log.
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis

from chatapp.accounts.audit import AuditLog, SignInLog
from chatapp.accounts.sessions import end_all_sessions
from chatapp.accounts.users import Accounts, User
from chatapp.chat import control
from chatapp.chat.control import (
    LOGGED_OUT,
    ROOM_DELETED,
    USER_DISABLED,
    CloseRoom,
    CloseUser,
)
from chatapp.chat.rooms import RoomDirectory
from chatapp.i18n import _
from chatapp.store.keys import Keys

log = logging.getLogger(__name__)


# How long deleting a room waits for the closed sockets to leave before the
# keys go, so a message sent in the meantime cannot bring the history back.
ROOM_EMPTY_WAIT = 2.0

# -- errors ----------------------------------------------------------------------


class NotFound(Exception):
    """No such user or room; the message says which."""


# -- the actions -------------------------------------------------------------------


def _ended(count: int) -> str:
    return "1 session ended" if count == 1 else f"{count} sessions ended"


class AdminActions:
    """Create a user, disable, enable, grant, revoke, set a password, delete a room; all audited."""

    def __init__(
        self,
        redis: aioredis.Redis,
        accounts: Accounts,
        directory: RoomDirectory,
        *,
        session_cookie_name: str,
    ) -> None:
        self._redis = redis
        self._accounts = accounts
        self._directory = directory
        self._cookie_name = session_cookie_name
        self.audit = AuditLog(redis)
        self.signins = SignInLog(redis)

    async def _user(self, name: str) -> User:
        user = await self._accounts.get(name)
        if user is None:
            raise NotFound(_("There is no user named {name}.").format(name=repr(name)))
        return user

    async def _set(self, name: str, flag: str, value: bool) -> User:
        user = await self._user(name)
        if not await self._accounts.set_flag_guarded(user.username, flag, value):
            raise NotFound(_("There is no user named {name}.").format(name=repr(name)))
        return user

    async def _log_out_everywhere(self, username: str, reason: str) -> int:
        """End every session of `username` and close their sockets on every worker.

        Returns how many sessions were alive and ended. A new session
        generation first: a session the index does not list (or one being
        saved right now) is refused all the same.
        """
        await self._accounts.new_session_generation(username)
        ended, _ = await end_all_sessions(self._redis, self._cookie_name, username)
        await control.publish(self._redis, CloseUser(username, reason))
        return ended

    async def log_out_everywhere(self, actor: str, name: str) -> tuple[User, int]:
        """End every session of a user (they stay enabled): (the user, sessions ended)."""
        user = await self._user(name)
        ended = await self._log_out_everywhere(user.username, LOGGED_OUT)
        await self.audit.record(actor, "logout-everywhere", user.username, _ended(ended))
        return user, ended

    async def create_user(
        self, actor: str, name: str, password: str, *, superuser: bool = False
    ) -> User:
        """Create a user (rules checked by the caller); raise accounts.UsernameTaken."""
        user = await self._accounts.create(name, password, superuser=superuser)
        detail = "superuser" if superuser else ""
        await self.audit.record(actor, "createuser", user.username, detail)
        return user

    async def disable_user(self, actor: str, name: str) -> tuple[User, int]:
        """Refuse logins, end every session, close every socket (1008): (user, sessions ended).

        Raise NotFound, or accounts.LastSuperuser if it would leave no enabled superuser.
        """
        user = await self._set(name, "disabled", True)
        # The flag is set first: from now on the auth middleware refuses the
        # user's requests and handshakes, so no new session or socket appears.
        ended = await self._log_out_everywhere(user.username, USER_DISABLED)
        await self.audit.record(actor, "disable", user.username, _ended(ended))
        return user, ended

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

    async def set_password(self, actor: str, name: str, password: str) -> tuple[User, int]:
        """Change the password (rules checked by the caller) and log the user out everywhere.

        Returns the user and how many sessions were ended.
        """
        user = await self._user(name)
        await self._accounts.set_password(user.username, password)
        ended = await self._log_out_everywhere(user.username, LOGGED_OUT)
        await self.audit.record(actor, "setpassword", user.username, _ended(ended))
        return user, ended

    async def delete_room(self, actor: str, room: str, wait: float = ROOM_EMPTY_WAIT) -> None:
        """Close the room's sockets everywhere (1008), then remove history, presence, listing.

        The keys go only once the closed sockets have left (or after `wait`
        seconds), so a message sent while the close travels cannot recreate
        the history; sockets still there after the wait are closed again.
        """
        if not await self._directory.exists(room):
            raise NotFound(_("There is no room named {room}.").format(room=repr(room)))
        event = CloseRoom(room, ROOM_DELETED)
        await control.publish(self._redis, event)
        present = await self._wait_until_empty(room, wait)
        await self._directory.delete(room)
        if present:
            log.warning("room %s: %d user(s) still present after %.1fs", room, present, wait)
            await control.publish(self._redis, event)
        await self.audit.record(actor, "deleteroom", room)

    async def _wait_until_empty(self, room: str, wait: float) -> int:
        """Poll the room's live presence until nobody is left; return who remains."""
        deadline = time.monotonic() + wait
        while True:
            present = await self._redis.zcount(Keys.room_members(room), time.time(), "+inf")
            if not present or time.monotonic() >= deadline:
                return present
            await asyncio.sleep(0.02)
