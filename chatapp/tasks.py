"""Small asyncio helpers."""

from __future__ import annotations

import asyncio


async def cancel_and_wait(task: asyncio.Task | None) -> None:
    """Cancel a background task and wait until it has really finished.

    Cancelled again every second while it runs: redis-py (8.1, on Python 3.11)
    can swallow a cancellation that lands while it opens a connection, and
    the task then carries on as if nothing happened.
    """
    while task is not None and not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=1.0)
