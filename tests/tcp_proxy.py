"""A TCP proxy for tests that can make Redis subscriber connections die silently.

    python -m tests.tcp_proxy LISTEN_PORT TARGET_PORT

Forwards 127.0.0.1:LISTEN_PORT to 127.0.0.1:TARGET_PORT and prints `ready`.
On SIGUSR1 every connection open at that moment that has carried a
SUBSCRIBE stops forwarding in both directions but stays open: no FIN, no
RST, the way a NAT, a firewall or a failover drops a long-lived flow. New
connections are forwarded as usual.
"""

from __future__ import annotations

import asyncio
import signal
import sys


class Link:
    def __init__(self) -> None:
        self.subscriber = False
        self.dead = asyncio.Event()


async def _copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter, link: Link, up: bool):
    try:
        while not link.dead.is_set():
            data = await src.read(65536)
            if not data:
                break
            if up and b"SUBSCRIBE" in data.upper():
                link.subscriber = True
            if link.dead.is_set():
                break
            dst.write(data)
            await dst.drain()
    except ConnectionError:
        pass
    if link.dead.is_set():
        await asyncio.Event().wait()  # hold both sockets open, silent, forever
    dst.close()


async def main(listen_port: int, target_port: int) -> None:
    links: set[Link] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            writer.close()
            return
        link = Link()
        links.add(link)
        try:
            await asyncio.gather(
                _copy(reader, up_writer, link, up=True), _copy(up_reader, writer, link, up=False)
            )
        finally:
            links.discard(link)

    def blackhole() -> None:
        hit = [link for link in links if link.subscriber]
        for link in hit:
            link.dead.set()
        print(f"blackholed {len(hit)} subscriber connection(s)", flush=True)

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, blackhole)
    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
