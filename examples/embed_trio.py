"""Embed the trio adapter in your own trio program.

The program starts a tiny backend of its own, runs the proxy next to it with
``serve_trio`` in the same nursery, sends one request through the proxy over a raw
trio stream, prints the response, and shuts the proxy down gracefully.

Run it from a checkout (or with sansproxy installed)::

    PYTHONPATH=.:adapters python examples/embed_trio.py
"""

from __future__ import annotations

import logging
from functools import partial

import trio

from sansproxy.config import Listener, ProxyConfig, Server, Upstream
from sansproxy_trio import serve_trio

BODY = b"hello from the embedded backend\n"


async def tiny_backend(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Answer every connection with one fixed response, then close it."""

    async def answer(stream: trio.SocketStream) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            data = await stream.receive_some(4096)
            if not data:
                return
            request += data
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(BODY)}\r\nConnection: close\r\n\r\n"
        await stream.send_all(head.encode() + BODY)
        await stream.aclose()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(answer, listeners)


async def fetch(port: int, path: str) -> bytes:
    """One HTTP/1.1 request over a raw stream; the whole response, head and body."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        request = f"GET {path} HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n"
        await stream.send_all(request.encode())
        response = b""
        while data := await stream.receive_some(65536):
            response += data
    return response


async def main() -> None:
    async with trio.open_nursery() as nursery:
        backend_port = await nursery.start(tiny_backend)
        config = ProxyConfig(
            listeners=(Listener(host="127.0.0.1", port=0, upstream="app"),),
            upstreams={
                "app": Upstream(name="app", servers=(Server(host="127.0.0.1", port=backend_port),))
            },
        )
        stop = trio.Event()
        async with trio.open_nursery() as proxy_nursery:
            addresses = await proxy_nursery.start(
                partial(serve_trio, config, seed=1, shutdown=stop)
            )
            _, proxy_port = addresses[0]
            with trio.fail_after(10):
                response = await fetch(proxy_port, "/through-the-proxy")
            print(response.decode("latin-1"))
            stop.set()  # graceful shutdown; this block ends when serve_trio has returned
        print("proxy stopped")
        nursery.cancel_scope.cancel()  # the backend is ours to stop


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    trio.run(main)
