"""Embed the asyncio adapter in your own asyncio program.

The program runs a task of its own (a tiny backend made with ``asyncio.start_server``),
runs the proxy next to it with ``serve_asyncio``, sends one request through the proxy,
prints the response, and shuts the proxy down gracefully. Pass ``--uvloop`` to run the
same program on uvloop.

Run it from a checkout (or with sansproxy installed)::

    PYTHONPATH=.:adapters python examples/embed_asyncio.py
"""

from __future__ import annotations

import asyncio
import logging
import sys

from sansproxy.config import Listener, ProxyConfig, Server, Upstream
from sansproxy_asyncio import serve_asyncio

BODY = b"hello from the embedded backend\n"


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The backend: one fixed response per connection, then close."""
    try:
        await reader.readuntil(b"\r\n\r\n")
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(BODY)}\r\nConnection: close\r\n\r\n"
        writer.write(head.encode() + BODY)
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
        await writer.wait_closed()


async def fetch(port: int, path: str) -> bytes:
    """One HTTP/1.1 request; the whole response, head and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {path} HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n"
    writer.write(request.encode())
    response = await reader.read()  # until the proxy closes the connection
    writer.close()
    await writer.wait_closed()
    return response


async def main() -> None:
    backend = await asyncio.start_server(answer, "127.0.0.1", 0)
    backend_port = backend.sockets[0].getsockname()[1]
    config = ProxyConfig(
        listeners=(Listener(host="127.0.0.1", port=0, upstream="app"),),
        upstreams={
            "app": Upstream(name="app", servers=(Server(host="127.0.0.1", port=backend_port),))
        },
    )
    stop = asyncio.Event()
    bound: asyncio.Future[list[tuple[str, int]]] = asyncio.get_running_loop().create_future()
    proxy = asyncio.create_task(
        serve_asyncio(config, seed=1, shutdown=stop, started=bound.set_result)
    )
    # If the proxy cannot start (a port in use), its task ends first and raises here.
    await asyncio.wait({bound, proxy}, return_when=asyncio.FIRST_COMPLETED)
    if proxy.done():
        await proxy
    _, proxy_port = bound.result()[0]
    async with asyncio.timeout(10):
        response = await fetch(proxy_port, "/through-the-proxy")
    print(response.decode("latin-1"))
    stop.set()  # graceful shutdown: serve_asyncio returns once every connection is closed
    await proxy
    print("proxy stopped")
    backend.close()  # the backend is ours to stop
    await backend.wait_closed()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if "--uvloop" in sys.argv[1:]:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
