"""Byte checks on HTTP/1 requests that h11 does not make, done before h11 parses.

h11 parses requests, but it lets a few things through that a proxy must not
forward, because a backend may read them differently (request smuggling):

- a bare CR (one not followed by LF) outside the content (RFC 9112 §2.2): h11
  lets one through inside a chunk extension, and the codec used to strip one
  before a request line along with the empty lines there;
- a control character other than HTAB in a field value (RFC 9110 §5.5): h11
  allows them, for cookies that carry byte 0x01 (h11 issue #57);
- a request line of any ``HTTP/d.d`` version, and an HTTP/0.9 request line
  (``GET /``), which h11 holds until a blank line that never comes.

:class:`HeadScanner` finds where a request head ends and checks it;
:class:`ChunkScanner` follows the framing lines of a chunked body (size lines,
the CRLF after each chunk's data, the trailer section) and checks those,
skipping the data itself, which may hold any byte. Both keep their state
between reads, hold at most ``limit + 1`` bytes, and refuse by raising
:class:`Refusal`. Each check concerns a prefix of what is scanned (the first
byte, the request line once it ends, the head so far, a framing line once it
ends, the byte that passes the limit) and they run in a fixed order, so a
request is judged the same whether it arrives in one read or byte by byte.

What the scanners accept, h11 parses by the same grammar, so the two agree on
where each line and the head end: the head at the first empty line, each
line at its LF (a CR may only come right before it).
"""

from __future__ import annotations

import enum
import re

__all__ = ["ChunkScanner", "HeadScanner", "Refusal"]

_EMPTY_LINES = re.compile(rb"(?:\r?\n)*")
_HEAD_END = re.compile(rb"\n\r?\n")
_FORBIDDEN = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)")
"""A control character other than HTAB, CR and LF, or a bare CR (to name it in a refusal)."""
_CONTROLS = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_ALLOWED = bytes(byte for byte in range(256) if byte not in _CONTROLS)
"""Every byte but the control characters that are never allowed in a line."""
_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_REQUEST_LINE = re.compile(
    rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+ [\x21-\x7e]+ HTTP/(?P<version>[0-9]\.[0-9])\r?\n"
)
"""RFC 9112 §3: method SP request-target SP HTTP-version, as h11 reads it."""
_SUPPORTED = (b"1.0", b"1.1")
_CRLF = b"\r\n"
_CHUNK_LINE = re.compile(rb"(?P<size>[0-9A-Fa-f]{1,20})(?:;[^\r\n]*)?[ \t]*\r\n")
"""h11's chunk-size line (RFC 9112 §7.1), with no CR inside the extensions."""


class Refusal(Exception):
    """The request must be refused with ``status``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class HeadScanner:
    """Finds the end of one request head and checks it (RFC 9112 §2.2, §3, §5).

    The head counted against ``limit`` is the request line, the field lines
    and the empty line that ends them, line endings included. Empty lines
    before the request line are ignored (RFC 9112 §2.2) and not counted.
    Refused, in the order they are met:

    - a bare CR among the empty lines before the request line (400);
    - a first byte that cannot start a method (400, at once);
    - a request line that is not ``method SP target SP HTTP/d.d`` (400), or is
      one of a version other than 1.0 and 1.1 (505);
    - a bare CR (once the next byte is in), or a control character other
      than HTAB, anywhere in the head (400);
    - a head longer than ``limit`` (431).

    These checks are made in this order on all the bytes in hand, and each
    concerns a prefix of the head, so the first refusal a head earns is the
    same however it is split into reads.
    """

    __slots__ = ("_checked", "_cr", "_held", "_limit", "_line_checked", "head")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._held = bytearray()
        """The head so far, when it came in more than one read (at most ``limit + 1`` bytes)."""
        self._cr = False
        """Before the request line: the last byte was a CR, its LF still to come."""
        self._line_checked = False
        self._checked = 0
        """Bytes of the head so far that hold no bare CR and no control character."""
        self.head = b""
        """The complete head, once :meth:`feed` found its end."""

    def feed(self, data: bytes) -> int:
        """Scan the next bytes of the head.

        Returns:
            -1 while the head is incomplete (all of ``data`` was taken), else how
            many bytes of ``data`` complete it (the rest follows the head).

        Raises:
            Refusal: the request must be refused.
        """
        held = self._held
        room = self._limit + 1
        if not held:
            start = self._skip_empty_lines(data)
            if start == len(data):
                return -1
            if data[start] not in _TCHAR:
                raise Refusal(400, "illegal request line")
            # Usually the whole head is in this read: check it where it is.
            end = self._check(data, start, 0, min(len(data), start + room))
            if end >= 0:
                self.head = data[start:end]
                return end
            held += data[start : start + room]
            return -1
        old = len(held)
        held += data[: room - old]
        end = self._check(held, 0, old, len(held))
        if end < 0:
            return -1
        self.head = bytes(held[:end])
        return end - old

    def pending(self) -> bytes:
        """What an incomplete head holds, for h11 to judge at the client's EOF."""
        return b"\r" if self._cr else bytes(self._held)

    def _skip_empty_lines(self, data: bytes) -> int:
        pos = 0
        if self._cr:
            if data[:1] != b"\n":
                raise Refusal(400, "bare CR before the request line")
            self._cr = False
            pos = 1
        match = _EMPTY_LINES.match(data, pos)
        assert match is not None  # the pattern matches the empty string
        pos = match.end()
        if data[pos : pos + 1] == b"\r":
            # Not followed by LF here (the pattern took every CRLF), unless the LF is still to come.
            if pos + 1 < len(data):
                raise Refusal(400, "bare CR before the request line")
            self._cr = True
            return len(data)
        return pos

    def _check(self, buf: bytes | bytearray, base: int, old: int, stop: int) -> int:
        """Check the head in ``buf[base:stop]``, of which ``old`` bytes were checked before.

        Returns:
            Where the head ends in ``buf``, or -1 while it is incomplete.
        """
        limit = self._limit
        if not self._line_checked:
            lf = buf.find(b"\n", base + old, stop)
            if 0 <= lf < base + limit:
                line = _REQUEST_LINE.fullmatch(buf, base, lf + 1)
                if line is None:
                    raise Refusal(400, f"illegal request line: {bytes(buf[base : lf + 1])!r}")
                if line["version"] not in _SUPPORTED:
                    raise Refusal(505, f"HTTP version {line['version'].decode()} not supported")
                self._line_checked = True
        match = _HEAD_END.search(buf, base + max(0, old - 2), stop)
        end = match.end() if match is not None and match.end() - base <= limit else -1
        upto = stop if end < 0 else end
        if end < 0 and buf[upto - 1] == 13:
            upto -= 1  # a CR that ends the bytes in hand: the next byte says if it is bare
        _check_line_bytes(buf[base + self._checked : upto], "the request head")
        self._checked = upto - base
        if end < 0 and stop - base > limit:
            raise Refusal(431, f"request head longer than {limit} bytes")
        return end


def _check_line_bytes(data: bytes | bytearray, where: str) -> None:
    """Refuse a bare CR or a control character other than HTAB in ``data``.

    ``data`` holds whole lines (or ends before a CR whose LF is not known yet).
    """
    if data.translate(None, _ALLOWED) or data.count(b"\r") != data.count(b"\r\n"):
        bad = _FORBIDDEN.search(data)
        assert bad is not None
        what = "bare CR" if bad[0] == b"\r" else f"control character {bytes(bad[0])!r}"
        raise Refusal(400, f"{what} in {where}")


class _Part(enum.Enum):
    SIZE_LINE = enum.auto()
    DATA = enum.auto()
    DATA_CRLF = enum.auto()
    TRAILERS = enum.auto()
    DONE = enum.auto()


class ChunkScanner:
    """Follows the framing of a chunked request body and checks it (RFC 9112 §7.1).

    Refused: a chunk-size line that is not h11's grammar or holds a CR in its
    extensions (400), or is longer than ``limit`` (431); chunk data not
    followed by CRLF (400); a trailer line with a bare CR or a control
    character other than HTAB (400); a trailer section (its field lines and
    the empty line that ends it) longer than ``limit`` (431). Bytes after the
    body belong to the next request and are not looked at.
    """

    __slots__ = ("_crlf_seen", "_left", "_limit", "_line", "_part", "_trailer_bytes")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._part = _Part.SIZE_LINE
        self._line = bytearray()
        """The framing line so far (at most ``limit`` bytes)."""
        self._left = 0
        """Data bytes left in the current chunk."""
        self._crlf_seen = 0
        self._trailer_bytes = 0

    @property
    def done(self) -> bool:
        """The body has ended (after its trailer section)."""
        return self._part is _Part.DONE

    def feed(self, data: bytes) -> None:
        """Scan the next bytes of the body.

        Raises:
            Refusal: the request must be refused.
        """
        pos = 0
        n = len(data)
        while pos < n:
            part = self._part
            if part is _Part.DATA:
                end = pos + self._left
                if end > n:
                    self._left = end - n
                    return
                self._left = 0
                if data.startswith(_CRLF, end):
                    pos = end + 2
                    self._part = _Part.SIZE_LINE
                else:
                    pos = end
                    self._part = _Part.DATA_CRLF
            elif part is _Part.SIZE_LINE and not self._line:
                # Usually the whole line is in this read: match it where it is.
                match = _CHUNK_LINE.match(data, pos)
                if match is None or match.end() - pos > self._limit:
                    pos = self._line_part(data, pos)  # split, too long, or refused
                    continue
                pos = match.end()
                self._left = int(match["size"], 16)
                self._part = _Part.DATA if self._left else _Part.TRAILERS
            elif part is _Part.DATA_CRLF:
                seen = self._crlf_seen
                piece = data[pos : pos + 2 - seen]
                if piece != _CRLF[seen : seen + len(piece)]:
                    raise Refusal(400, "chunk data not followed by CRLF")
                pos += len(piece)
                self._crlf_seen = seen = seen + len(piece)
                if seen == 2:
                    self._crlf_seen = 0
                    self._part = _Part.SIZE_LINE
            elif part is _Part.DONE:
                return
            else:
                pos = self._line_part(data, pos)

    def _line_part(self, data: bytes, pos: int) -> int:
        """Take bytes of a size line or a trailer line; returns where the next part starts."""
        lf = data.find(b"\n", pos)
        stop = len(data) if lf < 0 else lf + 1
        line = self._line
        budget = self._limit
        if self._part is _Part.TRAILERS:
            budget -= self._trailer_bytes
        if len(line) + stop - pos > budget:
            what = "trailer section" if self._part is _Part.TRAILERS else "chunk-size line"
            raise Refusal(431, f"{what} longer than {self._limit} bytes")
        if lf < 0:
            line += data[pos:]
            return stop
        if line:
            line += data[pos:stop]
            whole: bytes | bytearray = bytes(line)
            line.clear()
        else:
            whole = data[pos:stop]
        if self._part is _Part.SIZE_LINE:
            match = _CHUNK_LINE.fullmatch(whole)
            if match is None:
                what = "bare CR" if _FORBIDDEN.search(whole) else "illegal chunk-size line"
                raise Refusal(400, f"{what} in chunk-size line {bytes(whole)!r}")
            self._left = int(match["size"], 16)
            self._part = _Part.DATA if self._left else _Part.TRAILERS
        else:
            self._trailer_bytes += len(whole)
            _check_line_bytes(whole, "a trailer line")
            if whole in (b"\r\n", b"\n"):
                self._part = _Part.DONE
        return stop
