"""``sansproxy --version`` and ``sansproxy.__version__`` name the same release.

The release is written once, in ``sansproxy/__init__.py``; ``pyproject.toml`` declares
its version dynamic and points hatch at that line. The command asks the installed
metadata (``importlib.metadata``), falling back to the attribute in a checkout that was
never installed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

import sansproxy
from sansproxy_io import version
from sansproxy_trio.cli import main

ROOT = Path(__file__).resolve().parent.parent.parent
# PEP 440, the public part: 1.2.3, 1.2.3rc1, 1.2.3.post1, 1.2.3.dev4.
PEP440 = re.compile(r"\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?")


def test_the_core_knows_its_version() -> None:
    assert isinstance(sansproxy.__version__, str)
    assert PEP440.fullmatch(sansproxy.__version__), sansproxy.__version__
    assert "__version__" in sansproxy.__all__


def test_pyproject_takes_the_version_from_the_core() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    path = project["tool"]["hatch"]["version"]["path"]
    assert (ROOT / path).resolve() == Path(sansproxy.__file__).resolve()


def test_installed_metadata_agrees_with_the_core() -> None:
    try:
        installed = metadata.version("sansproxy")
    except metadata.PackageNotFoundError:
        pytest.skip("sansproxy is not installed (a bare checkout)")
    assert installed == sansproxy.__version__


def test_a_checkout_without_metadata_reports_the_attribute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(version.metadata, "version", missing)
    assert version.installed_version() == sansproxy.__version__


def test_version_option_prints_one_line_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    out, err = capsys.readouterr()
    assert err == ""
    python = ".".join(map(str, sys.version_info[:3]))
    assert out == f"sansproxy {version.installed_version()} (Python {python})\n"


def _child_env() -> dict[str, str]:
    """The child imports the same sansproxy packages as this test."""
    paths = []
    for name in ("sansproxy", "sansproxy_trio"):
        spec = importlib.util.find_spec(name)
        assert spec is not None
        assert spec.origin is not None
        paths.append(str(Path(spec.origin).resolve().parent.parent))
    return dict(os.environ, PYTHONPATH=os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")]))


@pytest.mark.parametrize("module", ["sansproxy_trio", "sansproxy_asyncio"])
def test_version_option_of_the_modules(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=_child_env(),
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert re.fullmatch(r"sansproxy \S+ \(Python [\d.]+\)\n", done.stdout), done.stdout
    assert done.stdout.split()[1] == version.installed_version()
