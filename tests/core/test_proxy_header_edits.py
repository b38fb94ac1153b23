"""A route's ``request_headers`` and ``response_headers``: set, add, remove, variables.

The configuration is checked first (bad names, framing fields, unknown variables give
one error naming the key); then playbooks show what the backend and the client get.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sansproxy.commands import Close, Send
from sansproxy.config import parse_config
from sansproxy.errors import ConfigError
from sansproxy.events import DataReceived, EofReceived, TlsInfo
from sansproxy.header_edits import UNEDITABLE, VARIABLES, HeaderEdits, ValueTemplate
from sansproxy.headers import HOP_BY_HOP
from tests.playbook import Playbook

BASE = """
[[listeners]]
address = "192.0.2.1:8080"

[upstreams.app]
servers = ["http://10.0.0.1:8001"]

[[routes]]
path_prefix = "/"
upstream = "app"
"""

EDITS = """
request_headers.set.X-Real-IP = "{client_ip}"
request_headers.set.X-Client = "{scheme}://{host} port {client_port}"
request_headers.add = { "X-Tag" = "edge" }
request_headers.remove = ["Cookie", "x-debug"]
response_headers.set = { "Strict-Transport-Security" = "max-age=31536000" }
response_headers.add = { "Set-Cookie" = "seen=1" }
response_headers.remove = ["X-Internal"]
"""


def _route(text: str):  # type: ignore[no-untyped-def]
    (route,) = parse_config(BASE + text, "proxy.toml").routes
    return route


# -- configuration ---------------------------------------------------------------------------


def test_edits_are_parsed_with_lower_case_names_and_templates() -> None:
    route = _route(EDITS)
    assert route.request_headers == HeaderEdits(
        remove=frozenset({b"cookie", b"x-debug"}),
        set=(
            (b"x-real-ip", ValueTemplate((b"", b"client_ip", b""))),
            (
                b"x-client",
                ValueTemplate((b"", b"scheme", b"://", b"host", b" port ", b"client_port", b"")),
            ),
        ),
        add=((b"x-tag", ValueTemplate((b"edge",))),),
    )
    assert route.response_headers.remove == frozenset({b"x-internal"})
    assert _route("").request_headers == HeaderEdits()
    assert not HeaderEdits()


def test_every_hop_by_hop_field_is_uneditable() -> None:
    assert HOP_BY_HOP <= UNEDITABLE
    assert {b"content-length", b"host", b"trailer", b"expect"} <= UNEDITABLE


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        (
            'request_headers.set = { "Content-Length" = "0" }',
            "routes[0].request_headers.set.Content-Length",
            "Content-Length cannot be edited: the proxy frames each message itself",
        ),
        (
            'response_headers.add = { "Transfer-Encoding" = "chunked" }',
            "routes[0].response_headers.add.Transfer-Encoding",
            "Transfer-Encoding cannot be edited: the proxy frames each message itself",
        ),
        (
            'request_headers.remove = ["Host"]',
            "routes[0].request_headers.remove[0]",
            "Host cannot be edited: Host is the proxy's to write (use the route's host_header)",
        ),
        (
            'request_headers.set = { Connection = "keep-alive" }',
            "routes[0].request_headers.set.Connection",
            "Connection cannot be edited: it is hop-by-hop: it concerns one connection, "
            "not the message",
        ),
        (
            'response_headers.set = { "Upgrade" = "h2c" }',
            "routes[0].response_headers.set.Upgrade",
            "Upgrade cannot be edited: it is hop-by-hop: it concerns one connection, not the "
            "message",
        ),
        (
            'request_headers.set = { "Bad Name" = "x" }',
            'routes[0].request_headers.set."Bad Name"',
            "'Bad Name' is not a header field name",
        ),
        (
            'request_headers.set = { "X-Id" = "{request_id}" }',
            "routes[0].request_headers.set.X-Id",
            "unknown variable {request_id} (known: {client_ip}, {client_port}, {scheme}, {host})",
        ),
        (
            'request_headers.set = { "X-A" = " padded" }',
            "routes[0].request_headers.set.X-A",
            "must be a header value: printable ASCII, no spaces at the ends",
        ),
        (
            'request_headers = { set = { "X-A" = "1" }, remove = ["x-a"] }',
            "routes[0].request_headers.set.X-A",
            "'X-A' is also in routes[0].request_headers.remove: keep one of the two",
        ),
        (
            'request_headers.set = { "X-A" = "1", "x-a" = "2" }',
            "routes[0].request_headers.set.x-a",
            "'x-a' is set twice (names ignore case)",
        ),
        (
            'request_headers = { sets = { "X-A" = "1" } }',
            "routes[0].request_headers.sets",
            "unknown key (did you mean 'set'?)",
        ),
        (
            "request_headers.remove = 'Cookie'",
            "routes[0].request_headers.remove",
            "must be an array",
        ),
    ],
)
def test_bad_edits_name_the_file_the_key_and_the_problem(text: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE + text + "\n", "proxy.toml")
    assert (caught.value.source, caught.value.key, caught.value.problem) == (
        "proxy.toml",
        key,
        problem,
    )


def test_edits_need_a_route_with_an_upstream() -> None:
    text = BASE.replace('upstream = "app"\n', "respond = { status = 204 }\n", 1)
    with pytest.raises(ConfigError, match="applies only to routes with an upstream"):
        parse_config(
            text.replace('path_prefix = "/"', 'path_prefix = "/"\nrequest_headers.remove = ["x"]')
        )


def test_every_variable_is_documented() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    for name in VARIABLES:
        assert f"`{{{name}}}`" in docs, name


# -- playbooks ---------------------------------------------------------------------------------

GET = (
    b"GET /a HTTP/1.1\r\nHost: shop.example\r\nCookie: s=1\r\nX-Debug: 1\r\n"
    b"X-Real-IP: 6.6.6.6\r\n\r\n"
)
FORWARDED = (
    b"GET /a HTTP/1.1\r\nhost: shop.example\r\nx-real-ip: 203.0.113.7\r\n"
    b"x-client: http://shop.example port 50000\r\nx-tag: edge\r\n\r\n"
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Internal: secret\r\n"
    b"Strict-Transport-Security: max-age=0\r\nSet-Cookie: a=b\r\n\r\nok"
)
TO_CLIENT = (
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nset-cookie: a=b\r\n"
    b"strict-transport-security: max-age=31536000\r\nset-cookie: seen=1\r\n\r\nok"
)


def test_the_backend_and_the_client_get_the_edited_heads(kit) -> None:
    pb = Playbook(kit.toml(BASE + EDITS))
    c = pb.accept()
    u = kit.forward(pb, c, GET, FORWARDED, server=("10.0.0.1", 8001))
    assert pb >> DataReceived(conn=u, data=RESPONSE) << Send(conn=c, data=TO_CLIENT)
    assert pb >> EofReceived(conn=c) << Close(conn=c)


def test_scheme_is_https_for_a_tls_client(kit) -> None:
    text = BASE + 'request_headers.set = { "X-Scheme" = "{scheme}" }\n'
    pb = Playbook(kit.toml(text))
    c = pb.accept(tls=TlsInfo(alpn="http/1.1"))
    request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    kit.forward(
        pb,
        c,
        request,
        b"GET / HTTP/1.1\r\nhost: a\r\nx-scheme: https\r\n\r\n",
        server=("10.0.0.1", 8001),
    )


def test_edits_apply_after_the_proxys_own_forwarding_fields(kit) -> None:
    # With the default header policy the proxy adds Via and X-Forwarded-*; a route may drop
    # some of them, as nginx's proxy_set_header X-Forwarded-For "" does.
    text = BASE + 'request_headers.remove = ["X-Forwarded-For", "Via"]\n'
    pb = Playbook(kit.toml(text, plain=False))
    c = pb.accept()
    kit.forward(
        pb,
        c,
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: a\r\nx-forwarded-proto: http\r\nx-forwarded-host: a\r\n"
        b"forwarded: for=203.0.113.7;proto=http;host=a\r\n\r\n",
        server=("10.0.0.1", 8001),
    )
