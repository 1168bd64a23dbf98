"""Close sockets whose session ended by itself (expired, or deleted behind our back).

Explicit ends (logout, password change, "sign out everywhere", disable) close
their sockets at once through a control event. A session that simply expires
in Redis sends no event, so once per interval this worker asks Redis which of
its sockets' sessions still exist (one pipelined EXISTS per distinct session)
and closes the sockets of the ones that are gone with 1008.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from chatapp.chat.control import LOGGED_OUT
from chatapp.chat.hub import Hub
from chatapp.chat.wire import POLICY
from chatapp.tasks import cancel_and_wait

log = logging.getLogger(__name__)


class SessionWatch:
    """Every `interval` seconds: close the local sockets whose session is gone."""

    def __init__(
        self,
        hub: Hub,
        redis: aioredis.Redis,
        session_key: Callable[[str], str],
        interval: float,
    ) -> None:
        self._hub = hub
        self._redis = redis
        self._session_key = session_key
        self.interval = interval
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="session-watch")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except (RedisError, OSError) as exc:  # an outage is not an ended session
                log.warning("session check skipped: %s", exc)

    async def check(self) -> int:
        """Close the sockets of sessions that no longer exist; return how many."""
        sessions = sorted({c.session_id for c in self._hub.connections() if c.session_id})
        if not sessions:
            return 0
        pipe = self._redis.pipeline(transaction=False)
        for session_id in sessions:
            pipe.exists(self._session_key(session_id))
        gone = {s for s, alive in zip(sessions, await pipe.execute(), strict=True) if not alive}
        if not gone:
            return 0
        log.info("closing the sockets of %d ended session(s)", len(gone))
        return await self._hub.close_where(POLICY, LOGGED_OUT, sessions=gone)
