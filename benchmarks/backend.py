"""The built-in backend: static bodies and an upload sink on asyncio, for when nginx is absent.

The benchmark measures proxies, so the backend must be much faster than any of them and
must never hold a body in memory. Each ``GET /<name>`` answers with a fixed body of the
size named in :data:`BODIES` (``/1g``-sized bodies are written in flow-controlled slices of
one shared buffer), keep-alive, ``Content-Length`` framing. ``POST`` or ``PUT /upload``
reads and discards a ``Content-Length`` body and answers only after its last byte, with the
byte count, so a proxy that cut an upload short is caught. ``GET /cached/<name>`` answers
the small bodies with ``Cache-Control: max-age=3600`` (:data:`CACHE_CONTROL`), for the cache
scenarios; ``GET /_stats`` says how many requests it has answered (itself not counted), so
the suite sees how many reached it through a caching proxy. Run it alone with::

    python -m benchmarks.backend --port 9000 [--transfer-bytes N]

It prints ``ready`` on stdout once it listens. uvloop is used when it is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import re
from typing import cast

__all__ = [
    "BODIES",
    "CACHED_PREFIX",
    "CACHE_CONTROL",
    "JSON_NAME",
    "STATS_PATH",
    "body_sizes",
    "json_body",
    "main",
    "parse_stats",
    "serve",
]

#: Body sizes of the static paths (``/1g`` is replaced by ``--transfer-bytes`` when given).
BODIES: dict[str, int] = {"100b": 100, "16k": 16 * 1024, "1m": 1024 * 1024, "1g": 1024**3}

JSON_NAME = "json100k"
"""A 100 KiB JSON document (``application/json``), for the compression scenarios."""


CACHED_PREFIX = "/cached/"
"""``/cached/<name>`` is ``/<name>`` with :data:`CACHE_CONTROL` (bodies of 1 MiB or less)."""

CACHE_CONTROL = "max-age=3600"
"""What the backend says of the cached paths: fresh for the whole run."""

STATS_PATH = "/_stats"
"""How many requests the backend has answered: ``requests N`` here, nginx's stub_status there."""

_BUILTIN_STATS = re.compile(r"^requests (\d+)$", re.M)
_NGINX_STATS = re.compile(r"^\s*\d+\s+\d+\s+(\d+)\s*$", re.M)


def parse_stats(text: str) -> int | None:
    """The request count in a :data:`STATS_PATH` answer (the built-in's or nginx's), or None.

    nginx's ``stub_status`` counts the request that asks, the built-in backend does not.
    """
    found = _BUILTIN_STATS.search(text)
    if found is not None:
        return int(found.group(1))
    found = _NGINX_STATS.search(text)
    return None if found is None else int(found.group(1))


def json_body(size: int = 100 * 1024) -> bytes:
    """``size`` bytes of an API-like JSON array: varied numbers and words, as real ones.

    The bytes are the same on every run, so the compressed sizes can be compared; the
    last few bytes before ``]`` are spaces, to make the size exact.
    """
    words = [b"alpha", b"bravo", b"charlie", b"delta", b"echo", b"foxtrot", b"golf", b"hotel"]
    text = bytearray(b"[")
    for i in itertools.count():
        item = b'%s{"id":%d,"name":"%s-%d","price":%d.%02d,"stock":%d,"active":%s}' % (
            b"," if i else b"",
            i,
            words[(i * 7) % len(words)],
            (i * 7919) % 10007,
            (i * 37) % 500,
            i % 100,
            (i * 13) % 97,
            b"true" if i % 3 else b"false",
        )
        if len(text) + len(item) >= size:
            break
        text += item
    return bytes(text.ljust(size - 1) + b"]")


_STATS_TARGET = STATS_PATH.encode()
_SLICE = 256 * 1024
_FILLER = memoryview(b"x" * _SLICE)
_MAX_HEAD = 64 * 1024


def body_sizes(transfer_bytes: int | None = None) -> dict[str, int]:
    """The static paths and their body sizes, with the large transfer resized if asked."""
    sizes = dict(BODIES)
    if transfer_bytes is not None:
        sizes["1g"] = transfer_bytes
    return sizes


def _head(
    status: bytes, length: int, media: bytes = b"application/octet-stream", extra: bytes = b""
) -> bytes:
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\nServer: bench-backend\r\nContent-Type: "
        + media
        + b"\r\nContent-Length: "
        + str(length).encode()
        + b"\r\n"
        + extra
        + b"\r\n"
    )


class _Http(asyncio.Protocol):
    """One client connection: requests parsed by hand, answers written in order."""

    answered = 0
    """Requests answered on every connection (the :data:`STATS_PATH` ones left out)."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self._sizes = sizes
        small = {name: size for name, size in sizes.items() if size <= 1024 * 1024}
        self._small = {
            b"/" + name.encode(): _head(b"200 OK", size) + b"x" * size
            for name, size in small.items()
        }
        cache_control = b"Cache-Control: " + CACHE_CONTROL.encode() + b"\r\n"
        self._small.update(
            (
                (CACHED_PREFIX + name).encode(),
                _head(b"200 OK", size, extra=cache_control) + b"x" * size,
            )
            for name, size in small.items()
        )
        document = json_body()
        self._small[b"/" + JSON_NAME.encode()] = (
            _head(b"200 OK", len(document), b"application/json") + document
        )
        self._small[(CACHED_PREFIX + JSON_NAME).encode()] = (
            _head(b"200 OK", len(document), b"application/json", extra=cache_control) + document
        )
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._discard = 0  # upload bytes still to read and drop
        self._uploaded = 0
        self._streaming = 0  # large-body bytes still to write
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        if self._discard:
            taken = min(self._discard, len(data))
            self._discard -= taken
            self._uploaded += taken
            data = data[taken:]
            if self._discard:
                return
            self._answer_upload()
        self._buffer += data
        self._serve_buffered()

    def _serve_buffered(self) -> None:
        transport = self._transport
        assert transport is not None
        while not self._discard and not self._streaming:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > _MAX_HEAD:
                    transport.abort()
                return
            head = bytes(self._buffer[:end])
            del self._buffer[: end + 4]
            method, _, rest = head.partition(b" ")
            target = rest.partition(b" ")[0].partition(b"?")[0]
            if target == _STATS_TARGET:
                text = b"requests %d\n" % _Http.answered
                transport.write(_head(b"200 OK", len(text), b"text/plain") + text)
                continue
            _Http.answered += 1
            if method in (b"POST", b"PUT") and target == b"/upload":
                self._start_upload(head)
            elif target in self._small:
                transport.write(self._small[target])
            elif target == b"/1g":
                transport.write(_head(b"200 OK", self._sizes["1g"]))
                self._streaming = self._sizes["1g"]
                self._stream()
            else:
                transport.write(_head(b"404 Not Found", 0))

    def _start_upload(self, head: bytes) -> None:
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        self._uploaded = 0
        buffered = min(length, len(self._buffer))
        del self._buffer[:buffered]
        self._uploaded = buffered
        self._discard = length - buffered
        if not self._discard:
            self._answer_upload()

    def _answer_upload(self) -> None:
        assert self._transport is not None
        text = b"received %d bytes\n" % self._uploaded
        self._transport.write(_head(b"200 OK", len(text)) + text)

    def _stream(self) -> None:
        transport = self._transport
        assert transport is not None
        while self._streaming and not self._paused:
            piece = min(self._streaming, _SLICE)
            transport.write(_FILLER[:piece])
            self._streaming -= piece
        if not self._streaming:
            self._serve_buffered()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._streaming:
            self._stream()


async def serve(host: str, port: int, sizes: dict[str, int]) -> None:
    """Serve the static bodies and the upload sink on ``host:port`` until cancelled."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Http(sizes), host, port, backlog=4096)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    """Run the backend from the command line (see the module docs)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backend")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--transfer-bytes", type=int, help="size of /1g (default 1 GiB)")
    args = parser.parse_args(argv)
    sizes = body_sizes(args.transfer_bytes)
    with contextlib.suppress(KeyboardInterrupt):
        try:
            import uvloop  # noqa: PLC0415  (optional: used when installed)
        except ImportError:
            asyncio.run(serve(args.host, args.port, sizes))
        else:
            uvloop.run(serve(args.host, args.port, sizes))


if __name__ == "__main__":
    main()
