"""The ``sansproxy`` command's asyncio mode: what it sets up in the process it owns."""

from __future__ import annotations

import asyncio
import asyncio.sslproto

import pytest

from sansproxy_asyncio._run import TLS_READ_BUFFER, run_until_signalled


@pytest.mark.parametrize(("loop", "lean"), [("asyncio", True), ("uvloop", False)])
def test_command_shrinks_asyncios_tls_read_buffer(
    loop: str, lean: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 256 KiB per TLS connection, allocated idle or not, is most of an idle HTTP/2
    # client's memory on the standard loop (docs/benchmarks.md, idle-h2).
    pytest.importorskip(loop)
    monkeypatch.setattr(asyncio.sslproto.SSLProtocol, "max_size", 256 * 1024)
    seen: list[int] = []

    async def serve(shutdown: asyncio.Event) -> None:
        seen.append(asyncio.sslproto.SSLProtocol.max_size)

    assert run_until_signalled(serve, loop=loop) is False
    assert seen == [TLS_READ_BUFFER if lean else 256 * 1024]
    assert TLS_READ_BUFFER >= 16 * 1024 + 256  # one whole TLS record fits
