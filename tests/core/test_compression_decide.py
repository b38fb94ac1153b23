"""Tests of sansproxy.compression.decide: which responses are compressed, and their head."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sansproxy.compression.decide import (
    DEFAULT_MIN_SIZE,
    DEFAULT_TYPES,
    compressed_head,
    media_type,
    refusal,
)

Headers = list[tuple[bytes, bytes]]

HTML = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", b"5000")]


def h(*pairs: tuple[str, str]) -> Headers:
    return [(name.encode(), value.encode()) for name, value in pairs]


def why(
    response: Headers = HTML,
    *,
    method: bytes = b"GET",
    status: int = 200,
    request: Headers | None = None,
    **options: object,
) -> str | None:
    return refusal(
        method=method,
        status=status,
        request_headers=request or [],
        response_headers=response,
        **options,  # type: ignore[arg-type]
    )


# --- refusal --------------------------------------------------------------------------------


def test_an_ordinary_html_response_is_compressed() -> None:
    assert why() is None


@pytest.mark.parametrize("value", ["gzip", "br", "GZIP", "identity, gzip", "x-custom"])
def test_already_encoded_rfc_9110_8_4(value: str) -> None:
    reason = why([*HTML, (b"content-encoding", value.encode())])
    assert reason is not None
    assert reason.startswith("already encoded")


def test_identity_content_encoding_is_no_encoding_rfc_9110_8_4_1() -> None:
    assert why([*HTML, (b"content-encoding", b"identity")]) is None


@pytest.mark.parametrize(
    "value", ["no-transform", "public, No-Transform", "max-age=60,no-transform"]
)
def test_no_transform_rfc_9111_5_2_2_6(value: str) -> None:
    assert why([*HTML, (b"cache-control", value.encode())]) == "Cache-Control: no-transform"


def test_other_cache_control_directives_allow_it() -> None:
    assert why([*HTML, (b"cache-control", b"public, max-age=60, no-transformer")]) is None


def test_head_request_rfc_9110_9_3_2() -> None:
    assert why(method=b"HEAD") == "HEAD request"


@pytest.mark.parametrize("status", [100, 103, 204, 304])
def test_statuses_without_content_rfc_9110_15(status: int) -> None:
    assert why(status=status) == f"status {status} has no content"


def test_partial_content_rfc_9110_15_3_7() -> None:
    assert why(status=206) == "partial content"


def test_range_request_rfc_9110_14_2() -> None:
    assert why(request=[(b"range", b"bytes=0-99")]) == "range request"


def test_tunnels_rfc_9110_9_3_6_and_15_2_2() -> None:
    assert why(method=b"CONNECT") == "tunnel"
    assert why(status=101) == "tunnel"


def test_declared_length_below_the_minimum() -> None:
    assert DEFAULT_MIN_SIZE == 512
    small = [(b"content-type", b"text/plain"), (b"content-length", b"511")]
    assert why(small) == "511 bytes is below the minimum of 512"
    assert why([(b"content-type", b"text/plain"), (b"content-length", b"512")]) is None
    assert why(small, min_size=100) is None


def test_unknown_length_is_compressed() -> None:
    assert why([(b"content-type", b"text/event-stream")]) is None


@pytest.mark.parametrize(
    "content_type",
    [
        "text/html",
        "TEXT/CSS",
        "text/event-stream",
        "application/json",
        "Application/JSON; charset=utf-8",
        "application/ld+json",
        "application/problem+json",
        "application/javascript",
        "application/xml",
        "application/atom+xml",
        "image/svg+xml",
        "application/wasm",
    ],
)
def test_compressible_media_types(content_type: str) -> None:
    assert why([(b"content-type", content_type.encode())]) is None


@pytest.mark.parametrize(
    "content_type",
    [
        "image/png",
        "image/jpeg",
        "application/octet-stream",
        "application/zip",
        "video/mp4",
        "font/woff2",
        "application/+json",  # a suffix needs a name before it
        "application/jsonx",
        "textual/plain",
        "application/json-patch",
        "garbage",
    ],
)
def test_other_media_types_are_not_compressed(content_type: str) -> None:
    reason = why([(b"content-type", content_type.encode())])
    assert reason is not None
    assert "media type" in reason or "Content-Type" in reason


def test_no_content_type_is_not_compressed() -> None:
    assert why([(b"content-length", b"5000")]) == "no single Content-Type"


def test_conflicting_content_types_are_not_compressed_rfc_9110_8_3() -> None:
    both = [(b"content-type", b"text/html"), (b"content-type", b"image/png")]
    assert why(both) == "no single Content-Type"
    same = [(b"content-type", b"text/html"), (b"content-type", b"text/html; charset=x")]
    assert why(same) is None


def test_the_type_list_is_configurable() -> None:
    png = [(b"content-type", b"image/png")]
    assert why(png, types=("image/*",)) is None
    assert why(HTML, types=("application/json",)) == "media type text/html not compressible"
    assert why([(b"content-type", b"application/ld+json")], types=("Application/*+JSON",)) is None
    assert "text/*" in DEFAULT_TYPES


def test_media_type() -> None:
    assert media_type(h(("content-type", " Text/HTML ;charset=utf-8"))) == "text/html"
    assert media_type([]) is None


# --- the compressed head --------------------------------------------------------------------


def test_head_rewrite_rfc_9110_8_4_and_8_6() -> None:
    headers = h(
        ("content-type", "text/html"),
        ("content-length", "5000"),
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),
        ("accept-ranges", "bytes"),
    )
    assert compressed_head(headers, "gzip") == h(
        ("content-type", "text/html"),
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),
        ("vary", "Accept-Encoding"),
        ("content-encoding", "gzip"),
    )
    assert headers[1] == (b"content-length", b"5000"), "the input must not change"


def test_identity_content_encoding_is_replaced() -> None:
    result = compressed_head(h(("content-encoding", "identity")), "br")
    assert [value for name, value in result if name == b"content-encoding"] == [b"br"]


@pytest.mark.parametrize(
    ("vary", "expected"),
    [
        (["Origin"], ["Origin, Accept-Encoding"]),
        (["Origin", "Cookie"], ["Origin", "Cookie, Accept-Encoding"]),
        (["origin, accept-encoding"], ["origin, accept-encoding"]),
        (["Accept-Encoding", "Origin"], ["Accept-Encoding", "Origin"]),
        (["*"], ["*"]),
        (["Origin, *"], ["Origin, *"]),
        ([""], ["Accept-Encoding"]),
    ],
)
def test_vary_accept_encoding_rfc_9110_12_5_5(vary: list[str], expected: list[str]) -> None:
    headers = [(b"vary", value.encode()) for value in vary]
    result = compressed_head(headers, "gzip")
    assert [value for name, value in result if name == b"vary"] == [
        value.encode() for value in expected
    ]


@pytest.mark.parametrize(
    ("etag", "expected"),
    [
        ('"abc"', 'W/"abc"'),
        ('W/"abc"', 'W/"abc"'),
        ('""', 'W/""'),
        ("abc", None),  # not an entity-tag: it cannot be made weak
        ('"', None),
    ],
)
def test_strong_etag_becomes_weak_rfc_9110_8_8_1(etag: str, expected: str | None) -> None:
    result = compressed_head(h(("etag", etag)), "zstd")
    assert [value for name, value in result if name == b"etag"] == (
        [] if expected is None else [expected.encode()]
    )


def test_digests_of_the_unencoded_bytes_go_rfc_9530() -> None:
    headers = h(
        ("content-digest", "sha-256=:x:"),
        ("repr-digest", "sha-256=:y:"),
        ("content-md5", "z"),
        ("digest", "SHA-256=w"),
    )
    assert compressed_head(headers, "gzip") == h(
        ("vary", "Accept-Encoding"), ("content-encoding", "gzip")
    )


names = st.sampled_from(
    [b"content-length", b"content-encoding", b"vary", b"etag", b"x-a", b"set-cookie"]
)
values = st.sampled_from([b"", b"1", b"*", b"gzip", b'"t"', b'W/"t"', b"Accept-Encoding", b"x"])


@settings(max_examples=200)
@given(st.lists(st.tuples(names, values), max_size=8), st.sampled_from(["gzip", "br", "zstd"]))
def test_compressed_head_invariants(headers: Headers, coding: str) -> None:
    result = compressed_head(headers, coding)
    assert not [1 for name, _ in result if name == b"content-length"]
    assert [v for n, v in result if n == b"content-encoding"] == [coding.encode()]
    vary = b",".join(v for n, v in result if n == b"vary").lower()
    assert b"accept-encoding" in vary or b"*" in vary
    assert vary.count(b"accept-encoding") <= max(
        1, b",".join(v for n, v in headers if n == b"vary").lower().count(b"accept-encoding")
    )
    assert all(v.startswith(b'W/"') for n, v in result if n == b"etag")
    others = [
        (n, v)
        for n, v in headers
        if n not in (b"content-length", b"content-encoding", b"vary", b"etag")
    ]
    assert [(n, v) for n, v in result if n in {n for n, _ in others}] == others
    assert compressed_head(result, coding) == result, "applying it twice changes nothing more"
