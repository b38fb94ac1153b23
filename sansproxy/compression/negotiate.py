"""Content-coding negotiation: which coding a request's ``Accept-Encoding`` asks for.

Theory of operation
-------------------
``Accept-Encoding`` (RFC 9110 §12.5.3) is a list of codings, each with an
optional weight::

    Accept-Encoding  = #( codings [ weight ] )
    codings          = content-coding / "identity" / "*"
    weight           = OWS ";" OWS "q=" qvalue
    qvalue           = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )

Parsing never raises: a member that does not follow the grammar (a q above 1,
four decimals, another parameter, a coding that is not a token) is ignored on
its own and the rest of the field still counts. Codings are case-insensitive
and ``x-gzip`` means ``gzip`` (§8.4.1.3). When a coding is listed twice, its
first valid member counts. Weights are kept as integers in thousandths, so that
comparisons are exact.

Choosing, for each coding the server can produce:

1. the coding's weight is its own member's, else that of ``*``, else it is not
   acceptable (a coding the client did not list is not wanted);
2. a weight of 0 means refused;
3. the highest weight wins; a tie goes to the server's preference order;
4. a client that weighs ``identity`` explicitly above every acceptable coding
   gets the response as it is (``identity`` takes part only when named: its
   implicit acceptability, §12.5.3, carries no weight to compare);
5. no field at all, or an empty one, means no compression (§12.5.3: an empty
   value says the user agent wants no coding).

``identity;q=0`` with no acceptable coding would call for a 415 from an origin;
a proxy has no other representation, so it forwards the response unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sansproxy.compression import encoders

__all__ = ["DEFAULT_PREFERENCE", "choose_coding", "default_preference", "parse_accept_encoding"]

DEFAULT_PREFERENCE = ("zstd", "br", "gzip")
"""The server's order when the client weighs codings equally: best ratio per CPU first.

``deflate`` is left out: gzip is the same algorithm and every client that
accepts deflate accepts gzip, while some old clients mistook deflate for raw
deflate (RFC 9110 §8.4.1.2 notes the confusion).
"""

_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
"""RFC 9110 §5.6.2 token characters."""
_OWS = b" \t"
_ALIASES = {"x-gzip": "gzip", "x-compress": "compress"}
"""Codings RFC 9110 §8.4.1 says a recipient should treat as their standard names."""


def default_preference() -> tuple[str, ...]:
    """:data:`DEFAULT_PREFERENCE`, limited to the codings this interpreter can produce."""
    can = encoders.available()
    return tuple(coding for coding in DEFAULT_PREFERENCE if coding in can)


def parse_accept_encoding(values: Iterable[bytes]) -> dict[str, int]:
    """The weight (in thousandths) of each coding the field lines name.

    Args:
        values: the values of every ``Accept-Encoding`` field line, in order
            (RFC 9110 §5.3: several lines are one comma-separated list).

    Returns:
        Lower-cased coding (``x-gzip`` as ``gzip``, ``*`` and ``identity``
        included) to weight, 0 to 1000. Invalid members are left out.
    """
    weights: dict[str, int] = {}
    for value in values:
        for member in value.split(b","):
            parsed = _member(member)
            if parsed is not None and parsed[0] not in weights:
                weights[parsed[0]] = parsed[1]
    return weights


def choose_coding(values: Sequence[bytes], preference: Sequence[str] | None = None) -> str | None:
    """The coding to encode a response in, or None to send it as it is.

    Args:
        values: the request's ``Accept-Encoding`` values, one per field line;
            empty when the request has none.
        preference: the codings the server may use, best first; None for
            :func:`default_preference`. Lower-case names.
    """
    if not values:
        return None
    weights = parse_accept_encoding(values)
    star = weights.get("*", 0)
    best: str | None = None
    best_weight = 0
    for coding in default_preference() if preference is None else preference:
        weight = weights.get(coding, star)
        if weight > best_weight:  # strictly: an equal weight later in the order loses
            best, best_weight = coding, weight
    if best is not None and weights.get("identity", 0) > best_weight:
        return None
    return best


def _member(member: bytes) -> tuple[str, int] | None:
    """One list member as (coding, weight), or None when empty or malformed."""
    coding, semicolon, weight = member.partition(b";")
    coding = coding.strip(_OWS)
    if not coding or not _is_token(coding):
        return None
    name = coding.decode("ascii").lower()
    name = _ALIASES.get(name, name)
    if not semicolon:
        return name, 1000
    key, equals, qvalue = weight.strip(_OWS).partition(b"=")
    if not equals or key.lower() != b"q":
        return None
    parsed = _qvalue(qvalue)
    return None if parsed is None else (name, parsed)


def _qvalue(text: bytes) -> int | None:
    """An RFC 9110 §12.4.2 qvalue in thousandths, or None when it breaks the grammar."""
    whole, _, fraction = text.partition(b".")
    if whole not in (b"0", b"1") or len(fraction) > 3:
        return None
    if fraction and not fraction.isdigit():  # bytes.isdigit: ASCII digits only
        return None
    thousandths = int(whole) * 1000 + int(fraction.ljust(3, b"0") or b"0")
    return thousandths if thousandths <= 1000 else None  # "1.5" and "1.001" are not qvalues


def _is_token(value: bytes) -> bool:
    return all(byte in _TCHAR for byte in value)
