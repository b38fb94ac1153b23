"""Smoke test of the fuzz harnesses: each runs for a couple of seconds inside pytest.

This always uses the hypothesis engine (atheris exits its process when done).
Every seed is run first, so the smuggling-shaped corpus is checked on every
test run; a long hunt is ``python -m fuzz --seconds 600`` (or ``nox -s fuzz``).
"""

from __future__ import annotations

import pytest

from fuzz.driver import HARNESSES, load, run_hypothesis

SECONDS = 2.0
GENERATED = 25


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_harness_runs_clean(name: str) -> None:
    report = run_hypothesis(name, SECONDS, min_generated=GENERATED)
    assert report.examples >= len(load(name).SEEDS) + GENERATED


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_harness_detects_a_broken_invariant(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A core that crashes on any input must be reported, not swallowed.
    from sansproxy import Proxy

    def crash(self: Proxy, event: object, now: float) -> list[object]:
        raise RuntimeError("planted crash")

    monkeypatch.setattr(Proxy, "handle", crash)
    with pytest.raises(RuntimeError, match="planted crash"):
        load(name).check(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")


def test_h2_output_check_refuses_what_a_strict_client_would() -> None:
    from fuzz.fuzz_h2_frames import check_frames
    from fuzz.h2_inputs import raw_frame

    settings = raw_frame("SETTINGS", 0, b"")
    assert check_frames(settings + raw_frame("PING", 0, b"12345678", ["ACK"])) == []
    assert check_frames(raw_frame("PING", 0, b"12345678"))  # the preface is SETTINGS
    assert check_frames(settings[:5])  # a frame header cut short
    assert check_frames(settings + raw_frame("PING", 0, b"1234"))  # a PING must be 8 bytes
    assert check_frames(settings + raw_frame("HEADERS", 1, b"\xff\xff\xff", ["END_HEADERS"]))


@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_committed_corpus_replays_clean(name: str) -> None:
    # What the fuzzers found worth keeping (fuzz/README.md): every input, every test run.
    from fuzz.driver import CORPUS

    inputs = sorted((CORPUS / name).iterdir())
    assert len(inputs) >= 50, f"the committed corpus of {name} is missing or was cut"
    harness = load(name)
    for path in inputs:
        try:
            harness.check(path.read_bytes())
        except AssertionError as error:
            raise AssertionError(f"{path.name}: {error}") from None
