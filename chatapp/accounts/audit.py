"""The audit logs: admin actions, and sign-ins: who did what to whom, from where, when.

Capped Redis lists, newest first, shared by every worker and the command
line, so the admin page shows actions taken anywhere. Admin actions and
sign-in events (`SignInLog`) are kept apart, so a flood of failed logins
cannot push the admin actions out. What comes from a request is cut and
made printable before it is stored (`shown_name`, `clean`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass

import redis.asyncio as aioredis

from chatapp.store.keys import Keys

log = logging.getLogger(__name__)

AUDIT_CAP = 1000  # entries kept; older ones are trimmed
SIGNIN_CAP = 2000  # sign-in events kept
SHOWN_NAME = 40  # characters of a submitted username an entry keeps
MAX_TEXT = 120  # characters of any other request-derived text


def clean(text: str, limit: int = MAX_TEXT) -> str:
    """`text` cut to `limit` characters (with "…"), control characters as "?"."""
    cut = text[:limit]
    cut = "".join(ch if ch.isprintable() else "?" for ch in cut)
    return cut + "…" if len(text) > limit else cut


def shown_name(username: str) -> str:
    """A submitted username as an entry keeps it: at most 40 characters, printable."""
    return clean(username, SHOWN_NAME) or "(empty)"


@dataclass(frozen=True)
class AuditEntry:
    ts: float
    actor: str  # a username, or "command line (<os user>)"
    action: str  # createuser, disable, enable, grant, revoke, deleteroom, setpassword
    target: str  # the user or room acted on
    detail: str = ""
    address: str = ""  # the client address, for sign-in events


class AuditLog:
    """Append and read the capped audit list."""

    def __init__(self, redis: aioredis.Redis, cap: int = AUDIT_CAP, key: str = Keys.audit) -> None:
        self._redis = redis
        self._cap = cap
        self._key = key

    async def record(
        self, actor: str, action: str, target: str, detail: str = "", address: str = ""
    ) -> AuditEntry:
        entry = AuditEntry(time.time(), actor, action, target, detail, address)
        pipe = self._redis.pipeline(transaction=True)  # one key: fine on a cluster too
        pipe.lpush(self._key, json.dumps(asdict(entry)))
        pipe.ltrim(self._key, 0, self._cap - 1)
        await pipe.execute()
        where = f" from {address}" if address else ""
        log.info("audit: %s %s %s %s%s", actor, action, target, detail, where)
        return entry

    async def recent(self, limit: int = 50) -> list[AuditEntry]:
        """The newest `limit` entries, newest first (unreadable ones skipped)."""
        entries = []
        for raw in await self._redis.lrange(self._key, 0, limit - 1):
            try:
                entries.append(AuditEntry(**json.loads(raw)))
            except (ValueError, TypeError):
                log.warning("skipped an unreadable audit entry: %r", raw[:100])
        return entries


# Sign-in events (actions of the SignInLog).
LOGIN = "login"
LOGIN_FAILED = "login failed"
LOGIN_THROTTLED = "login throttled"
LOGOUT = "logout"
PASSWORD_CHANGED = "password changed"  # noqa: S105 (an event name)
PASSWORD_CHANGE_FAILED = "password change failed"  # noqa: S105
SESSION_ENDED = "session ended"
OTHER_SESSIONS_ENDED = "other sessions ended"


class SignInLog(AuditLog):
    """Sign-ins and session changes, each with the client address."""

    def __init__(self, redis: aioredis.Redis, cap: int = SIGNIN_CAP) -> None:
        super().__init__(redis, cap, Keys.signin_audit)

    async def event(
        self, action: str, username: str, address: str, detail: str = "", actor: str = ""
    ) -> AuditEntry:
        """Record `action` for `username` (as submitted: cut and cleaned) from `address`."""
        name = shown_name(username)
        return await self.record(
            actor or name, action, name, clean(detail), clean(address, 64) or "unknown"
        )
