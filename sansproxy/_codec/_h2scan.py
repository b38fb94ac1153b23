"""The client's GOAWAY frames, found in the bytes before h2 reads them.

h2 refuses to send anything once it has received a GOAWAY, yet RFC 9113 §6.8 lets
the client's own streams finish after the client sent one (its last-stream id is
about the streams a server would open). So the HTTP/2 codec feeds h2 what the
client sent minus its well-formed GOAWAY frames, and reports those itself. Only
frame headers are read: everything else passes through in slices.
"""

from __future__ import annotations

from sansproxy._codec import GoAway

__all__ = ["GoawayFinder"]

PREFACE_LENGTH = 24
"""The client connection preface (RFC 9113 §3.4), which h2 checks itself."""

_HEADERS = 0x1
_PUSH_PROMISE = 0x5
_GOAWAY = 0x7
_CONTINUATION = 0x9
_END_HEADERS = 0x4


class GoawayFinder:
    """Takes the client's GOAWAY frames out of what h2 is fed, in order.

    h2 refuses to send anything after it receives a GOAWAY, but the client's own
    streams may still finish (RFC 9113 §6.8: its last-stream id is about the streams
    the server would open). So well-formed GOAWAY frames (stream 0, at least 8 bytes,
    not inside a header block) become :class:`~sansproxy._codec.GoAway` events here;
    anything odd about one is left to h2 to refuse. Only frame headers are read: the
    rest passes through in slices.
    """

    __slots__ = ("_frame", "_goaway", "_header", "_in_block", "_remaining", "_skip")

    def __init__(self) -> None:
        self._skip = PREFACE_LENGTH
        """Bytes of the preface still to come (h2 checks them)."""
        self._remaining = 0
        """Bytes of the current frame's payload still to pass through."""
        self._header = b""
        """A frame header not yet complete."""
        self._goaway: bytearray | None = None
        """The payload of a GOAWAY frame being collected."""
        self._frame = 0
        """The payload length of that GOAWAY frame."""
        self._in_block = False
        """Inside a header block (HEADERS or PUSH_PROMISE without END_HEADERS)."""

    def split(self, data: bytes) -> list[bytes | GoAway]:
        """``data`` as pieces for h2, with the GOAWAY frames in it as events between them.

        A frame header split across reads is held back until it is whole, since what h2
        has been fed cannot be taken back.
        """
        out: list[bytes | GoAway] = []
        segments: list[bytes] = []
        run = position = 0
        size = len(data)
        while position < size:
            if self._skip or self._remaining:
                if self._skip:
                    step = min(self._skip, size - position)
                    self._skip -= step
                else:
                    step = min(self._remaining, size - position)
                    self._remaining -= step
                position += step
            elif self._goaway is not None:
                step = min(self._frame - len(self._goaway), size - position)
                self._goaway += data[position : position + step]
                position += step
                run = position
                if len(self._goaway) == self._frame:
                    payload, self._goaway = self._goaway, None
                    last = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
                    out.append(GoAway(last_stream=last, code=int.from_bytes(payload[4:8], "big")))
            else:
                begin = position
                held = self._header
                step = min(9 - len(held), size - position)
                header = held + data[position : position + step]
                position += step
                if len(header) < 9:
                    self._header = header
                    segments.append(data[run:begin])
                    run = size
                    break
                self._header = b""
                length = int.from_bytes(header[:3], "big")
                kind, flags = header[3], header[4]
                stream = int.from_bytes(header[5:9], "big") & 0x7FFFFFFF
                if kind == _GOAWAY and stream == 0 and length >= 8 and not self._in_block:
                    segments.append(data[run:begin])
                    joined = b"".join(segments)
                    if joined:
                        out.append(joined)
                    segments = []
                    self._goaway = bytearray()
                    self._frame = length
                    run = position
                    continue
                if held:
                    segments.append(held)  # the rest of this header follows at ``begin``
                if kind in (_HEADERS, _PUSH_PROMISE, _CONTINUATION):
                    self._in_block = not flags & _END_HEADERS
                self._remaining = length
        if run < size:
            segments.append(data[run:size])
        joined = b"".join(segments)
        if joined:
            out.append(joined)
        return out
