"""Small asyncio helpers."""

from __future__ import annotations

import asyncio


async def cancel_and_wait(task: asyncio.Task | None) -> None:
    """Cancel a background task and wait until it has really finished."""
    if task is None or task.done():
        return
    task.cancel()
    await asyncio.wait([task])
