"""HTTP/2 defences against abusive clients, over real sockets, on every adapter.

Each test runs one abusive client, written with raw frames (:class:`h2peer.FrameClient`),
against a proxy that a well-behaved client (httpx over HTTP/2, :class:`Bystander`) uses
at the same time, and checks three things:

- the abusive connection ends as documented (GOAWAY with ENHANCE_YOUR_CALM for the
  floods, the codes named in each test otherwise, then the close);
- the bystander keeps getting answers while the abuse goes on and after it;
- the proxy's resident memory (``VmRSS`` of its process) stays within a generous bound.

The timeouts under test are short (``ABUSE_TIMEOUTS``) so that every test stays within a
few seconds; the flood limits are the shipped defaults unless a test says otherwise.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from backend import Backend
from conftest import RunningProxy, TlsFiles, proxy_config
from h2peer import (
    CANCEL,
    ENHANCE_YOUR_CALM,
    INTERNAL_ERROR,
    NO_ERROR,
    PREFACE,
    PROTOCOL_ERROR,
    FrameClient,
)
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

Start = Callable[..., RunningProxy]
MIB = 1024 * 1024
RSS_GROWTH_LIMIT_KIB = 48 * 1024
"""How much the proxy's resident memory may grow over one abuse (generous: it is ~10 MiB)."""

ABUSE_TIMEOUTS = {"client_header": 1, "client_keepalive": 2, "upstream_body": 1, "drain": 2}
"""``drain`` also bounds how long a closed connection may take to flush before a reset."""

HTTP2_DEFAULTS = {"reset_burst": 100, "control_frame_burst": 1000}
"""The shipped ``[http2]`` limits the floods run into (sansproxy.config.Http2Settings)."""

ABUSE_SECONDS = 1.0
"""Floods are repeated, connection after connection, for at least this long, so that the
bystander's answers during the abuse can be counted."""


@dataclass(frozen=True, slots=True)
class AbuseProxy:
    """The proxy under abuse: an h2c + HTTP/1.1 listener, TLS (ALPN h2), h2c only."""

    running: RunningProxy
    h2c_port: int
    tls_port: int
    h2c_only_port: int
    tls: TlsFiles

    @property
    def h2c_url(self) -> str:
        return f"http://127.0.0.1:{self.h2c_port}"

    def rss_kib(self) -> int:
        return self.running.status_kib("VmRSS")


def start_abuse_proxy(
    start_proxy: Start, backend: Backend, tls_files: TlsFiles, **sections: Any
) -> AbuseProxy:
    sections.setdefault("timeouts", ABUSE_TIMEOUTS)
    config = proxy_config(backend.url, listener={"protocols": ["h2c", "http/1.1"]}, **sections)
    config["listeners"] += [
        {
            "address": "127.0.0.1:0",
            "upstream": "app",
            "certificate": str(tls_files.cert_file),
            "private_key": str(tls_files.key_file),
        },
        {"address": "127.0.0.1:0", "upstream": "app", "protocols": ["h2c"]},
    ]
    running = start_proxy(config)
    assert len(running.ports) == 3
    return AbuseProxy(
        running=running,
        h2c_port=running.ports[0],
        tls_port=running.ports[1],
        h2c_only_port=running.ports[2],
        tls=tls_files,
    )


@pytest.fixture
def proxy(start_proxy: Start, backend: Backend, tls_files: TlsFiles) -> AbuseProxy:
    return start_abuse_proxy(start_proxy, backend, tls_files)


class Bystander:
    """A well-behaved HTTP/2 client (httpx, prior knowledge) asking for ``/`` in a loop."""

    def __init__(self, url: str) -> None:
        self._client = httpx.Client(base_url=url, http1=False, http2=True, timeout=10)
        self.answers: list[float] = []
        """When each good answer arrived (``time.monotonic``)."""
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bystander", daemon=True)

    def start(self) -> Bystander:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                response = self._client.get("/")
            except httpx.HTTPError as error:
                self.errors.append(repr(error))
            else:
                if (response.status_code, response.http_version) == (200, "HTTP/2"):
                    self.answers.append(time.monotonic())
                else:
                    self.errors.append(f"{response.http_version} {response.status_code}")
            self._stop.wait(0.01)

    def answered_between(self, start: float, end: float) -> int:
        return sum(1 for at in list(self.answers) if start <= at <= end)

    def wait_for_answers(self, count: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.answers) < count:
            if time.monotonic() > deadline or self.errors:
                return False
            time.sleep(0.01)
        return True

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
        self._client.close()


@dataclass(slots=True)
class Watch:
    """What the bystander and the memory probe saw around one abuse."""

    bystander: Bystander
    rss_before_kib: int
    started: float
    ended: float = 0.0

    def abuse_over(self) -> None:
        """The abusive connections are gone: answers from now on count as "after"."""
        self.ended = time.monotonic()

    def answered_during(self) -> int:
        return self.bystander.answered_between(self.started, self.ended or time.monotonic())


@pytest.fixture
def watch(proxy: AbuseProxy) -> Iterator[Watch]:
    """Runs the bystander around the test and checks it and the proxy's memory at the end."""
    bystander = Bystander(proxy.h2c_url).start()
    try:
        assert bystander.wait_for_answers(3), bystander.errors
        seen = Watch(bystander=bystander, rss_before_kib=proxy.rss_kib(), started=time.monotonic())
        yield seen
        if not seen.ended:
            seen.abuse_over()
        answered = len(bystander.answers)
        assert bystander.wait_for_answers(answered + 3), (
            f"no answers after the abuse: {bystander.errors}"
        )
        rss_after = proxy.rss_kib()
    finally:
        bystander.stop()
    assert bystander.errors == []
    growth = rss_after - seen.rss_before_kib
    assert growth < RSS_GROWTH_LIMIT_KIB, (
        f"proxy RSS grew by {growth} KiB ({seen.rss_before_kib} -> {rss_after} KiB)"
    )


def flood(client: FrameClient, batch: Callable[[], bytes], rounds: int = 2000) -> None:
    """Send ``batch()`` again and again, reading what comes back, until the proxy ends it."""
    for _ in range(rounds):
        try:
            if not client.send_raw(batch()):
                return
        except TimeoutError:
            return  # the proxy no longer reads: it is ending the connection
        client.read_available()
        if client.goaway is not None or client.closed:
            return


def assert_ended(client: FrameClient, code: int) -> None:
    """The proxy sent GOAWAY with ``code`` and closed the connection."""
    assert client.read_to_close(10), f"still open; frames seen: {client.frame_counts}"
    assert client.goaway is not None, f"closed without GOAWAY; frames seen: {client.frame_counts}"
    assert client.goaway.error_code == code, client.goaway


def repeat_abuse(watch: Watch, attack: Callable[[], None]) -> int:
    """Run ``attack`` (one abusive connection) over and over for :data:`ABUSE_SECONDS`.

    Checks that the bystander was answered while it went on. Returns the rounds run.
    """
    rounds = 0
    while rounds < 2 or time.monotonic() - watch.started < ABUSE_SECONDS:
        attack()
        rounds += 1
    watch.abuse_over()
    assert watch.answered_during() >= 1, "the bystander got no answer during the abuse"
    return rounds


def frames(*items: Any) -> bytes:
    return b"".join(item.serialize() for item in items)


# -- floods ------------------------------------------------------------------------------


def rapid_reset_pairs(client: FrameClient, count: int) -> bytes:
    """``count`` streams, each opened (a request the backend is slow to answer) and reset."""
    out: list[Frame] = []
    for _ in range(count):
        stream = client.new_stream()
        fields = client.request_fields("/slow?delay=1&from=rapid-reset")
        out.append(client.headers_frame(stream, fields, end_stream=True))
        out.append(RstStreamFrame(stream, error_code=CANCEL))
    return frames(*out)


def test_rapid_reset(proxy: AbuseProxy, backend: Backend, watch: Watch) -> None:
    """Open a stream, reset it at once, again and again (CVE-2023-44487).

    Whether the bystander is answered *while* this goes on is left to the next test:
    the proxy answers it only between reads of the abusive connection, and a read of
    these frames takes long (see there).
    """
    for _ in range(2):
        with FrameClient(proxy.h2c_port) as client:
            flood(client, lambda: rapid_reset_pairs(client, 20))
            assert_ended(client, ENHANCE_YOUR_CALM)
    watch.abuse_over()
    # The streams were cancelled before most of them reached the backend.
    assert len(backend.requests_to("/slow")) < 2 * HTTP2_DEFAULTS["reset_burst"]


def test_rapid_reset_in_one_write_is_cut_off_near_the_reset_burst(proxy: AbuseProxy) -> None:
    with FrameClient(proxy.h2c_port) as client:
        client.send_raw(rapid_reset_pairs(client, 2_500))  # ~64 KiB in one write
        assert_ended(client, ENHANCE_YOUR_CALM)
        assert client.goaway is not None
        served = (client.goaway.last_stream_id + 1) // 2
    assert served <= 4 * HTTP2_DEFAULTS["reset_burst"], f"{served} streams were opened"


def test_continuation_flood(proxy: AbuseProxy, watch: Watch) -> None:
    """A header block that never ends (CVE-2024-27316): h2 allows 64 CONTINUATION frames."""

    def attack() -> None:
        with FrameClient(proxy.h2c_port) as client:
            stream = client.new_stream()
            fields = client.request_fields("/", extra=[("x-start", "1")])
            client.send(client.headers_frame(stream, fields, end_stream=True, end_headers=False))
            flood(
                client,
                lambda: frames(
                    *(ContinuationFrame(stream, data=b"\x00" * 1024) for _ in range(20))
                ),
            )
            assert_ended(client, PROTOCOL_ERROR)

    repeat_abuse(watch, attack)


@pytest.mark.parametrize(
    "kind",
    ["settings", "ping", "priority", "window_update"],
)
def test_control_frame_flood(proxy: AbuseProxy, watch: Watch, kind: str) -> None:
    """Frames that cost the proxy work (and often an answer) but carry no request."""
    makers: dict[str, Callable[[int], Any]] = {
        "settings": lambda n: SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 65535}),
        "ping": lambda n: PingFrame(0, opaque_data=n.to_bytes(8, "big")),
        "priority": lambda n: PriorityFrame(2 * n + 1, depends_on=0, stream_weight=16),
        "window_update": lambda n: WindowUpdateFrame(0, window_increment=1),
    }
    make = makers[kind]

    def attack() -> None:
        with FrameClient(proxy.h2c_port) as client:
            counter = iter(range(10**9))
            flood(client, lambda: frames(*(make(next(counter)) for _ in range(50))))
            assert_ended(client, ENHANCE_YOUR_CALM)

    repeat_abuse(watch, attack)


def test_empty_data_frame_flood(proxy: AbuseProxy, watch: Watch) -> None:
    """DATA frames with no bytes and no END_STREAM on an open upload."""

    def attack() -> None:
        with FrameClient(proxy.h2c_port) as client:
            stream = client.request("/echo", method="POST", end_stream=False)
            flood(client, lambda: frames(*(DataFrame(stream, data=b"") for _ in range(50))))
            assert_ended(client, ENHANCE_YOUR_CALM)

    repeat_abuse(watch, attack)


# -- clients that do not read --------------------------------------------------------------


PING_BATCH = frames(*(PingFrame(0, opaque_data=b"pingpong") for _ in range(100)))


def test_ping_flood_from_a_client_that_never_reads(proxy: AbuseProxy, watch: Watch) -> None:
    """PINGs from a client that reads nothing, not even the acknowledgements.

    The flood limit ends it like any PING flood; the GOAWAY cannot be delivered to a
    client that does not read, and the connection is reset (the proxy closes it with
    PINGs unread, or after ``drain`` at the latest).
    """
    with FrameClient(proxy.h2c_port, rcvbuf=4096, timeout=1) as client:
        try:
            for _ in range(2 * 1024):  # 3.4 MiB of PINGs, far past the burst
                if not client.send_raw(PING_BATCH):
                    break
        except TimeoutError:
            pass  # the proxy stopped reading
        ends_by = ABUSE_TIMEOUTS["drain"] + 5
        # TCP_CLOSE: the proxy reset the connection (nothing was read on this side).
        assert wait_for(lambda: client.tcp_state() == 7, ends_by), client.tcp_state()
    watch.abuse_over()
    assert "HTTP/2 client flooded the proxy with control frames" in proxy.running.stderr()


def test_ping_flood_without_flood_limit_is_held_by_backpressure(
    start_proxy: Start, backend: Backend, tls_files: TlsFiles
) -> None:
    """With the flood limit out of the way, only backpressure bounds a never-reading client.

    The proxy stops reading it once its acknowledgements back up: the client's writes
    block, and the proxy's memory stays bounded however much the client wants to send.
    (Idle, such a connection ends at ``client_keepalive``; that is set long here, so the
    backpressure alone is seen.)
    """
    unlimited = {"control_frame_burst": 10**9, "control_frame_rate": 10**9}
    # The bystander's responses may wait while a flood is read (no limit stops it here):
    # a generous upstream_body keeps them from being reset as stalled.
    timeouts = {**ABUSE_TIMEOUTS, "client_keepalive": 60, "upstream_body": 15}
    proxy = start_abuse_proxy(start_proxy, backend, tls_files, http2=unlimited, timeouts=timeouts)
    bystander = Bystander(proxy.h2c_url).start()
    try:
        assert bystander.wait_for_answers(3), bystander.errors
        rss_before = proxy.rss_kib()
        started = time.monotonic()
        with FrameClient(proxy.h2c_port, rcvbuf=4096, timeout=5) as client:
            sent = 0
            while True:
                assert sent < 64 * MIB, "the proxy read 64 MiB of PINGs without pausing"
                assert time.monotonic() - started < 15, f"{sent} bytes sent, the proxy reads on"
                try:
                    for _ in range(MIB // len(PING_BATCH)):
                        assert client.send_raw(PING_BATCH), "the proxy reset the connection"
                        sent += len(PING_BATCH)
                except TimeoutError:
                    pass  # the kernel buffers on both ends are full
                unread = settled_receive_queue(client)
                if unread:  # left unread although the proxy had time: it stopped reading
                    break
            # Answered while the abusive connection is open and held.
            assert wait_for(lambda: bystander.answered_between(started, math.inf) >= 1, 5)
            growth = proxy.rss_kib() - rss_before
        answered = len(bystander.answers)
        assert bystander.wait_for_answers(answered + 3), bystander.errors
    finally:
        bystander.stop()
    assert bystander.errors == []
    assert growth < RSS_GROWTH_LIMIT_KIB, f"proxy RSS grew by {growth} KiB after {sent} bytes"


def test_slow_reader_stream_is_reset_after_upstream_body(
    proxy: AbuseProxy, backend: Backend, watch: Watch
) -> None:
    """A client that never opens its window on a large response.

    The stream gets the 65,535 bytes of the initial window, then nothing moves; after
    ``timeouts.upstream_body`` the proxy resets it (INTERNAL_ERROR) and stops reading
    the backend, which has sent only what the buffers hold. Then the connection, with
    no stream left, ends at the idle timeout with GOAWAY(NO_ERROR).
    """
    size = 256 * MIB
    with FrameClient(proxy.h2c_port, auto_window=False) as client:
        stream = client.request(f"/bytes?n={size}&tag=slow-reader")
        assert client.wait_streams(stream, timeout=ABUSE_TIMEOUTS["upstream_body"] + 5)
        result = client.streams[stream]
        assert (result.status, result.reset, len(result.body)) == (200, INTERNAL_ERROR, 65535)
        assert watch.answered_during() >= 1
        assert_ended(client, NO_ERROR)
        assert client.goaway is not None
        assert client.goaway.last_stream_id == stream
    watch.abuse_over()
    sent = backend.progress.get("slow-reader", 0)
    assert 0 < sent < 64 * MIB, f"the backend sent {sent} bytes of the {size} asked for"


# -- timers --------------------------------------------------------------------------------


def test_clients_without_a_preface_are_closed_after_client_header(
    proxy: AbuseProxy, watch: Watch
) -> None:
    """HTTP/2 connections (ALPN h2, or an h2c-only listener) that never finish the preface.

    Each got the proxy's SETTINGS; after ``timeouts.client_header`` it is closed, with
    nothing more said: no stream ever existed.
    """
    clients = []
    try:
        for port, tls in (
            (proxy.tls_port, proxy.tls.client_context()),
            (proxy.h2c_only_port, None),
        ):
            for _ in range(10):
                clients.append(FrameClient(port, tls=tls, preface=False))
                clients.append(FrameClient(port, tls=tls, preface=False))
                clients[-1].send_raw(PREFACE)  # the magic, but no SETTINGS frame
        for client in clients:
            assert client.read_to_close(ABUSE_TIMEOUTS["client_header"] + 5), client.frame_counts
            assert client.frame_counts.get("SettingsFrame", 0) >= 1
            assert client.streams == {}
        assert watch.answered_during() >= 1
    finally:
        for client in clients:
            client.close()
    log = proxy.running.stderr()
    assert log.count("HTTP/2 client sent no preface in time") == len(clients), log


def test_idle_connections_get_goaway_after_client_keepalive(
    proxy: AbuseProxy, watch: Watch
) -> None:
    clients = [FrameClient(proxy.h2c_port) for _ in range(20)]
    try:
        for client in clients:
            stream = client.request("/")
            assert client.wait_streams(stream)
            assert client.streams[stream].status == 200
        for client in clients:
            assert_ended(client, NO_ERROR)
            assert client.goaway is not None
            assert client.goaway.last_stream_id == 1
        assert watch.answered_during() >= 1
    finally:
        for client in clients:
            client.close()


def settled_receive_queue(client: FrameClient) -> int:
    """The proxy's unread bytes of ``client`` once they stop changing (it read what it will)."""
    last = client.peer_receive_queue()
    deadline = time.monotonic() + 10
    while True:
        time.sleep(0.5)
        now = client.peer_receive_queue()
        if now == last or time.monotonic() > deadline:
            return now
        last = now


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
