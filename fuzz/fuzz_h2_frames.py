"""Harness: arbitrary bytes from an HTTP/2 client, after the connection preface.

The listener takes cleartext HTTP/2 with prior knowledge (``h2c``); the
backend echoes request bodies and accepts WebSocket upgrades, so that
bodies, flow control and RFC 8441 tunnels are all in reach. Each input is
sent all at once and byte by byte (or in 7-byte pieces when long), with and
without a clean EOF after it; then virtual time runs until the core wants no
more wake-ups.

Besides the invariants every harness checks (:func:`fuzz._common.check_outcome`):
the connection has ended by then, and everything the proxy sent is a
sequence of whole HTTP/2 frames that starts with SETTINGS and whose header
blocks decode with one HPACK decoder, as a real client would read them.
"""

from __future__ import annotations

import h11
import hpack
import hyperframe.exceptions
from hyperframe.frame import (
    ContinuationFrame,
    ExtensionFrame,
    Frame,
    HeadersFrame,
    PushPromiseFrame,
    SettingsFrame,
)
from hypothesis import strategies as st

from fuzz._common import check_outcome, splits
from fuzz.h2_inputs import H2_SEEDS, PREFACE
from fuzz.h2_inputs import inputs as h2_inputs
from tests.simnet import Reply, SimNet, echo, simple_config, websocket

NAME = "h2"
SEEDS = H2_SEEDS


def inputs() -> st.SearchStrategy[bytes]:
    return h2_inputs()


def _backend(request: h11.Request, body: bytes) -> Reply:
    headers = {bytes(name).lower() for name, _ in request.headers}
    return websocket(request, body) if b"upgrade" in headers else echo(request, body)


def check_frames(output: bytes) -> list[str]:
    """What a strict HTTP/2 client would refuse in the proxy's output."""
    problems: list[str] = []
    decoder = hpack.Decoder()
    block = bytearray()
    offset = 0
    first = True
    while offset < len(output):
        if len(output) - offset < 9:
            return [f"{len(output) - offset} bytes of a frame header left at the close"]
        frame, length = Frame.parse_frame_header(memoryview(output[offset : offset + 9]))
        if isinstance(frame, ExtensionFrame):
            return [f"a frame of unknown type {frame.type} sent"]
        body = output[offset + 9 : offset + 9 + length]
        if len(body) < length:
            return [f"a {type(frame).__name__} cut short at the close"]
        offset += 9 + length
        try:
            frame.parse_body(memoryview(body))
        except hyperframe.exceptions.HyperframeError as error:
            return [f"{type(frame).__name__} does not parse: {error}"]
        if first and not (isinstance(frame, SettingsFrame) and "ACK" not in frame.flags):
            problems.append(f"the server preface starts with {type(frame).__name__}")
        first = False
        if isinstance(frame, PushPromiseFrame):
            problems.append("PUSH_PROMISE sent, although push is off")
        if isinstance(frame, HeadersFrame | ContinuationFrame):
            block += frame.data
            if "END_HEADERS" in frame.flags:
                try:
                    decoder.decode(bytes(block), raw=True)
                except hpack.HPACKError as error:
                    problems.append(f"a header block does not decode: {error!r}")
                block.clear()
    return problems


def check(data: bytes) -> None:
    stream = PREFACE + data
    for how, chunker in splits(stream):
        for eof in (False, True):
            net = SimNet(simple_config(protocols=("h2c", "http/1.1")))
            net.add_backend("10.0.0.1", 80, _backend)
            client = net.client(raw=True, chunker=chunker)
            client.send_raw(stream)
            if eof:
                client.close()
            net.run()
            net.quiesce()
            what = f"{len(data)} bytes after the preface, {how}, {'with' if eof else 'without'} EOF"
            problems = check_frames(bytes(client.received))
            if not client.closed:
                problems.append("the connection is still open when no timer is left")
            if problems:
                raise AssertionError(f"{what}:\n  " + "\n  ".join(problems))
            # Responses are HTTP/2 frames: h11 cannot read them, which is expected.
            client.protocol_errors.clear()
            check_outcome(net, client, what=what, strict_client=False)


def test_one_input(data: bytes) -> None:
    """The atheris entry point."""
    check(data)
