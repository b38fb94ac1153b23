"""Tests of sansproxy.headers: hop-by-hop removal, forwarding fields, Via, hiding backends."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sansproxy.config import HeaderPolicy
from sansproxy.headers import (
    HOP_BY_HOP,
    HeaderRules,
    connection_tokens,
    is_upgrade,
    wants_trailers,
)

Headers = list[tuple[bytes, bytes]]


def h(*pairs: tuple[str, str]) -> Headers:
    """Build a header list from text pairs (names must already be lower case)."""
    return [(name.encode(), value.encode()) for name, value in pairs]


# A policy that adds nothing, so hop-by-hop tests can compare whole lists.
PLAIN = HeaderPolicy(x_forwarded=False, forwarded=False, via=None)
UNTRUSTED_IP = "203.0.113.9"


def upstream(
    headers: Headers,
    policy: HeaderPolicy = PLAIN,
    *,
    client_ip: str = UNTRUSTED_IP,
    proto: str = "http",
    http_version: bytes = b"1.1",
    host_override: bytes | None = None,
    upgrade: bool = False,
) -> Headers:
    return HeaderRules(policy).upstream_request(
        headers,
        client_ip=client_ip,
        proto=proto,
        http_version=http_version,
        host_override=host_override,
        upgrade=upgrade,
    )


def downstream(
    headers: Headers,
    policy: HeaderPolicy = PLAIN,
    *,
    http_version: bytes = b"1.1",
    upgrade: bool = False,
) -> Headers:
    return HeaderRules(policy).client_response(headers, http_version=http_version, upgrade=upgrade)


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (h(), set()),
        (h(("connection", "close")), {b"close"}),
        (h(("connection", "Keep-Alive, X-Foo")), {b"keep-alive", b"x-foo"}),
        (h(("connection", "close"), ("x-a", "b"), ("connection", "x-bar")), {b"close", b"x-bar"}),
        (h(("connection", " , close,,\tx-foo ,")), {b"close", b"x-foo"}),
        (h(("x-connection", "x-foo")), set()),
    ],
)
def test_connection_tokens(headers: Headers, expected: set[bytes]) -> None:
    assert connection_tokens(headers) == expected


@pytest.mark.parametrize(
    ("te", "expected"),
    [
        ("trailers", True),
        ("gzip, trailers", True),
        ("Trailers", True),
        ("deflate;q=0.5, trailers", True),
        ("deflate;q=0.5", False),
        ("x-trailers", False),
        ("", False),
        (None, False),
    ],
)
def test_wants_trailers(te: str | None, expected: bool) -> None:
    headers = h(("accept", "*/*")) + ([] if te is None else h(("te", te)))
    assert wants_trailers(headers) is expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (h(("connection", "upgrade"), ("upgrade", "websocket")), True),
        (h(("upgrade", "websocket"), ("connection", "keep-alive, Upgrade")), True),
        (h(("upgrade", "websocket")), False),
        (h(("connection", "upgrade")), False),
        (h(("connection", "close"), ("upgrade", "h2c")), False),
        (h(), False),
    ],
)
def test_is_upgrade(headers: Headers, expected: bool) -> None:
    assert is_upgrade(headers) is expected
    assert is_upgrade(iter(headers)) is expected  # any iterable, consumed once


# --------------------------------------------------------------------------- hop-by-hop

E2E = h(("host", "example.com"), ("accept", "*/*"), ("content-length", "3"))


@pytest.mark.parametrize("name", sorted(HOP_BY_HOP))
def test_every_hop_by_hop_field_is_removed_both_ways(name: bytes) -> None:
    headers = [E2E[0], (name, b"x"), *E2E[1:], (name, b"y")]
    assert upstream(headers) == E2E
    assert downstream(headers) == E2E


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param(
            h(("connection", "close, x-foo"), ("x-foo", "1"), ("x-bar", "2")),
            h(("x-bar", "2")),
            id="close-and-named",
        ),
        pytest.param(
            h(
                ("x-a", "1"),
                ("connection", "X-A"),
                ("x-b", "2"),
                ("connection", "x-b"),
                ("x-c", "3"),
            ),
            h(("x-c", "3")),
            id="several-connection-fields-any-case",
        ),
        pytest.param(
            [(b"connection", b"content-length, host, x-foo"), *E2E, (b"x-foo", b"gone")],
            E2E,
            id="content-length-and-host-never-removed",
        ),
        pytest.param(
            h(("trailer", "x-checksum"), ("accept", "*/*")),
            h(("trailer", "x-checksum"), ("accept", "*/*")),
            id="trailer-is-end-to-end",
        ),
        pytest.param(
            h(("keep-alive", "timeout=5"), ("proxy-connection", "keep-alive"), ("a", "1")),
            h(("a", "1")),
            id="keep-alive-relics",
        ),
        pytest.param(
            h(("connection", "close"), ("close", "reserved"), ("a", "1")),
            h(("a", "1")),
            id="reserved-close-field",
        ),
    ],
)
def test_connection_options_in_both_directions(headers: Headers, expected: Headers) -> None:
    assert upstream(headers) == expected
    assert downstream(headers) == expected


def test_expect_is_dropped_upstream_only() -> None:
    headers = h(("expect", "100-continue"), ("content-length", "10"))
    assert upstream(headers) == h(("content-length", "10"))
    # In a response Expect means nothing special; it is not ours to remove.
    assert downstream(headers) == headers


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (h(("te", "trailers"), ("a", "1")), h(("a", "1"), ("te", "trailers"))),
        (h(("te", "gzip, Trailers;q=1"), ("a", "1")), h(("a", "1"), ("te", "trailers"))),
        (h(("connection", "te"), ("te", "trailers")), h(("te", "trailers"))),
        (h(("te", "gzip"), ("a", "1")), h(("a", "1"))),
        (h(("te", "gzip"), ("te", "trailers")), h(("te", "trailers"))),
        (h(("a", "1")), h(("a", "1"))),
    ],
)
def test_te_trailers_is_re_added_upstream(headers: Headers, expected: Headers) -> None:
    assert upstream(headers) == expected
    assert wants_trailers(headers) == ((b"te", b"trailers") in expected)


def test_te_is_never_sent_to_clients() -> None:
    assert downstream(h(("te", "trailers"), ("a", "1"))) == h(("a", "1"))


UPGRADE_REQUEST = h(
    ("host", "example.com"),
    ("connection", "keep-alive, Upgrade"),
    ("upgrade", "websocket"),
    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("http2-settings", "AAMAAABkAAQAAP__"),
)


@pytest.mark.parametrize(
    ("upgrade", "expected"),
    [
        (
            True,
            h(
                ("host", "example.com"),
                ("upgrade", "websocket"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("connection", "upgrade"),
            ),
        ),
        (
            False,
            h(("host", "example.com"), ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")),
        ),
    ],
)
def test_upgrade_kept_only_when_tunnelling(upgrade: bool, expected: Headers) -> None:
    assert upstream(UPGRADE_REQUEST, upgrade=upgrade) == expected
    response = h(("upgrade", "websocket"), ("connection", "Upgrade"), ("sec-websocket-accept", "x"))
    if upgrade:
        assert downstream(response, upgrade=True) == h(
            ("upgrade", "websocket"), ("sec-websocket-accept", "x"), ("connection", "upgrade")
        )
    else:
        assert downstream(response) == h(("sec-websocket-accept", "x"))


def test_upgrade_flag_without_upgrade_field_adds_no_connection() -> None:
    assert upstream(h(("a", "1")), upgrade=True) == h(("a", "1"))
    assert downstream(h(("a", "1")), upgrade=True) == h(("a", "1"))


def test_duplicate_set_cookie_and_order_preserved() -> None:
    response = h(
        ("set-cookie", "a=1"),
        ("content-type", "text/html"),
        ("set-cookie", "b=2"),
        ("connection", "keep-alive"),
        ("set-cookie", "c=3"),
    )
    assert downstream(response) == h(
        ("set-cookie", "a=1"),
        ("content-type", "text/html"),
        ("set-cookie", "b=2"),
        ("set-cookie", "c=3"),
    )


def test_inputs_are_not_modified() -> None:
    request = h(("host", "a"), ("connection", "x-foo"), ("x-foo", "1"), ("via", "1.0 a"))
    response = h(("server", "nginx"), ("connection", "close"), ("via", "1.0 a"))
    request_copy, response_copy = list(request), list(response)
    rules = HeaderRules(HeaderPolicy(trusted_proxies=("0.0.0.0/0",)))
    rules.upstream_request(
        request,
        client_ip="10.0.0.1",
        proto="http",
        http_version=b"1.1",
        host_override=b"b",
        upgrade=False,
    )
    rules.client_response(response, http_version=b"1.1", upgrade=False)
    assert request == request_copy
    assert response == response_copy


# --------------------------------------------------------------------------- forwarding

SPOOFED = h(
    ("host", "example.com"),
    ("x-forwarded-for", "1.2.3.4"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "evil.example"),
    ("forwarded", "for=1.2.3.4"),
    ("x-real-ip", "1.2.3.4"),
    ("accept", "*/*"),
)
FORWARDING = HeaderPolicy(via=None)


@pytest.mark.parametrize(
    ("kwargs", "expected_tail"),
    [
        pytest.param(
            {"client_ip": "203.0.113.9"},
            h(
                ("x-forwarded-for", "203.0.113.9"),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-host", "example.com"),
                ("forwarded", "for=203.0.113.9;proto=http;host=example.com"),
            ),
            id="ipv4",
        ),
        pytest.param(
            {"client_ip": "2001:db8::1", "proto": "https"},
            h(
                ("x-forwarded-for", "2001:db8::1"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "example.com"),
                ("forwarded", 'for="[2001:db8::1]";proto=https;host=example.com'),
            ),
            id="ipv6-quoted-and-bracketed",
        ),
        pytest.param(
            {"client_ip": "2001:DB8:0:0::1"},
            h(
                ("x-forwarded-for", "2001:db8::1"),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-host", "example.com"),
                ("forwarded", 'for="[2001:db8::1]";proto=http;host=example.com'),
            ),
            id="ipv6-normalised",
        ),
        pytest.param(
            {"client_ip": "10.0.0.1"},  # trusted list is 192.168.0.0/16 below: not trusted
            h(
                ("x-forwarded-for", "10.0.0.1"),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-host", "example.com"),
                ("forwarded", "for=10.0.0.1;proto=http;host=example.com"),
            ),
            id="outside-trusted-cidr",
        ),
        pytest.param(
            {"client_ip": "/run/sansproxy.sock"},
            h(
                ("x-forwarded-for", "unknown"),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-host", "example.com"),
                ("forwarded", "for=unknown;proto=http;host=example.com"),
            ),
            id="not-an-ip",
        ),
    ],
)
def test_untrusted_client_forwarding_fields_are_replaced(
    kwargs: dict[str, Any], expected_tail: Headers
) -> None:
    policy = HeaderPolicy(via=None, trusted_proxies=("192.168.0.0/16",))
    assert upstream(SPOOFED, policy, **kwargs) == [
        (b"host", b"example.com"),
        (b"x-real-ip", b"1.2.3.4"),
        (b"accept", b"*/*"),
        *expected_tail,
    ]


TRUSTED = HeaderPolicy(
    via=None,
    trusted_proxies=("10.0.0.0/8", "2001:db8::/32", "192.0.2.1", "fd00::1/128"),
)


@pytest.mark.parametrize(
    ("client_ip", "xff", "node"),
    [
        ("10.1.2.3", "10.1.2.3", "10.1.2.3"),
        ("192.0.2.1", "192.0.2.1", "192.0.2.1"),
        ("2001:db8::5", "2001:db8::5", '"[2001:db8::5]"'),
        ("fd00::1", "fd00::1", '"[fd00::1]"'),
        ("::ffff:10.0.0.1", "10.0.0.1", "10.0.0.1"),  # dual-stack socket, IPv4 client
    ],
)
def test_trusted_proxy_fields_are_extended(client_ip: str, xff: str, node: str) -> None:
    request = h(
        ("host", "example.com"),
        ("x-forwarded-for", "198.51.100.7"),
        ("x-forwarded-proto", "https"),
        ("a", "1"),
        ("x-forwarded-for", "198.51.100.8"),
        ("x-forwarded-host", "public.example"),
        ("forwarded", 'for=198.51.100.7;proto=https, for="_hidden"'),
    )
    assert upstream(request, TRUSTED, client_ip=client_ip) == h(
        ("host", "example.com"),
        ("x-forwarded-proto", "https"),
        ("a", "1"),
        ("x-forwarded-host", "public.example"),
        ("x-forwarded-for", f"198.51.100.7, 198.51.100.8, {xff}"),
        (
            "forwarded",
            f'for=198.51.100.7;proto=https, for="_hidden", for={node};proto=http;host=example.com',
        ),
    )


def test_trusted_proxy_without_fields_gets_them_set() -> None:
    assert upstream(h(("host", "example.com")), TRUSTED, client_ip="10.9.9.9", proto="https") == h(
        ("host", "example.com"),
        ("x-forwarded-for", "10.9.9.9"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "example.com"),
        ("forwarded", "for=10.9.9.9;proto=https;host=example.com"),
    )


@pytest.mark.parametrize(
    ("policy", "client_ip", "expected"),
    [
        pytest.param(
            HeaderPolicy(via=None, x_forwarded=False),
            UNTRUSTED_IP,
            h(
                ("host", "example.com"),
                ("x-real-ip", "1.2.3.4"),
                ("accept", "*/*"),
                ("forwarded", f"for={UNTRUSTED_IP};proto=http;host=example.com"),
            ),
            id="x-forwarded-off-untrusted-stripped",
        ),
        pytest.param(
            HeaderPolicy(via=None, forwarded=False),
            UNTRUSTED_IP,
            h(
                ("host", "example.com"),
                ("x-real-ip", "1.2.3.4"),
                ("accept", "*/*"),
                ("x-forwarded-for", UNTRUSTED_IP),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-host", "example.com"),
            ),
            id="forwarded-off-untrusted-stripped",
        ),
        pytest.param(
            PLAIN,
            UNTRUSTED_IP,
            h(("host", "example.com"), ("x-real-ip", "1.2.3.4"), ("accept", "*/*")),
            id="both-off-untrusted-stripped",
        ),
        pytest.param(
            HeaderPolicy(
                via=None, x_forwarded=False, forwarded=False, trusted_proxies=("10.0.0.0/8",)
            ),
            "10.0.0.1",
            SPOOFED,
            id="both-off-trusted-passed-through",
        ),
    ],
)
def test_forwarding_families_can_be_turned_off(
    policy: HeaderPolicy, client_ip: str, expected: Headers
) -> None:
    assert upstream(SPOOFED, policy, client_ip=client_ip) == expected


@pytest.mark.parametrize(
    ("host", "param"),
    [
        ("example.com", "host=example.com"),
        ("example.com:8080", 'host="example.com:8080"'),
        ("[::1]:8443", 'host="[::1]:8443"'),
        ('we"ird\\', 'host="we\\"ird\\\\"'),
    ],
)
def test_forwarded_host_is_quoted_outside_token(host: str, param: str) -> None:
    out = upstream(h(("host", host)), FORWARDING)
    assert (b"forwarded", f"for={UNTRUSTED_IP};proto=http;{param}".encode()) in out
    assert (b"x-forwarded-host", host.encode()) in out


def test_no_host_means_no_forwarded_host() -> None:
    assert upstream(h(("accept", "*/*")), FORWARDING) == h(
        ("accept", "*/*"),
        ("x-forwarded-for", UNTRUSTED_IP),
        ("x-forwarded-proto", "http"),
        ("forwarded", f"for={UNTRUSTED_IP};proto=http"),
    )


def test_connection_option_cannot_remove_our_forwarding_fields() -> None:
    # "Connection: x-forwarded-for" from a trusted hop drops its value, never ours.
    request = h(
        ("host", "a"),
        ("connection", "x-forwarded-for, forwarded"),
        ("x-forwarded-for", "1.1.1.1"),
        ("forwarded", "for=1.1.1.1"),
    )
    out = upstream(request, TRUSTED, client_ip="10.0.0.2")
    assert (b"x-forwarded-for", b"10.0.0.2") in out
    assert (b"forwarded", b"for=10.0.0.2;proto=http;host=a") in out


def test_client_cache_stays_bounded() -> None:
    rules = HeaderRules(TRUSTED)
    for i in range(5000):
        ip = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        out = rules.upstream_request(
            [], client_ip=ip, proto="http", http_version=b"1.1", host_override=None, upgrade=False
        )
        assert out[0] == (b"x-forwarded-for", ip.encode())
    assert len(rules._clients) <= 4096


# --------------------------------------------------------------------------- Host


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            h(("accept", "*/*"), ("host", "public.example"), ("a", "1")),
            h(("accept", "*/*"), ("host", "backend.internal"), ("a", "1")),
        ),
        (h(("accept", "*/*")), h(("host", "backend.internal"), ("accept", "*/*"))),
        (h(("host", "one"), ("host", "two")), h(("host", "backend.internal"))),
    ],
)
def test_host_override(headers: Headers, expected: Headers) -> None:
    assert upstream(headers, host_override=b"backend.internal") == expected


def test_host_override_keeps_original_in_forwarding_fields() -> None:
    out = upstream(h(("host", "public.example")), FORWARDING, host_override=b"backend:8080")
    assert out == h(
        ("host", "backend:8080"),
        ("x-forwarded-for", UNTRUSTED_IP),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", "public.example"),
        ("forwarded", f"for={UNTRUSTED_IP};proto=http;host=public.example"),
    )


# --------------------------------------------------------------------------- Via

VIA = HeaderPolicy(x_forwarded=False, forwarded=False)


@pytest.mark.parametrize(
    ("headers", "version", "via"),
    [
        (h(("a", "1")), b"1.1", "1.1 sansproxy"),
        (h(("a", "1")), b"1.0", "1.0 sansproxy"),
        (h(("a", "1")), b"2", "2 sansproxy"),
        (h(("a", "1")), b"HTTP/1.1", "1.1 sansproxy"),
        (
            h(("via", "1.0 fred, 1.1 p.example.net"), ("a", "1")),
            b"1.1",
            "1.0 fred, 1.1 p.example.net, 1.1 sansproxy",
        ),
        (
            h(("via", "1.0 fred"), ("a", "1"), ("via", "1.1 nowhere.com (Apache/1.1)")),
            b"1.0",
            "1.0 fred, 1.1 nowhere.com (Apache/1.1), 1.0 sansproxy",
        ),
    ],
)
def test_via_is_appended_both_ways(headers: Headers, version: bytes, via: str) -> None:
    expected = [*h(("a", "1")), (b"via", via.encode())]
    assert upstream(headers, VIA, http_version=version) == expected
    assert downstream(headers, VIA, http_version=version) == expected


def test_via_pseudonym_and_disabled() -> None:
    policy = HeaderPolicy(x_forwarded=False, forwarded=False, via="edge-1:8080")
    assert upstream(h(), policy) == h(("via", "1.1 edge-1:8080"))
    headers = h(("via", "1.0 fred"), ("a", "1"))
    assert upstream(headers, PLAIN) == headers
    assert downstream(headers, PLAIN) == headers


def test_connection_naming_via_drops_only_theirs() -> None:
    assert upstream(h(("connection", "via"), ("via", "1.0 fred")), VIA) == h(
        ("via", "1.1 sansproxy")
    )


# --------------------------------------------------------------------------- response hiding


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        pytest.param(PLAIN, h(("x-backend", "b1"), ("content-length", "0")), id="default-hides"),
        pytest.param(
            HeaderPolicy(via=None, hide_response_headers=("X-Backend",)),
            h(("content-length", "0")),
            id="configured-names-and-always-server",
        ),
        pytest.param(
            HeaderPolicy(via=None, server="sansproxy"),
            h(("x-backend", "b1"), ("content-length", "0"), ("server", "sansproxy")),
            id="server-replaced",
        ),
        pytest.param(
            HeaderPolicy(via=None, hide_response_headers=("content-length",)),
            h(("x-backend", "b1"), ("content-length", "0")),
            id="framing-never-hidden",
        ),
    ],
)
def test_backend_identity_hidden(policy: HeaderPolicy, expected: Headers) -> None:
    response = h(
        ("server", "nginx/1.25"),
        ("x-backend", "b1"),
        ("x-powered-by", "PHP/8"),
        ("content-length", "0"),
        ("server", "again"),
    )
    assert downstream(response, policy) == expected


def test_content_length_named_in_connection_survives_response() -> None:
    response = h(("connection", "Content-Length"), ("content-length", "5"))
    assert downstream(response) == h(("content-length", "5"))


# --------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    ("policy", "key"),
    [
        (HeaderPolicy(trusted_proxies=("not-a-network",)), "trusted_proxies"),
        (HeaderPolicy(trusted_proxies=("10.0.0.0/33",)), "trusted_proxies"),
        (HeaderPolicy(via="two words"), "via"),
        (HeaderPolicy(via=""), "via"),
        (HeaderPolicy(server="x\r\nSet-Cookie: a=1"), "server"),
        (HeaderPolicy(server=" padded"), "server"),
        (HeaderPolicy(hide_response_headers=("bad name",)), "hide_response_headers"),
    ],
)
def test_unusable_policy_is_rejected(policy: HeaderPolicy, key: str) -> None:
    with pytest.raises(ValueError, match=f"^{key}: "):
        HeaderRules(policy)


# --------------------------------------------------------------------------- property

FORWARDING_NAMES = [b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded"]
END_TO_END = [
    b"host",
    b"accept",
    b"cookie",
    b"set-cookie",
    b"content-length",
    b"content-type",
    b"trailer",
    b"cache-control",
    b"authorization",
    b"x-foo",
    b"x-bar",
    b"server",
    b"x-powered-by",
    b"x-real-ip",
    b"via",
]
HOP_NAMES = [*sorted(HOP_BY_HOP), b"expect"]
TOKEN_POOL = [*END_TO_END, *HOP_NAMES, *FORWARDING_NAMES, b"close", b"X-Foo", b"Content-Length"]


VALUES = [b"", b"0", b"1", b"a=b", b"x, y", b"1.0 fred", b"close", b"trailers", b"q;v=1"]


@st.composite
def header_lists(draw: st.DrawFn) -> Headers:
    out: Headers = []
    for name in draw(
        st.lists(st.sampled_from(HOP_NAMES + END_TO_END + FORWARDING_NAMES), max_size=14)
    ):
        if name == b"connection":
            value = b", ".join(draw(st.lists(st.sampled_from(TOKEN_POOL), max_size=4)))
        elif name == b"te":
            value = draw(st.sampled_from([b"trailers", b"gzip", b"deflate, trailers", b""]))
        else:
            value = draw(st.sampled_from(VALUES))
        out.append((name, value))
    return out


POLICIES = [PLAIN, HeaderPolicy(), HeaderPolicy(server="sp", hide_response_headers=("x-foo",))]


@settings(max_examples=300, deadline=None)
@given(
    headers=header_lists(),
    policy=st.sampled_from(POLICIES),
    upgrade=st.booleans(),
    response=st.booleans(),
)
def test_property_hop_by_hop_never_crosses_end_to_end_survives(
    headers: Headers, policy: HeaderPolicy, upgrade: bool, response: bool
) -> None:
    # An oracle written independently of the module: which received fields survive,
    # and which names the module itself adds or rebuilds (compared separately).
    removed = set(HOP_BY_HOP) | (connection_tokens(headers) - {b"content-length", b"host"})
    if response:
        removed |= {b"server", b"x-powered-by"}
        removed |= {name.encode() for name in policy.hide_response_headers}
        removed.discard(b"content-length")
        owned = {b"connection", b"server", b"via"}
        out = downstream(headers, policy, upgrade=upgrade)
    else:
        removed |= {b"expect", *FORWARDING_NAMES}  # the client is untrusted
        owned = {b"connection", b"te", b"via", *FORWARDING_NAMES}
        out = upstream(headers, policy, upgrade=upgrade)
    if upgrade:
        removed.discard(b"upgrade")
    survivors = [item for item in headers if item[0] not in removed]

    # No hop-by-hop field crosses, except the ones the proxy itself sets.
    for name, value in out:
        if name == b"te":
            assert not response
            assert value == b"trailers"
            assert wants_trailers(headers)
        elif name == b"connection":
            assert upgrade
            assert value == b"upgrade"
        elif name == b"upgrade":
            assert upgrade
        else:
            assert name not in HOP_BY_HOP
        assert response or name != b"expect"

    # Every other end-to-end field survives verbatim, repeated and in order.
    assert [item for item in out if item[0] not in owned] == [
        item for item in survivors if item[0] not in owned
    ]

    # The fields the proxy owns.
    upgrades_out = [item for item in out if item[0] == b"upgrade"]
    assert out.count((b"connection", b"upgrade")) == int(upgrade and bool(upgrades_out))
    assert sum(1 for item in out if item[0] == b"connection") <= 1
    via_out = [value for name, value in out if name == b"via"]
    if policy.via is None:
        assert via_out == [value for name, value in survivors if name == b"via"]
    else:
        earlier = [value for name, value in survivors if name == b"via" and value]
        assert via_out == [b", ".join([*earlier, b"1.1 sansproxy"])]
    if response:
        servers = [value for name, value in out if name == b"server"]
        assert servers == ([] if policy.server is None else [policy.server.encode()])
    else:
        assert out.count((b"te", b"trailers")) == int(wants_trailers(headers))
        if policy.x_forwarded:
            assert (b"x-forwarded-for", UNTRUSTED_IP.encode()) in out
        for name in FORWARDING_NAMES:
            assert sum(1 for item in out if item[0] == name) <= 1
