"""A chat client in its own process, for a test to freeze with SIGSTOP.

    python -m tests.stuck_client BASE_URL ROOM COOKIE_HEADER

Opens the room's socket as a browser would (cookie, Origin), reads the
history frame, prints `ready <local port>` and then reads frames like any
client, until the test freezes it (no pong, no close) or kills it.
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp


async def main(base: str, room: str, cookie: str) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(
            f"{base}/ws/chat/{room}/", headers={"Origin": base, "Cookie": cookie}
        )
        await ws.receive()  # the history frame
        port = ws._writer.transport.get_extra_info("sockname")[1]
        print("ready", port, flush=True)
        async for _ in ws:
            pass


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
