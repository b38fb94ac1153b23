"""The ``Cache-Status`` response field (RFC 9211): what the cache did with a request."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CacheStatus"]


@dataclass(slots=True)
class CacheStatus:
    """One cache's entry in Cache-Status; rendered by :meth:`render`."""

    hit: bool = False
    fwd: str | None = None
    """``miss``, ``uri-miss``, ``vary-miss``, ``stale`` or ``request`` (None on a hit)."""
    fwd_status: int | None = None
    ttl: int | None = None
    stored: bool = False
    collapsed: bool = False
    detail: str | None = None

    def render(self, name: bytes) -> bytes:
        """The field member for the cache called ``name``."""
        parts = [name]
        if self.hit:
            parts.append(b"hit")
        if self.fwd is not None:
            parts.append(b"fwd=" + self.fwd.encode())
        if self.fwd_status is not None:
            parts.append(b"fwd-status=%d" % self.fwd_status)
        if self.ttl is not None:
            parts.append(b"ttl=%d" % self.ttl)
        if self.stored:
            parts.append(b"stored")
        if self.collapsed:
            parts.append(b"collapsed")
        if self.detail:
            parts.append(b'detail="%s"' % self.detail.encode().replace(b'"', b"'"))
        return b"; ".join(parts)
