"""The audit log of admin actions: who did what to whom, and when.

A capped Redis list, newest first, shared by every worker and the command
line, so the admin page shows actions taken anywhere.
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


@dataclass(frozen=True)
class AuditEntry:
    ts: float
    actor: str  # a username, or "command line (<os user>)"
    action: str  # createuser, disable, enable, grant, revoke, deleteroom, setpassword
    target: str  # the user or room acted on
    detail: str = ""


class AuditLog:
    """Append and read the capped audit list."""

    def __init__(self, redis: aioredis.Redis, cap: int = AUDIT_CAP) -> None:
        self._redis = redis
        self._cap = cap

    async def record(self, actor: str, action: str, target: str, detail: str = "") -> AuditEntry:
        entry = AuditEntry(time.time(), actor, action, target, detail)
        pipe = self._redis.pipeline(transaction=True)
        pipe.lpush(Keys.audit, json.dumps(asdict(entry)))
        pipe.ltrim(Keys.audit, 0, self._cap - 1)
        await pipe.execute()
        log.info("audit: %s %s %s %s", actor, action, target, detail)
        return entry

    async def recent(self, limit: int = 50) -> list[AuditEntry]:
        """The newest `limit` entries, newest first (unreadable ones skipped)."""
        entries = []
        for raw in await self._redis.lrange(Keys.audit, 0, limit - 1):
            try:
                entries.append(AuditEntry(**json.loads(raw)))
            except (ValueError, TypeError):
                log.warning("skipped an unreadable audit entry: %r", raw[:100])
        return entries
