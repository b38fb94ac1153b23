"""Response heads from a backend that h11 cannot frame, rewritten before it parses them.

RFC 9112 §6.3 item 3: when a response carries ``Transfer-Encoding`` and chunked
is not its final coding, its body runs until the backend closes the connection.
h11 only knows ``chunked`` and refuses any other coding, so :class:`ResponseHeads`
watches a backend's bytes until the final response head of the cycle has passed
(interim 1xx heads go by untouched) and, in that one case, removes the
``Transfer-Encoding`` lines and any ``Content-Length`` beside them (a length that
is not the framing must not be passed on). h11 then reads the body to the close,
and the connection is never reused. Every other head passes byte for byte; a head
with obsolete line folding is left alone (removing a line could join its
continuation to another field), and h11 refuses it as before.
"""

from __future__ import annotations

import re

__all__ = ["ResponseHeads"]

_HEAD_END = re.compile(rb"\n\r?\n")
_STATUS = re.compile(rb"\s*HTTP/\d\.\d (\d{3})")


class ResponseHeads:
    """The bytes of one cycle's response heads, held until each head is whole."""

    __slots__ = ("_buffer", "_limit", "done", "rewrote")

    def __init__(self, limit: int) -> None:
        self._buffer = b""
        self._limit = limit
        self.done = False
        """The final head has passed: everything else goes straight to h11."""
        self.rewrote = False
        """The final head's framing was rewritten (its connection must not be reused)."""

    def feed(self, data: bytes) -> bytes:
        """What of ``data`` (after what was held) h11 may have now."""
        if self.done:
            return data
        buffer = self._buffer + data if self._buffer else data
        out: list[bytes] = []
        while True:
            match = _HEAD_END.search(buffer)
            if match is None:
                if len(buffer) > self._limit:
                    self.done = True  # too long for a head: h11 says so
                    out.append(buffer)
                    buffer = b""
                break
            head, buffer = buffer[: match.end()], buffer[match.end() :]
            status = _STATUS.match(head)
            if status is not None and status.group(1)[:1] == b"1" and status.group(1) != b"101":
                out.append(head)  # an interim response: the final one is still to come
                continue
            self.done = True
            out.append(self._reframed(head))
            out.append(buffer)
            buffer = b""
            break
        self._buffer = buffer
        return b"".join(out)

    def flush(self) -> bytes:
        """The peer closed: whatever was held goes to h11 as it is."""
        self.done = True
        held, self._buffer = self._buffer, b""
        return held

    def _reframed(self, head: bytes) -> bytes:
        if b"transfer-encoding" not in head.lower():
            return head
        lines = head.split(b"\n")
        codings: list[bytes] = []
        for line in lines[1:]:
            if line[:1] in (b" ", b"\t"):
                return head  # obsolete line folding: not ours to untangle
            name, colon, value = line.partition(b":")
            if colon and name.lower() == b"transfer-encoding":
                codings.extend(c.strip().lower() for c in value.split(b",") if c.strip())
        if not codings or codings[-1] == b"chunked":
            return head
        self.rewrote = True
        kept = [
            line
            for line in lines
            if line.partition(b":")[0].lower() not in (b"transfer-encoding", b"content-length")
        ]
        return b"\n".join(kept)
