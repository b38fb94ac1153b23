"""Running a harness for a time budget: with atheris when it is installed, else hypothesis.

A harness module has ``NAME``, ``SEEDS`` (the starting corpus), ``inputs()``
(a hypothesis strategy) and ``check(data)`` (raises on a broken invariant).

Hypothesis mode runs every seed once, then batches of ``@given`` examples
with fresh randomness (``derandomize=False``) until the budget is spent; a
failure is shrunk and reported by hypothesis as the minimal falsifying input.
Atheris mode needs a process of its own (``atheris.Fuzz()`` exits when done),
so :func:`run_atheris` is only called from ``python -m fuzz``.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from hypothesis import HealthCheck, Phase, given, settings

HARNESSES = {
    "client": "fuzz.fuzz_client_bytes",
    "backend": "fuzz.fuzz_backend_bytes",
    "h2": "fuzz.fuzz_h2_frames",
}
CORPUS = Path(__file__).parent / "corpus"
"""The committed corpora, one folder per harness: what earlier runs found worth keeping."""
BATCH = 50


@dataclass
class Report:
    harness: str
    engine: str
    examples: int
    seconds: float

    def __str__(self) -> str:
        return (
            f"{self.harness}: {self.examples} inputs in {self.seconds:.1f}s "
            f"({self.engine}), no invariant broken"
        )


def load(name: str) -> ModuleType:
    return importlib.import_module(HARNESSES[name])


def atheris_available() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def run_hypothesis(name: str, seconds: float, *, min_generated: int = 0) -> Report:
    """Fuzz harness ``name`` with hypothesis for about ``seconds`` (raises on a failure).

    After the seeds, at least ``min_generated`` generated inputs run even when
    ``seconds`` is spent first (a busy machine must not turn a smoke test into a no-op).
    """
    harness = load(name)
    start = time.monotonic()
    deadline = start + seconds
    count = 0
    for seed in harness.SEEDS:
        harness.check(seed)
        count += 1
    wanted = count + min_generated

    @settings(
        max_examples=BATCH,
        deadline=None,
        database=None,
        derandomize=False,
        phases=(Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
    )
    @given(harness.inputs())
    def batch(data: bytes) -> None:
        nonlocal count
        if count >= wanted and time.monotonic() > deadline:
            return  # budget spent: finish the batch without work
        count += 1
        harness.check(data)

    while count < wanted or time.monotonic() < deadline:
        batch()
    return Report(name, "hypothesis", count, time.monotonic() - start)


ENTRY = Path(__file__).with_name("libfuzzer.py")
"""The script libFuzzer runs (and runs again, for a merge's inner passes)."""
HARNESS_VARIABLE = "SANSPROXY_FUZZ_HARNESS"
"""Names the harness for :data:`ENTRY`: libFuzzer passes its own flags on, not ours."""


def _instrument() -> None:
    """Import the code under test with coverage instrumentation (before anything else does)."""
    import atheris

    with atheris.instrument_imports(include=["sansproxy", "h11", "h2", "hpack", "hyperframe"]):
        import h2.connection  # noqa: F401
        import h11  # noqa: F401

        import sansproxy  # noqa: F401


def fuzz_main(name: str, arguments: list[str]) -> None:
    """libFuzzer on harness ``name`` with ``arguments`` (its flags); exits the process.

    The command libFuzzer is told it runs as is ``python fuzz/libfuzzer.py``, so that
    the child processes of a merge start the same way.
    """
    import atheris

    _instrument()
    atheris.Setup([f"{sys.executable} {ENTRY}", *arguments], load(name).test_one_input)
    atheris.Fuzz()


def _libfuzzer(name: str, arguments: list[str]) -> int:
    root = str(ENTRY.parent.parent)
    path = os.environ.get("PYTHONPATH")
    env = {
        **os.environ,
        HARNESS_VARIABLE: name,
        "PYTHONPATH": root if not path else f"{root}{os.pathsep}{path}",
    }
    command = [sys.executable, str(ENTRY), *arguments]
    return subprocess.run(command, env=env, check=False).returncode


def run_atheris(name: str, seconds: int) -> int:
    """Fuzz harness ``name`` with atheris for ``seconds``; libFuzzer's exit status."""
    work = Path(tempfile.mkdtemp(prefix=f"sansproxy-fuzz-{name}-"))
    found = work / "corpus"
    found.mkdir()
    for i, seed in enumerate(load(name).SEEDS):
        (found / f"seed-{i:03d}").write_bytes(seed)
    committed = CORPUS / name
    print(f"{name}: new inputs and crash artifacts in {work}", flush=True)
    return _libfuzzer(
        name,
        [
            f"-max_total_time={seconds}",
            "-timeout=60",
            f"-artifact_prefix={work}/",
            "-print_final_stats=1",
            str(found),
            *([str(committed)] if committed.is_dir() else []),
        ],
    )


def merge_atheris(name: str, into: Path, sources: list[Path]) -> int:
    """Copy into ``into`` (empty) the inputs of ``sources`` that add coverage."""
    return _libfuzzer(name, ["-merge=1", "-timeout=60", str(into), *map(str, sources)])
