"""Developer sessions: tests on every supported Python, lint, typecheck and fuzz.

Run `nox` for the default sessions, `nox -s tests-3.12 -- -k purity` for one, `nox -l` to list.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

PYTHONS = ["3.11", "3.12", "3.13"]
LINT_PATHS = ["sansproxy", "adapters", "tests", "fuzz", "examples", "benchmarks", "noxfile.py"]
TYPED_PATHS = [
    "sansproxy",
    "adapters/sansproxy_io",
    "adapters/sansproxy_trio",
    "adapters/sansproxy_asyncio",
    "benchmarks",
]
FUZZ_SECONDS = os.environ.get("FUZZ_SECONDS", "60")

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.error_on_missing_interpreters = False


def _version_key(path: Path) -> tuple[int, ...]:
    """Sort key for a pyenv version folder such as `3.12.1` (non-numeric parts sort first)."""
    return tuple(int(part) if part.isdigit() else -1 for part in path.name.split("."))


def _find_pyenv_interpreters() -> None:
    """Put pyenv's real `pythonX.Y` on PATH for each version in PYTHONS.

    nox finds `python3.12` on PATH. Under pyenv that name is usually a shim, which refuses to
    run any version that `pyenv global` does not list, so nox would skip the session. Putting
    the newest installed `versions/X.Y.*/bin` ahead of the shims fixes that without changing
    what `pyenv global` says.
    """
    versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if not versions.is_dir():
        return
    extra: list[str] = []
    for version in PYTHONS:
        found = shutil.which(f"python{version}")
        if found is not None and "shims" not in Path(found).parts:
            continue  # a real interpreter is already on PATH
        candidates = sorted(
            (d for d in versions.glob(f"{version}.*") if (d / "bin" / f"python{version}").exists()),
            key=_version_key,
        )
        if candidates:
            extra.append(str(candidates[-1] / "bin"))
    if extra:
        os.environ["PATH"] = os.pathsep.join([*extra, os.environ.get("PATH", "")])


_find_pyenv_interpreters()


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite (pass pytest arguments after `--`)."""
    session.install(".[test,server]")
    # -bb turns comparisons between bytes and str, an easy bug in protocol code, into errors.
    session.run("python", "-bb", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff (no files are changed)."""
    session.install(".[lint]")
    paths = [p for p in LINT_PATHS if Path(p).exists()]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check the core and the trio adapter with mypy --strict."""
    # Editable, so that mypy resolves `sansproxy_trio` to the checked files, not a copy.
    session.install("-e", ".[server,lint]")
    paths = [p for p in TYPED_PATHS if Path(p).exists()]
    session.run("mypy", "--strict", *paths, *session.posargs)


@nox.session
def fuzz(session: nox.Session) -> None:
    """Run every fuzz harness for FUZZ_SECONDS seconds each (default 60).

    Extra arguments after `--` go to `python -m fuzz`.
    """
    if not Path("fuzz/__main__.py").exists():
        session.error("fuzz/__main__.py does not exist yet")
    session.install(".[test]")
    session.run("python", "-m", "fuzz", "--seconds", FUZZ_SECONDS, *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmark suite and print its table (options after `--`, e.g. `-- --quick`).

    Needs wrk, and nginx for the nginx backend and peer, and h2load for the HTTP/2 and TLS
    scenarios (`apt-get install nginx wrk nghttp2-client`); a missing tool or peer is skipped
    with the reason. trustme makes the TLS scenarios' throwaway certificate. mitmproxy pins an
    old h11, so it is not installed here: put its `mitmdump` on PATH or pass
    `-- --mitmdump PATH`. See docs/benchmarks.md.
    """
    session.install(".[server,uvloop]", "matplotlib", "proxy.py", "trustme")
    session.run("python", "-m", "benchmarks", *session.posargs)
