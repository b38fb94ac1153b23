"""Tests of sansproxy.routing: path normalisation, route matching order, path rewriting."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sansproxy.routing import (
    RouteMatch,
    RouteTable,
    normalise_host,
    normalise_path,
    rewrite_path,
    split_target,
)

# --- split_target ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        (b"/", b"/", b""),
        (b"/a/b", b"/a/b", b""),
        (b"/a?x=1", b"/a", b"?x=1"),
        (b"/a?", b"/a", b"?"),
        (b"/a?x=1?y=/../2", b"/a", b"?x=1?y=/../2"),
        (b"/a%3Fb?q", b"/a%3Fb", b"?q"),
    ],
)
def test_split_target(target: bytes, path: bytes, query: bytes) -> None:
    assert split_target(target) == (path, query)


# --- normalise_path -------------------------------------------------------------------------

NORMALISED = [
    # unchanged
    (b"/", b"/"),
    (b"/admin", b"/admin"),
    (b"/a/b/", b"/a/b/"),  # trailing slash kept
    (b"/a/b", b"/a/b"),
    (b"/a\\..\\b", b"/a\\..\\b"),  # a backslash is an ordinary byte, not a separator
    (b"/a/...", b"/a/..."),  # three dots are a name
    (b"/.well-known/x", b"/.well-known/x"),
    # unreserved escapes decoded
    (b"/%61dmin", b"/admin"),
    (b"/%41%5a%7E%2D%5F", b"/AZ~-_"),
    (b"/%7e", b"/~"),
    # other escapes kept, hex upper-cased
    (b"/a%2Fb", b"/a%2Fb"),
    (b"/a%2fb", b"/a%2Fb"),
    (b"/%c3%a9", b"/%C3%A9"),
    (b"/a%20b", b"/a%20b"),
    (b"/a%0ab", b"/a%0Ab"),
    (b"/%2F..", b"/%2F.."),  # "%2F.." is one segment, not a dot segment
    (b"/a/%2F/../b", b"/a/b"),
    # dot segments, also when spelt with escapes
    (b"/public/../admin", b"/admin"),
    (b"/public/%2e%2e/admin", b"/admin"),
    (b"/public/%2E%2e/admin", b"/admin"),
    (b"/public/.%2e/admin", b"/admin"),
    (b"/a/%2e%2e/b", b"/b"),
    (b"/a/./b/../c", b"/a/c"),
    (b"/a/%2e/b", b"/a/b"),
    (b"/..", b"/"),
    (b"/../..", b"/"),
    (b"/../a", b"/a"),
    (b"/.", b"/"),
    (b"/a/..", b"/"),
    (b"/a/b/..", b"/a/"),
    (b"/a/b/.", b"/a/b/"),
    (b"/a/b/../../../c", b"/c"),
    # slashes merged
    (b"//admin", b"/admin"),
    (b"/a//b///c", b"/a/b/c"),
    (b"/a//", b"/a/"),
    (b"//", b"/"),
    (b"/a//../b", b"/b"),  # merged before dot removal, as nginx does
]


@pytest.mark.parametrize(("path", "expected"), NORMALISED)
def test_normalise_path(path: bytes, expected: bytes) -> None:
    assert normalise_path(path) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (b"//admin", b"//admin"),
        (b"/a//b", b"/a//b"),
        (b"/a//../b", b"/a/b"),  # ".." removes the empty segment
        (b"//..", b"/"),
        (b"/a/", b"/a/"),
        (b"/public/%2e%2e/admin", b"/admin"),
    ],
)
def test_normalise_path_without_merging(path: bytes, expected: bytes) -> None:
    assert normalise_path(path, merge_slashes=False) == expected


@pytest.mark.parametrize(
    "path",
    [
        b"",
        b"admin",
        b"*",
        b"http://a/b",
        b"/%zz",
        b"/%",
        b"/a%2",
        b"/a%2g",
        b"/%00",
        b"/a%00b",
        b"/a b",
        b"/a\tb",
        b"/a\x00b",
        b"/a\x7fb",
        b"/caf\xc3\xa9",
        b"/\x80",
        b"/a#frag",
        b"/a?q",
    ],
)
def test_normalise_path_refuses(path: bytes) -> None:
    assert normalise_path(path) is None
    assert normalise_path(path, merge_slashes=False) is None


# An independent, literal reference: decode with a regex, merge with a regex, then run the
# RFC 3986 §5.2.4 input-buffer algorithm step by step.

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _rfc_remove_dot_segments(data: bytes) -> bytes:
    output = b""
    while data:
        if data.startswith(b"../"):
            data = data[3:]
        elif data.startswith((b"./", b"/./")):
            data = data[2:]
        elif data == b"/.":
            data = b"/"
        elif data.startswith(b"/../") or data == b"/..":
            data = b"/" + data[4:]
            cut = output.rfind(b"/")
            output = output[:cut] if cut >= 0 else b""
        elif data in (b".", b".."):
            data = b""
        else:
            end = data.find(b"/", 1)
            if end == -1:
                end = len(data)
            output += data[:end]
            data = data[end:]
    return output


def reference_normalise(path: bytes, *, merge_slashes: bool = True) -> bytes | None:
    if not path.startswith(b"/") or any(b < 0x21 or b > 0x7E or b in b"?#" for b in path):
        return None
    if re.search(rb"%(?![0-9A-Fa-f]{2})", path) or re.search(rb"%00", path):
        return None

    def decode(m: re.Match[bytes]) -> bytes:
        octet = int(m[1], 16)
        return bytes([octet]) if octet in _UNRESERVED else b"%" + m[1].upper()

    decoded = re.sub(rb"%([0-9A-Fa-f]{2})", decode, path)
    if merge_slashes:
        decoded = re.sub(rb"/+", b"/", decoded)
    return _rfc_remove_dot_segments(decoded)


@pytest.mark.parametrize(("path", "expected"), NORMALISED)
def test_reference_agrees_with_the_table(path: bytes, expected: bytes) -> None:
    # The property below trusts the reference, so it must pass the hand-written cases too.
    assert reference_normalise(path) == expected


_PIECES = [
    b"/", b"//", b".", b"..", b"%2e", b"%2E", b"%2e%2e", b".%2e", b"%2f", b"%2F", b"%5c", b"\\",
    b"a", b"admin", b"public", b"%61", b"%61dmin", b"%41", b"~", b"%7e", b"%C3%a9", b"%",
    b"%z", b"%0", b"%00", b"%20", b" ", b"\xc3", b"?", b"#", b";", b"...",
]  # fmt: skip

paths = st.one_of(
    st.lists(st.sampled_from(_PIECES), max_size=12).map(lambda pieces: b"/" + b"".join(pieces)),
    st.lists(st.sampled_from(_PIECES), max_size=12).map(b"".join),
    st.binary(max_size=30).map(lambda raw: b"/" + raw),
)


@given(path=paths, merge=st.booleans())
@example(path=b"/public/%2e%2e/admin", merge=True)
@example(path=b"//admin/..", merge=False)
def test_normalise_path_matches_the_reference(path: bytes, merge: bool) -> None:
    result = normalise_path(path, merge_slashes=merge)
    assert result == reference_normalise(path, merge_slashes=merge)
    # Spelt out for the case that matters: nothing reaches /admin by another spelling.
    if result is not None and result.startswith(b"/admin"):
        reference = reference_normalise(path, merge_slashes=merge)
        assert reference is not None
        assert reference.startswith(b"/admin")


@given(path=paths, merge=st.booleans())
def test_normalise_path_is_idempotent_and_leaves_no_dot_segments(path: bytes, merge: bool) -> None:
    result = normalise_path(path, merge_slashes=merge)
    if result is None:
        return
    assert normalise_path(result, merge_slashes=merge) == result
    assert result.startswith(b"/")
    assert b"." not in result.split(b"/")
    assert b".." not in result.split(b"/")
    assert not re.search(rb"%(?:[0-9A-F][a-f]|[a-f][0-9A-Fa-f])", result)  # hex upper case
    if merge:
        assert b"//" not in result


# --- normalise_host -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (b"Example.COM", b"example.com"),
        (b"example.com:8080", b"example.com"),
        (b"example.com:", b"example.com"),
        (b"example.com.", b"example.com"),
        (b"example.com.:443", b"example.com"),
        (b"[::1]:80", b"[::1]"),
        (b"[::1]", b"[::1]"),
        (b"[2001:DB8::1]:8443", b"[2001:db8::1]"),
        (b"192.0.2.1:80", b"192.0.2.1"),
        (b"", b""),
    ],
)
def test_normalise_host(host: bytes, expected: bytes) -> None:
    assert normalise_host(host) == expected


# --- RouteMatch validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"path": "/a", "path_prefix": "/a"},
        {"path": "/a", "path_regex": "/a"},
        {"path_prefix": "/a", "path_regex": "/a"},
        {"path": "a"},
        {"path": "/a/../b"},
        {"path": "/%61"},
        {"path_prefix": "/caf%c3%a9"},
        {"path_prefix": "/café"},
        {"path_regex": "("},
        {"hosts": ("Example.com",)},
        {"hosts": ("example.com:80",)},
        {"hosts": ("example.com.",)},
        {"hosts": ("*",)},
        {"hosts": ("a.*.com",)},
        {"hosts": ("bücher.de",)},
        {"methods": frozenset({"get"})},
        {"methods": frozenset({"GE T"})},
        {"headers": (("X-Env", "a"),)},
    ],
)
def test_route_match_refuses_conditions_that_never_match(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by condition
        RouteMatch(**kwargs)  # type: ignore[arg-type]


def test_route_match_accepts_well_formed_conditions() -> None:
    match = RouteMatch(
        hosts=("api.example.com", "*.example.org", "[::1]", "192.0.2.1", "xn--bcher-kva.de"),
        path_regex=r"/v[0-9]+/",
        methods=frozenset({"GET", "PURGE"}),
        headers=(("x-env", "canary"),),
    )
    assert match.conditions == 2
    assert RouteMatch(path_prefix="/caf%C3%A9/").conditions == 0
    assert match == RouteMatch(
        hosts=("api.example.com", "*.example.org", "[::1]", "192.0.2.1", "xn--bcher-kva.de"),
        path_regex=r"/v[0-9]+/",
        methods=frozenset({"GET", "PURGE"}),
        headers=(("x-env", "canary"),),
    )


# --- RouteTable -----------------------------------------------------------------------------


def find(
    table: RouteTable[str],
    path: bytes = b"/",
    *,
    host: bytes = b"example.com",
    method: bytes = b"GET",
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> str | None:
    return table.find(host=host, path=path, method=method, headers=headers)


def test_hosts_exact_before_wildcard_before_any() -> None:
    table = RouteTable(
        [
            (RouteMatch(), "any"),
            (RouteMatch(hosts=("*.example.com",)), "wild"),
            (RouteMatch(hosts=("*.api.example.com",)), "wild-api"),
            (RouteMatch(hosts=("www.example.com", "example.net")), "exact"),
        ]
    )
    assert find(table, host=b"www.example.com") == "exact"
    assert find(table, host=b"example.net") == "exact"
    assert find(table, host=b"shop.example.com") == "wild"
    assert find(table, host=b"a.b.example.com") == "wild"  # any depth
    assert find(table, host=b"v1.api.example.com") == "wild-api"  # longest suffix
    assert find(table, host=b"x.v1.api.example.com") == "wild-api"
    assert find(table, host=b"api.example.com") == "wild"  # not the apex of *.api...
    assert find(table, host=b"example.com") == "any"  # not the apex of *.example.com
    assert find(table, host=b"www.example.org") == "any"
    assert find(table, host=b"") == "any"
    assert find(table, host=b"wwwexample.com") == "any"
    assert find(table, host=b".example.com") == "any"


def test_host_is_compared_without_case_port_or_trailing_dot() -> None:
    table = RouteTable(
        [
            (RouteMatch(hosts=("www.example.com",)), "www"),
            (RouteMatch(hosts=("*.example.org",)), "wild"),
            (RouteMatch(hosts=("[::1]",)), "v6"),
            (RouteMatch(hosts=("192.0.2.1",)), "v4"),
        ]
    )
    for host in (
        b"www.example.com",
        b"WWW.Example.COM",
        b"www.example.com:8080",
        b"www.example.com.",
    ):
        assert find(table, host=host) == "www"
    assert find(table, host=b"A.EXAMPLE.ORG:443") == "wild"
    assert find(table, host=b"[::1]:8080") == "v6"
    assert find(table, host=b"[::1]") == "v6"
    assert find(table, host=b"[::2]:8080") is None
    assert find(table, host=b"192.0.2.1:80") == "v4"


def test_no_fall_through_between_host_groups() -> None:
    table = RouteTable(
        [
            (RouteMatch(hosts=("api.example.com",), path_prefix="/v1"), "api-v1"),
            (RouteMatch(hosts=("*.example.com",), path_prefix="/static/"), "static"),
            (RouteMatch(), "default"),
        ]
    )
    assert find(table, b"/v1/users", host=b"api.example.com") == "api-v1"
    # the exact group has routes, so neither the wildcard nor the default group is tried
    assert find(table, b"/static/a.css", host=b"api.example.com") is None
    assert find(table, b"/", host=b"api.example.com") is None
    assert find(table, b"/static/a.css", host=b"cdn.example.com") == "static"
    assert find(table, b"/v1/users", host=b"cdn.example.com") is None
    assert find(table, b"/v1/users", host=b"other.test") == "default"


def test_no_fall_through_when_conditions_fail() -> None:
    table = RouteTable(
        [
            (RouteMatch(hosts=("api.example.com",), methods=frozenset({"GET"})), "api-get"),
            (RouteMatch(), "default"),
        ]
    )
    assert find(table, host=b"api.example.com", method=b"GET") == "api-get"
    assert find(table, host=b"api.example.com", method=b"POST") is None


def test_path_order_exact_then_longest_prefix_then_regex_then_catch_all() -> None:
    table = RouteTable(
        [
            (RouteMatch(), "catch-all"),
            (RouteMatch(path_regex=r"/api/v[0-9]+/"), "regex"),
            (RouteMatch(path_prefix="/api"), "prefix-api"),
            (RouteMatch(path_prefix="/api/v1"), "prefix-api-v1"),
            (RouteMatch(path="/api/v1/health"), "exact"),
            (RouteMatch(path_prefix="/"), "prefix-root"),
        ]
    )
    assert find(table, b"/api/v1/health") == "exact"
    assert find(table, b"/api/v1/users") == "prefix-api-v1"
    assert find(table, b"/api/v2/users") == "prefix-api"
    assert find(table, b"/api") == "prefix-api"
    assert find(table, b"/other") == "prefix-root"


def table_routes() -> list[tuple[RouteMatch, str]]:
    return [
        (RouteMatch(), "catch-all"),
        (RouteMatch(path_regex=r"/api/v[0-9]+/"), "regex"),
        (RouteMatch(path_prefix="/ap/"), "prefix-ap"),
        (RouteMatch(path_prefix="/"), "prefix-root"),
    ]


def _without(routes: list[tuple[RouteMatch, str]], name: str) -> list[tuple[RouteMatch, str]]:
    return [route for route in routes if route[1] != name]


def test_regex_after_prefixes_and_before_catch_all() -> None:
    routes = table_routes()
    assert find(RouteTable(routes), b"/api/v2/x") == "prefix-root"
    assert find(RouteTable(_without(routes, "prefix-root")), b"/api/v2/x") == "regex"
    assert find(RouteTable(_without(routes, "prefix-root")), b"/api/vx/x") == "catch-all"


def test_regex_is_anchored_at_the_start_only() -> None:
    table = RouteTable(
        [
            (RouteMatch(path_regex=r"/img/"), "img"),
            (RouteMatch(path_regex=r"/exact$"), "exact"),
            (RouteMatch(path_regex=r"(?i)/CASE"), "case"),
        ]
    )
    assert find(table, b"/img/a.png") == "img"
    assert find(table, b"/x/img/a.png") is None  # not searched for inside the path
    assert find(table, b"/exact") == "exact"
    assert find(table, b"/exact/more") is None
    assert find(table, b"/case/x") == "case"


def test_regexes_in_configuration_order() -> None:
    table = RouteTable(
        [
            (RouteMatch(path_regex=r"/a"), "first"),
            (RouteMatch(path_regex=r"/a/b", methods=frozenset({"GET"})), "second"),
            (RouteMatch(path_regex=r"/a/b"), "third"),
        ]
    )
    # "second" is more specific but a different regex, so configuration order decides
    assert find(table, b"/a/b") == "first"
    table = RouteTable(
        [
            (RouteMatch(path_regex=r"/a/b"), "plain"),
            (RouteMatch(path_regex=r"/a"), "other"),
            (RouteMatch(path_regex=r"/a/b", methods=frozenset({"GET"})), "get"),
        ]
    )
    # the same pattern twice is one candidate: the one with more conditions goes first
    assert find(table, b"/a/b", method=b"GET") == "get"
    assert find(table, b"/a/b", method=b"PUT") == "plain"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (b"/api", "api"),
        (b"/api/", "api-slash"),
        (b"/api/x", "api-slash"),
        (b"/apix", "root"),
        (b"/api%2Fx", "root"),
        (b"/ap", "root"),
        (b"/apix/y", "root"),
        (b"/static/", "static"),
        (b"/static", "root"),  # a prefix ending in "/" is a plain string prefix
        (b"/static/css/a.css", "static-css"),
        (b"/static/cssx", "static"),
        (b"/", "root"),
    ],
)
def test_prefixes_are_segment_aware_unless_they_end_with_a_slash(
    path: bytes, expected: str
) -> None:
    table = RouteTable(
        [
            (RouteMatch(path_prefix="/"), "root"),
            (RouteMatch(path_prefix="/api"), "api"),
            (RouteMatch(path_prefix="/api/"), "api-slash"),
            (RouteMatch(path_prefix="/static/"), "static"),
            (RouteMatch(path_prefix="/static/css"), "static-css"),
        ]
    )
    assert find(table, path) == expected


def test_segment_prefix_without_a_slash_version() -> None:
    table = RouteTable([(RouteMatch(path_prefix="/api"), "api")])
    assert find(table, b"/api") == "api"
    assert find(table, b"/api/") == "api"
    assert find(table, b"/api/v1/x") == "api"
    assert find(table, b"/apix") is None
    assert find(table, b"/") is None


def test_exact_path() -> None:
    table = RouteTable([(RouteMatch(path="/login"), "login")])
    assert find(table, b"/login") == "login"
    assert find(table, b"/login/") is None
    assert find(table, b"/login/x") is None
    assert find(table, b"/LOGIN") is None


def test_method_conditions_skip_to_the_next_candidate() -> None:
    table = RouteTable(
        [
            (RouteMatch(path="/items", methods=frozenset({"POST"})), "create"),
            (RouteMatch(path_prefix="/items", methods=frozenset({"DELETE"})), "delete"),
            (RouteMatch(path_prefix="/items"), "items"),
            (RouteMatch(methods=frozenset({"OPTIONS"})), "options"),
        ]
    )
    assert find(table, b"/items", method=b"POST") == "create"
    assert find(table, b"/items", method=b"DELETE") == "delete"
    assert find(table, b"/items", method=b"GET") == "items"
    assert find(table, b"/items/1", method=b"POST") == "items"
    assert find(table, b"/other", method=b"OPTIONS") == "options"
    assert find(table, b"/other", method=b"GET") is None
    assert find(table, b"/items", method=b"post") == "items"  # methods are case-sensitive


def test_header_conditions() -> None:
    table = RouteTable(
        [
            (RouteMatch(path_prefix="/", headers=(("x-env", "canary"),)), "canary"),
            (
                RouteMatch(path_prefix="/", headers=(("x-env", "canary"), ("x-team", "blue"))),
                "canary-blue",
            ),
            (RouteMatch(path_prefix="/", headers=(("x-name", "zoë"),)), "utf8"),
            (RouteMatch(path_prefix="/"), "stable"),
        ]
    )
    assert find(table, b"/x") == "stable"
    assert find(table, b"/x", headers=[(b"x-env", b"canary")]) == "canary"
    assert find(table, b"/x", headers=[(b"x-env", b"Canary")]) == "stable"  # values exact
    assert find(table, b"/x", headers=[(b"x-env", b"canary, beta")]) == "stable"  # not split
    # any of the fields with that name may match
    assert find(table, b"/x", headers=[(b"x-env", b"beta"), (b"x-env", b"canary")]) == "canary"
    # more conditions first, although configured later
    both = [(b"x-team", b"blue"), (b"x-env", b"canary")]
    assert find(table, b"/x", headers=both) == "canary-blue"
    assert find(table, b"/x", headers=[(b"x-team", b"blue")]) == "stable"
    assert find(table, b"/x", headers=[(b"X-Env", b"canary")]) == "canary"  # names any case
    assert find(table, b"/x", headers=[(b"x-name", "zoë".encode())]) == "utf8"


def test_more_conditions_first_then_configuration_order() -> None:
    table = RouteTable(
        [
            (RouteMatch(path_prefix="/a"), "plain-1"),
            (RouteMatch(path_prefix="/a"), "plain-2"),
            (RouteMatch(path_prefix="/a", methods=frozenset({"GET", "HEAD"})), "get-1"),
            (RouteMatch(path_prefix="/a", methods=frozenset({"GET"})), "get-2"),
            (
                RouteMatch(path_prefix="/a", methods=frozenset({"GET"}), headers=(("x", "1"),)),
                "get-x",
            ),
        ]
    )
    assert find(table, b"/a", method=b"GET", headers=[(b"x", b"1")]) == "get-x"
    assert find(table, b"/a", method=b"GET") == "get-1"
    assert find(table, b"/a", method=b"HEAD") == "get-1"
    assert find(table, b"/a", method=b"PUT") == "plain-1"


def test_conditions_do_not_beat_a_better_path_match() -> None:
    table = RouteTable(
        [
            (RouteMatch(path_prefix="/a", methods=frozenset({"GET"}), headers=(("x", "1"),)), "a"),
            (RouteMatch(path_prefix="/a/b"), "ab"),
        ]
    )
    assert find(table, b"/a/b", headers=[(b"x", b"1")]) == "ab"


def test_host_listed_with_wildcard_and_exact_in_one_route() -> None:
    table = RouteTable(
        [
            (RouteMatch(hosts=("example.com", "*.example.com"), path_prefix="/app"), "app"),
            (RouteMatch(hosts=("example.com", "example.com")), "apex"),
        ]
    )
    assert find(table, b"/app", host=b"example.com") == "app"
    assert find(table, b"/", host=b"example.com") == "apex"
    assert find(table, b"/app/x", host=b"a.example.com") == "app"
    assert find(table, b"/", host=b"a.example.com") is None


def test_empty_table_finds_nothing() -> None:
    assert find(RouteTable([])) is None


def test_many_routes() -> None:
    routes: list[tuple[RouteMatch, str]] = []
    for n in range(300):
        routes.append((RouteMatch(hosts=(f"h{n}.example.com",), path_prefix=f"/p{n}"), f"h{n}"))
        routes.append((RouteMatch(path_prefix=f"/svc/{n}"), f"svc{n}"))
        routes.append((RouteMatch(path=f"/exact/{n}"), f"exact{n}"))
    table = RouteTable(routes)
    assert find(table, b"/p7/x", host=b"h7.example.com") == "h7"
    assert find(table, b"/p8/x", host=b"h7.example.com") is None
    assert find(table, b"/svc/12/x", host=b"other") == "svc12"
    assert find(table, b"/svc/123", host=b"other") == "svc123"
    assert find(table, b"/svc/1234", host=b"other") is None
    assert find(table, b"/exact/299", host=b"other") == "exact299"


# --- rewrite_path ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "strip", "add", "expected"),
    [
        (b"/api", b"/api", None, b"/"),
        (b"/api/", b"/api", None, b"/"),
        (b"/api/x", b"/api", None, b"/x"),
        (b"/api/x/y", b"/api/", None, b"/x/y"),
        (b"/api/", b"/api/", None, b"/"),
        (b"/apix", b"/api", None, b"/apix"),  # not a segment match: untouched
        (b"/other", b"/api", None, b"/other"),
        (b"/x", b"/", None, b"/x"),
        (b"/x", None, b"/v2", b"/v2/x"),
        (b"/x", None, b"/v2/", b"/v2/x"),
        (b"/", None, b"/v2", b"/v2/"),
        (b"/x", None, b"/", b"/x"),
        (b"/api/x", b"/api", b"/v2", b"/v2/x"),
        (b"/api", b"/api", b"/v2", b"/v2/"),
        (b"/x", None, None, b"/x"),
    ],
)
def test_rewrite_path(path: bytes, strip: bytes | None, add: bytes | None, expected: bytes) -> None:
    assert rewrite_path(path, strip_prefix=strip, add_prefix=add) == expected


def test_rewrite_path_refuses_relative_prefixes() -> None:
    with pytest.raises(ValueError, match="must start with '/'"):
        rewrite_path(b"/x", strip_prefix=b"api")
    with pytest.raises(ValueError, match="must start with '/'"):
        rewrite_path(b"/x", add_prefix=b"v2")
