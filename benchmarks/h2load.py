"""h2load (nghttp2-client): HTTP/2 request rates over TLS, and a check of the protocol.

h2load reports requests/s and errors but no percentiles, so every run also writes h2load's
per-request log (``--log-file``: start, status, microseconds to the end of the response)
and p50 and p99 are computed from it, by nearest rank.

HTTP/1.1 over TLS is measured with wrk instead (:func:`benchmarks.load.wrk` on an
``https://`` URL): h2load 1.52's ``--h1`` in duration mode (``-D``) often aborts at the end
of a run (a libev assertion, ``epoll_modify``) or keeps requesting on a few connections
after "Stopped all clients", against nginx as against sansproxy, with 1 MiB bodies.

h2load offers one TLS 1.3 cipher suite, AES-256-GCM: the one wrk gets from every peer
(OpenSSL's default client order starts with it; Python's server contexts prefer it and
nginx takes the client's first), so both protocols and all peers do the same cryptography.
"""

from __future__ import annotations

import contextlib
import math
import re
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.load import Sample

__all__ = ["h2load", "parse_h2load", "percentile", "probe", "read_log"]

_INACTIVITY = 2  # seconds: h2load closes a silent connection, its requests become timeouts
_CIPHER = "TLS_AES_256_GCM_SHA384"

_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
    r"(\d+) failed, (\d+) errored, (\d+) timeout"
)
_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_RATE = re.compile(r"finished in [\d.]+\w*, ([\d.]+) req/s")


def percentile(ordered: Sequence[int], fraction: float) -> float:
    """The nearest-rank percentile of an ascending sequence (``fraction`` in (0, 1])."""
    if not ordered:
        raise ValueError("no values")
    rank = max(1, math.ceil(fraction * len(ordered)))
    return float(ordered[rank - 1])


def read_log(path: Path) -> list[int]:
    """The response times (µs) of h2load's ``--log-file``, ascending; [] if it is missing."""
    times: list[int] = []
    with contextlib.suppress(OSError), path.open(encoding="ascii", errors="replace") as log:
        for line in log:
            columns = line.split("\t")
            if len(columns) >= 3 and columns[2].strip().isdigit():
                times.append(int(columns[2]))
    times.sort()
    return times


def parse_h2load(output: str, times_us: Sequence[int] = ()) -> Sample:
    """Requests/s and errors from h2load's output; p50 and p99 from ``times_us`` (ascending).

    Errors are the failed requests (h2load counts errored and timed-out ones among them)
    and the 4xx and 5xx answers.
    """
    rate, requests = _RATE.search(output), _REQUESTS.search(output)
    if rate is None or requests is None:
        return Sample(0.0, errors=1, detail="no 'req/s' in h2load output: " + output[-300:])
    _, _, done, _, failed, errored, timeouts = (int(group) for group in requests.groups())
    status = _STATUS.search(output)
    client_errors = int(status.group(3)) if status else 0
    server_errors = int(status.group(4)) if status else 0
    errors = failed + client_errors + server_errors
    detail = ""
    if errors:
        detail = (
            f"h2load: {failed} failed ({errored} errored, {timeouts} timeout), "
            f"{client_errors} 4xx, {server_errors} 5xx"
        )
    return Sample(
        float(rate.group(1)),
        p50_ms=percentile(times_us, 0.50) / 1000 if times_us else None,
        p99_ms=percentile(times_us, 0.99) / 1000 if times_us else None,
        errors=errors,
        timeouts=timeouts,
        detail=detail,
        extra={"requests": float(done)},
    )


def _h2_argv(binary: str) -> list[str]:
    """h2load offering only ``h2`` by ALPN (no fallback to HTTP/1.1) and one cipher suite."""
    return [binary, f"--tls13-ciphers={_CIPHER}", "--npn-list=h2"]


def h2load(
    binary: str,
    url: str,
    *,
    connections: int,
    streams: int,
    seconds: float,
    threads: int,
    log: Path,
    run: Callable[[list[str], float], str],
) -> Sample:
    """Load ``url`` over HTTP/2 for ``seconds`` with ``connections`` x ``streams`` in flight.

    ``log`` is a scratch path for the per-request log. A run that does not end within 30 s
    of its duration is stopped and counts as failed.
    """
    argv = _h2_argv(binary)
    argv += [f"-c{connections}", f"-m{streams}", f"-t{max(1, min(threads, connections))}"]
    argv += ["-D", f"{max(1, round(seconds))}", "-N", str(_INACTIVITY), f"--log-file={log}", url]
    try:
        output = run(argv, seconds + 30)
    except subprocess.TimeoutExpired:
        return Sample(0.0, errors=1, detail="h2load did not finish")
    try:
        return parse_h2load(output, read_log(log))
    finally:
        log.unlink(missing_ok=True)


def probe(binary: str, url: str, *, run: Callable[[list[str], float], str]) -> tuple[str, str]:
    """Two HTTP/2 requests on one connection: ("", "TLS version, cipher") or (the problem, "").

    The problem says whether the handshake failed, ALPN did not choose ``h2``, or the
    answers were wrong.
    """
    wanted = "h2"
    try:
        output = run([*_h2_argv(binary), "-n2", "-c1", url], 30)
    except subprocess.TimeoutExpired:
        return "h2load: two requests took more than 30 s", ""
    chosen = re.search(r"^Application protocol: (\S+)", output, re.M)
    if chosen is None:
        tail = " | ".join(line for line in output.splitlines()[-3:] if line.strip())
        return f"no {wanted} connection (h2load: {tail[-300:]})", ""
    if chosen.group(1) != wanted:
        return f"ALPN chose {chosen.group(1)}, not {wanted}", ""
    requests, status = _REQUESTS.search(output), _STATUS.search(output)
    if requests is None or status is None or requests.group(4) != "2" or status.group(1) != "2":
        found = requests.group(0) if requests else output[-200:]
        return f"two requests on one connection were not both answered with 2xx ({found})", ""
    tls = re.search(r"^TLS Protocol: (\S+)", output, re.M)
    cipher = re.search(r"^Cipher: (\S+)", output, re.M)
    return "", f"{tls.group(1) if tls else '?'}, {cipher.group(1) if cipher else '?'}"
