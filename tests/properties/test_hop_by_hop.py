"""Property (c): hop-by-hop headers never cross the proxy, in either direction.

RFC 9110 §7.6.1: an intermediary removes every field its received
``Connection`` header names, and the ``Connection`` field itself (or replaces
it with its own options); it also removes ``Keep-Alive``, ``Proxy-Connection``,
``TE``, ``Transfer-Encoding`` and ``Upgrade`` as received, whether or not
they are named. Random header sets mix such fields (names in any case, spread
over several ``Connection`` lines, with odd whitespace) with end-to-end ones,
which must arrive unchanged so the property cannot pass by dropping
everything.
"""

from __future__ import annotations

import h11
from hypothesis import given
from hypothesis import strategies as st

from tests.properties._strategies import header_values, simple_config, tokens
from tests.simnet import ClientProtocol, Reply, SimNet, cycling, protocol_config

hop_names = st.lists(tokens.map(lambda t: "x-hop-" + t), max_size=4, unique=True)
e2e_names = st.lists(tokens.map(lambda t: "x-e2e-" + t), min_size=1, max_size=3, unique=True)

REQUEST_STANDARD = {
    "keep-alive": "timeout=5, max=1000",
    "proxy-connection": "keep-alive",
    "te": "gzip, deflate;q=0.5",
}
RESPONSE_STANDARD = {
    "keep-alive": "timeout=5, max=1000",
    "proxy-connection": "keep-alive",
    "upgrade": "example/1, foo/2",
}


@st.composite
def header_sets(draw: st.DrawFn, standard: dict[str, str]) -> list[tuple[str, str]]:
    """Headers with hop-by-hop fields named in one or more Connection lines."""
    hops = draw(hop_names)
    fixed = draw(st.lists(st.sampled_from(sorted(standard)), unique=True))
    named = [*hops, *draw(st.lists(st.sampled_from(fixed), unique=True))] if fixed else hops
    spellings = [draw(st.sampled_from([n, n.upper(), n.title()])) for n in named]
    lines: list[str] = []
    if spellings:
        split = draw(st.integers(0, len(spellings)))
        sep = draw(st.sampled_from([",", ", ", " ,\t", ",,"]))
        lines = [sep.join(part) for part in (spellings[:split], spellings[split:]) if part]
    headers = [("connection", line) for line in lines]
    headers += [(name, draw(header_values)) for name in hops]
    headers += [(name, standard[name]) for name in fixed]
    headers += [(name, draw(header_values)) for name in draw(e2e_names)]
    return draw(st.permutations(headers))


def assert_no_hop_by_hop(
    received: list[tuple[bytes, bytes]],
    sent: list[tuple[str, str]],
    standard: dict[str, str],
) -> None:
    names = {name for name, _ in received}
    hop = {n.encode() for n, _ in sent if n.startswith("x-hop-")}
    assert not names & hop, f"named in Connection yet forwarded: {sorted(names & hop)}"
    for name, value in sent:
        if name in standard:
            forwarded = [v for n, v in received if n == name.encode()]
            assert value.encode() not in forwarded, f"{name}: {value} crossed"
    for name, value in received:
        if name == b"connection":
            options = {t.strip().lower() for t in value.split(b",")}
            assert not options & hop, f"Connection options crossed: {value!r}"
    for name in ("keep-alive", "proxy-connection"):
        assert name.encode() not in names, f"{name} crossed"
    e2e = [(n.encode(), v.encode()) for n, v in sent if n.startswith("x-e2e-")]
    assert [(n, v) for n, v in received if n.startswith(b"x-e2e-")] == e2e


@given(
    request_headers=header_sets(REQUEST_STANDARD),
    response_headers=header_sets(RESPONSE_STANDARD),
    request_body=st.binary(max_size=50),
    request_chunked=st.booleans(),
    response_chunked=st.booleans(),
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=4),
)
def test_hop_by_hop_headers_never_cross(
    *,
    request_headers: list[tuple[str, str]],
    response_headers: list[tuple[str, str]],
    request_body: bytes,
    request_chunked: bool,
    response_chunked: bool,
    sizes: list[int],
) -> None:
    net = SimNet(simple_config(), chunker=cycling(sizes))

    def handler(head: h11.Request, body: bytes) -> Reply:
        framing = ("transfer-encoding", "chunked") if response_chunked else ("content-length", "5")
        return 200, [*response_headers, framing], [b"hello"]

    backend = net.add_backend("10.0.0.1", 80, handler)
    client = net.client()
    client.request("POST", "/", headers=request_headers, body=request_body, chunked=request_chunked)
    net.run()
    net.check()
    (request,) = backend.requests
    assert request.body == request_body
    assert_no_hop_by_hop(request.headers, request_headers, REQUEST_STANDARD)
    assert request.header(b"te") in (None, b"trailers")
    (response,) = client.responses
    assert response.body == b"hello"
    assert_no_hop_by_hop(response.headers, response_headers, RESPONSE_STANDARD)
    assert response.header(b"upgrade") is None


@given(
    protocol=st.sampled_from(["h2", "h2c"]),
    request_e2e=st.lists(
        st.tuples(tokens.map(lambda t: "x-e2e-" + t), header_values),
        min_size=1,
        max_size=3,
        unique_by=lambda h: h[0],
    ),
    response_headers=header_sets(RESPONSE_STANDARD),
    response_chunked=st.booleans(),
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=4),
)
def test_hop_by_hop_headers_never_reach_an_http2_client(
    *,
    protocol: ClientProtocol,
    request_e2e: list[tuple[str, str]],
    response_headers: list[tuple[str, str]],
    response_chunked: bool,
    sizes: list[int],
) -> None:
    """RFC 9113 §8.2.2: an HTTP/2 message carries no connection-specific field at all.

    The backend's hop-by-hop fields (and whatever its Connection names) are
    stripped before the response becomes HEADERS; the client's h2 would refuse
    the response otherwise (connection-specific fields are malformed, and
    :meth:`SimNet.check` reports it). The request direction has nothing to strip
    (an HTTP/2 request with such a field is malformed and reset): its
    end-to-end fields must arrive unchanged, with ``te: trailers`` allowed.
    """
    net = SimNet(protocol_config(protocol), chunker=cycling(sizes))

    def handler(head: h11.Request, body: bytes) -> Reply:
        framing = ("transfer-encoding", "chunked") if response_chunked else ("content-length", "5")
        return 200, [*response_headers, framing], [b"hello"]

    backend = net.add_backend("10.0.0.1", 80, handler)
    client = net.h2_client()
    client.request("POST", "/", headers=[*request_e2e, ("te", "trailers")], body=b"body")
    net.run()
    net.check()
    (request,) = backend.requests
    assert request.body == b"body"
    e2e = [(n.encode(), v.encode()) for n, v in request_e2e]
    assert [(n, v) for n, v in request.headers if n.startswith(b"x-e2e-")] == e2e
    assert request.header(b"te") in (None, b"trailers")
    (response,) = client.responses
    assert response.body == b"hello"
    assert_no_hop_by_hop(response.headers, response_headers, RESPONSE_STANDARD)
    names = {name for name, _ in response.headers}
    assert not names & {b"connection", b"upgrade", b"transfer-encoding"}
