"""End-to-end byte checks of header rewriting, with the default header policy.

``tests/core/test_headers.py`` covers the rules one by one; these check that the
proxy applies them to real messages in both directions.
"""

from __future__ import annotations

from sansproxy.commands import Close, Send
from sansproxy.events import ConnectionLost, DataReceived, EofReceived
from tests.playbook import Playbook


def test_hop_by_hop_fields_never_cross_and_forwarding_fields_are_added(kit) -> None:
    pb = Playbook(kit.config(plain=False))
    c = pb.accept(peer=("203.0.113.7", 50000))
    request = (
        b"GET /p HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
        b"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: gzip\r\nUpgrade: h2c\r\n"
        b"Proxy-Authorization: Basic YTpi\r\nX-Forwarded-For: 6.6.6.6\r\n"
        b"Forwarded: for=6.6.6.6\r\nAccept: */*\r\nCookie: a=1\r\n\r\n"
    )
    # The client's own forwarding fields are lies from an untrusted address: replaced.
    forwarded = (
        b"GET /p HTTP/1.1\r\nhost: example.com\r\naccept: */*\r\ncookie: a=1\r\n"
        b"via: 1.1 sansproxy\r\nx-forwarded-for: 203.0.113.7\r\nx-forwarded-proto: http\r\n"
        b"x-forwarded-host: example.com\r\nforwarded: for=203.0.113.7;proto=http;host=example.com"
        b"\r\n\r\n"
    )
    u = kit.forward(pb, c, request, forwarded)
    response = (
        b"HTTP/1.1 200 OK\r\nConnection: X-Backend-Hop\r\nX-Backend-Hop: 1\r\n"
        b"Keep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nServer: secret/1.0\r\n"
        b"X-Powered-By: PHP\r\nUpgrade: h2c\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    )
    # Repeated fields keep their order; the chunked framing is the proxy's own.
    assert (
        pb
        >> DataReceived(conn=u, data=response)
        << Send(
            conn=c,
            data=b"HTTP/1.1 200 OK\r\nset-cookie: a=1\r\nset-cookie: b=2\r\nvia: 1.1 sansproxy\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        )
        >> EofReceived(conn=c)
        << Close(conn=c)
        >> EofReceived(conn=u)
        << Close(conn=u)
    )
    kit.assert_clean(pb)


def test_connection_option_cannot_strip_the_body_length(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(
        pb,
        c,
        b"POST / HTTP/1.1\r\nHost: a\r\nConnection: content-length, host\r\n"
        b"Content-Length: 3\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\n\r\nabc",
    )
    assert (
        pb
        >> DataReceived(
            conn=u,
            data=b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 2\r\n\r\nok",
        )
        << Send(conn=c, data=b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        >> EofReceived(conn=c)
        << Close(conn=c)
        >> EofReceived(conn=u)
        << Close(conn=u)
    )
    kit.assert_clean(pb)


def test_absolute_form_target_is_sent_in_origin_form(kit) -> None:
    # RFC 9112 §3.2.2: the target's authority wins over Host.
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(
        pb,
        c,
        b"GET http://example.com/p?q=1 HTTP/1.1\r\nHost: other.example\r\n\r\n",
        b"GET /p?q=1 HTTP/1.1\r\nhost: example.com\r\n\r\n",
    )
    assert pb >> ConnectionLost(conn=c) << Close(conn=u, abort=True)
    kit.assert_clean(pb)
