"""The authority grammar of a ``Host`` value or an absolute-form target (RFC 3986 §3.2).

RFC 9110 §7.2 defines ``Host = uri-host [ ":" port ]``, with ``uri-host`` the
``host`` of RFC 3986 §3.2.2: an IP-literal in brackets (IPv6 or IPvFuture),
an IPv4 address, or a reg-name. Every IPv4 address is also a reg-name, so the
reg-name rule covers both. There is no userinfo (RFC 9110 §4.2.4 deprecates
it in ``http`` URIs), no path, no whitespace, and the port is digits only.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = ["valid_authority"]

_REG_NAME = rb"(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*"
"""unreserved, sub-delims and percent-encoded octets (RFC 3986 §3.2.2); may be empty."""

_IPV_FUTURE = rb"v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+"

_AUTHORITY = re.compile(
    rb"(?:(?P<reg>" + _REG_NAME + rb")|\[(?:(?P<ipv6>[0-9A-Fa-f:.]+)|" + _IPV_FUTURE + rb")\])"
    rb"(?::[0-9]*)?"
)


def valid_authority(value: bytes, *, empty_host: bool = True) -> bool:
    """Whether ``value`` is ``uri-host [ ":" port ]``.

    Args:
        value: a ``Host`` field value or the authority of an absolute-form target.
        empty_host: allow an empty host: RFC 9110 §7.2 has a client send an
            empty ``Host`` when the target URI has no authority, but an
            ``http`` or ``https`` URI with an empty host is invalid (§4.2.1).
    """
    match = _AUTHORITY.fullmatch(value)
    if match is None:
        return False
    ipv6 = match["ipv6"]
    if ipv6 is not None:
        try:
            ipaddress.IPv6Address(ipv6.decode("ascii"))
        except ValueError:
            return False
    return empty_host or match["reg"] != b""
