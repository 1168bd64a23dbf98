"""The store's Redis client under bursts of concurrent commands."""

from __future__ import annotations

import asyncio

from chatapp.store.client import POOL_SIZE, make_store


async def test_a_burst_beyond_the_pool_waits_instead_of_failing(any_store_url):
    store = make_store(any_store_url)
    try:
        results = await asyncio.gather(
            *(store.raw.incr("burst") for _ in range(3 * POOL_SIZE)), return_exceptions=True
        )
        assert not [r for r in results if isinstance(r, Exception)]
        assert sorted(results) == list(range(1, 3 * POOL_SIZE + 1))
    finally:
        await store.close()
