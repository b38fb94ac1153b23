"""Seed inputs shaped like request smuggling and parser confusion, and how to mutate them.

The seeds are the corpus the fuzzers start from: every one is also run as is
(hypothesis) or written to the starting corpus directory (atheris). The
mutation strategy is a small, dumb, byte-level mutator in the libFuzzer
style (insert, delete, overwrite, duplicate, splice in an HTTP token), which
keeps the inputs near the interesting grammar instead of random noise.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

__all__ = ["BACKEND_SEEDS", "CLIENT_SEEDS", "TOKENS", "mutated"]

CRLF = b"\r\n"


def _req(*lines: bytes, body: bytes = b"") -> bytes:
    return CRLF.join(lines) + CRLF + CRLF + body


def _resp(*lines: bytes, body: bytes = b"") -> bytes:
    return CRLF.join(lines) + CRLF + CRLF + body


CLIENT_SEEDS: tuple[bytes, ...] = (
    # well-formed, for reference and for mutations to start from
    _req(b"GET / HTTP/1.1", b"Host: example.com"),
    _req(b"POST /p HTTP/1.1", b"Host: a", b"Content-Length: 5", body=b"hello"),
    _req(
        b"POST /p HTTP/1.1",
        b"Host: a",
        b"Transfer-Encoding: chunked",
        body=b"5\r\nhello\r\n0\r\n\r\n",
    ),
    _req(b"GET /a HTTP/1.1", b"Host: a") + _req(b"GET /b HTTP/1.1", b"Host: a"),
    _req(b"HEAD / HTTP/1.1", b"Host: a") + _req(b"GET / HTTP/1.1", b"Host: a"),
    # CL + TE (RFC 9112 6.3: reject, or TE wins and the connection closes)
    _req(
        b"POST / HTTP/1.1",
        b"Host: a",
        b"Content-Length: 6",
        b"Transfer-Encoding: chunked",
        body=b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    ),
    _req(
        b"POST / HTTP/1.1",
        b"Host: a",
        b"Transfer-Encoding: chunked",
        b"Content-Length: 4",
        body=b"5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n",
    ),
    # duplicate and odd Content-Length
    _req(
        b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 5", b"Content-Length: 6", body=b"hello!"
    ),
    _req(b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 5, 5", body=b"hello"),
    _req(b"POST / HTTP/1.1", b"Host: a", b"Content-Length: +5", body=b"hello"),
    _req(b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 0x5", body=b"hello"),
    _req(b"POST / HTTP/1.1", b"Host: a", b"Content-Length: 99999999999999999999"),
    _req(b"POST / HTTP/1.1", b"Host: a", b"Content-Length:"),
    # bad chunk sizes and chunked variants
    _req(
        b"POST / HTTP/1.1",
        b"Host: a",
        b"Transfer-Encoding: chunked",
        body=b"zz\r\nhello\r\n0\r\n\r\n",
    ),
    _req(b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding: chunked", body=b"-1\r\n\r\n"),
    _req(
        b"POST / HTTP/1.1",
        b"Host: a",
        b"Transfer-Encoding: chunked",
        body=b"0x5\r\nhello\r\n0\r\n\r\n",
    ),
    _req(
        b"POST / HTTP/1.1",
        b"Host: a",
        b"Transfer-Encoding: chunked",
        body=b"ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    ),
    _req(
        b"POST / HTTP/1.1",
        b"Host: a",
        b"Transfer-Encoding: chunked",
        body=b"5;a=b;c\r\nhello\r\n0\r\n\r\n",
    ),
    _req(b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding: chunked", body=b"5\nhello\n0\n\n"),
    _req(
        b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding: chunked", body=b"5\r\nhelloXX0\r\n\r\n"
    ),
    _req(
        b"POST / HTTP/1.1",
        b"Host: a",
        b"Transfer-Encoding: chunked",
        body=b"0\r\nContent-Length: 50\r\nTransfer-Encoding: identity\r\n\r\n",
    ),
    _req(b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding: chunked, chunked", body=b"0\r\n\r\n"),
    _req(b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding: gzip, chunked", body=b"0\r\n\r\n"),
    _req(b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding: xchunked", body=b"0\r\n\r\n"),
    _req(b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding : chunked", body=b"0\r\n\r\n"),
    _req(b"POST / HTTP/1.1", b"Host: a", b"Transfer-Encoding:\tchunked", body=b"0\r\n\r\n"),
    _req(b"POST / HTTP/1.0", b"Host: a", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
    # bare LF, bare CR, obs-fold, whitespace tricks
    b"GET / HTTP/1.1\nHost: a\n\n",
    b"GET / HTTP/1.1\rHost: a\r\r",
    _req(b"GET / HTTP/1.1", b"Host: a", b"X-Folded: one", b" two"),
    _req(b"GET / HTTP/1.1", b"Host: a", b" Transfer-Encoding: chunked"),
    _req(b"GET / HTTP/1.1", b"Host : a"),
    _req(b"GET  /  HTTP/1.1", b"Host: a"),
    _req(b"GET / HTTP/1.1", b"Host: a", b"Host: b"),
    _req(b"GET / HTTP/1.1", b"Host: a\x00b"),
    _req(b"G\x00T / HTTP/1.1", b"Host: a"),
    # huge heads, long targets, many headers
    _req(b"GET / HTTP/1.1", b"Host: a", b"X-Big: " + b"a" * 20_000),
    _req(b"GET /" + b"x" * 9000 + b" HTTP/1.1", b"Host: a"),
    _req(b"GET / HTTP/1.1", b"Host: a", *(b"X-%d: v" % i for i in range(150))),
    # request-target forms and methods
    _req(b"GET http://evil.example/x HTTP/1.1", b"Host: good.example"),
    _req(b"CONNECT example.com:443 HTTP/1.1", b"Host: example.com:443"),
    _req(b"OPTIONS * HTTP/1.1", b"Host: a"),
    _req(b"GET / HTTP/1.0"),
    _req(b"GET / HTTP/2.0", b"Host: a"),
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    # upgrade, expect, hop-by-hop abuse
    _req(
        b"GET /ws HTTP/1.1",
        b"Host: a",
        b"Connection: Upgrade",
        b"Upgrade: websocket",
        b"Sec-WebSocket-Version: 13",
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    ),
    _req(
        b"POST / HTTP/1.1", b"Host: a", b"Expect: 100-continue", b"Content-Length: 5", body=b"hello"
    ),
    _req(b"GET / HTTP/1.1", b"Host: a", b"Connection: Content-Length, Host", b"Content-Length: 0"),
    b"",
    b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    # Found by atheris: a proxy-made error answering HEAD used to raise in h11.
    _req(b"HEAD x HTTP/1.1", b"Host: a"),
    _req(b"HEAD / HTTP/1.1", b"Host: a", b"Content-Length: 1", b"Transfer-Encoding: chunked"),
    _req(b"HEAD / HTTP/1.1", b"Host: a", b"X-Big: " + b"a" * 20_000),
)

BACKEND_SEEDS: tuple[bytes, ...] = (
    _resp(b"HTTP/1.1 200 OK", b"Content-Length: 2", body=b"hi"),
    _resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked", body=b"2\r\nhi\r\n0\r\n\r\n"),
    _resp(b"HTTP/1.1 204 No Content"),
    # CL + TE, duplicate CL, bad chunks
    _resp(
        b"HTTP/1.1 200 OK",
        b"Content-Length: 2",
        b"Transfer-Encoding: chunked",
        body=b"2\r\nhi\r\n0\r\n\r\n",
    ),
    _resp(b"HTTP/1.1 200 OK", b"Content-Length: 2", b"Content-Length: 3", body=b"hi!"),
    _resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked", body=b"zz\r\nhi\r\n0\r\n\r\n"),
    _resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked", body=b"ffffffffffffffffff\r\nhi"),
    _resp(
        b"HTTP/1.1 200 OK",
        b"Transfer-Encoding: chunked",
        body=b"2\r\nhi\r\n0\r\nX-Trailer: 1\r\n\r\n",
    ),
    _resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding: gzip, chunked", body=b"0\r\n\r\n"),
    # bare LF, obs-fold, huge head
    b"HTTP/1.1 200 OK\nContent-Length: 2\n\nhi",
    _resp(b"HTTP/1.1 200 OK", b"X-Folded: one", b" two", b"Content-Length: 0"),
    _resp(b"HTTP/1.1 200 OK", b"X-Big: " + b"b" * 20_000, b"Content-Length: 0"),
    # interim responses, unrequested upgrade, bodies where none may be
    _resp(b"HTTP/1.1 100 Continue") + _resp(b"HTTP/1.1 200 OK", b"Content-Length: 2", body=b"hi"),
    _resp(b"HTTP/1.1 103 Early Hints", b"Link: </s.css>; rel=preload")
    + _resp(b"HTTP/1.1 200 OK", b"Content-Length: 0"),
    _resp(b"HTTP/1.1 101 Switching Protocols", b"Connection: Upgrade", b"Upgrade: websocket"),
    _resp(b"HTTP/1.1 204 No Content", b"Content-Length: 5", body=b"hello"),
    _resp(b"HTTP/1.1 304 Not Modified", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
    # response splitting: two answers to one request
    _resp(b"HTTP/1.1 200 OK", b"Content-Length: 0")
    + _resp(b"HTTP/1.1 200 OK", b"Content-Length: 4", body=b"evil"),
    # framing by close, truncation, garbage
    _resp(b"HTTP/1.0 200 OK", body=b"until close"),
    _resp(b"HTTP/1.1 200 OK", b"Connection: close", body=b"until close"),
    _resp(b"HTTP/1.1 200 OK", b"Content-Length: 100", body=b"short"),
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",
    b"HELLO",
    b"HTTP/1.1 2000 OK\r\n\r\n",
    b"HTTP/1.1 099 Low\r\n\r\n",
    b"HTTP/2 200\r\n\r\n",
    _resp(b"HTTP/1.1 200", b"Content-Length: 0"),
    _resp(b"HTTP/1.1 200 OK", b"Set-Cookie: a=1", b"Set-Cookie: b=2", b"X-Nul: a\x00b"),
    _resp(
        b"HTTP/1.1 200 OK",
        b"Connection: x-secret, keep-alive",
        b"X-Secret: 1",
        b"Keep-Alive: timeout=5",
        b"Content-Length: 0",
    ),
    b"",
)

TOKENS: tuple[bytes, ...] = (
    b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b",", b";", b"\x00", b"\xff",
    b"0\r\n\r\n", b"chunked", b"Content-Length: ", b"Transfer-Encoding: chunked\r\n",
    b"Connection: close\r\n", b"Expect: 100-continue\r\n", b"HTTP/1.1 ", b"HTTP/1.0 ",
    b"GET / HTTP/1.1\r\n", b"Host: a\r\n", b"ffffffff", b"-1", b"100", b"\r\n\r\n",
)  # fmt: skip

_POS = st.integers(0, 2**16)
_OPS = st.one_of(
    st.tuples(st.just("insert"), _POS, st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), _POS, st.integers(1, 16)),
    st.tuples(st.just("overwrite"), _POS, st.binary(min_size=1, max_size=4)),
    st.tuples(st.just("token"), _POS, st.sampled_from(TOKENS)),
    st.tuples(st.just("duplicate"), _POS, st.integers(1, 64)),
)


def _apply(data: bytes, ops: Sequence[tuple[str, int, object]]) -> bytes:
    for kind, pos, arg in ops:
        at = pos % (len(data) + 1)
        if kind == "delete":
            assert isinstance(arg, int)
            data = data[:at] + data[at + arg :]
        elif kind == "duplicate":
            assert isinstance(arg, int)
            data = data[:at] + data[at : at + arg] + data[at:]
        else:
            assert isinstance(arg, bytes)
            tail = data[at + len(arg) :] if kind == "overwrite" else data[at:]
            data = data[:at] + arg + tail
    return data


def mutated(seeds: Sequence[bytes]) -> st.SearchStrategy[bytes]:
    """Seeds as they are, mutated seeds, spliced seeds, token soup and plain random bytes."""
    seed = st.sampled_from(seeds)
    return st.one_of(
        seed,
        st.builds(_apply, seed, st.lists(_OPS, min_size=1, max_size=6)),
        st.builds(lambda a, b, cut: a[: cut % (len(a) + 1)] + b, seed, seed, _POS),
        st.lists(st.sampled_from(TOKENS), max_size=40).map(b"".join),
        st.binary(max_size=512),
    )
