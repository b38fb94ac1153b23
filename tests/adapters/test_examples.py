"""The examples run as documented and do what they say (each is a subprocess)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TIMEOUT = 60


def run_example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    paths = []
    for module in ("sansproxy", "sansproxy_trio"):
        spec = importlib.util.find_spec(module)
        assert spec is not None
        assert spec.origin is not None
        paths.append(str(Path(spec.origin).resolve().parent.parent))
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")])
    # -W error: an unclosed socket or file in an example is a bug worth failing on.
    return subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.integration
def test_embed_trio() -> None:
    result = run_example("embed_trio.py")
    assert result.returncode == 0, result.stderr
    # Text mode turned the response's CRLFs into newlines.
    assert result.stdout.startswith("HTTP/1.1 200 OK\n")
    assert "\nvia: 1.1 sansproxy\n" in result.stdout.lower()
    assert "\n\nhello from the embedded backend\n" in result.stdout
    assert result.stdout.rstrip().endswith("proxy stopped")
    assert "INFO sansproxy: listening on http://127.0.0.1:" in result.stderr
    assert "shutdown complete" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.integration
@pytest.mark.parametrize(
    "loop",
    [
        "asyncio",
        pytest.param(
            "uvloop",
            marks=pytest.mark.skipif(
                importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed"
            ),
        ),
    ],
)
def test_embed_asyncio(loop: str) -> None:
    result = run_example("embed_asyncio.py", *(["--uvloop"] if loop == "uvloop" else []))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("HTTP/1.1 200 OK\n")
    assert "\nvia: 1.1 sansproxy\n" in result.stdout.lower()
    assert "\n\nhello from the embedded backend\n" in result.stdout
    assert result.stdout.rstrip().endswith("proxy stopped")
    assert "INFO sansproxy: listening on http://127.0.0.1:" in result.stderr
    assert '"GET /through-the-proxy HTTP/1.1" 200 32' in result.stderr
    assert "shutdown complete" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.integration
def test_selectors_loop_once() -> None:
    result = run_example("selectors_loop.py", "--once")
    assert result.returncode == 0, result.stderr
    assert "access: GET /once 200" in result.stdout
    assert "response: 200 'hello from the selectors backend (/once)\\n'" in result.stdout
    assert "listening on http://127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give at least one --upstream URL to proxy to, or --once"),
        (("--upstream", "ftp://x"), "command line: --upstream: 'ftp://x'"),
        (("--listen", "nowhere", "--upstream", "http://127.0.0.1:9"), "command line: --listen"),
    ],
)
def test_selectors_loop_explains_bad_or_missing_arguments(
    args: tuple[str, ...], message: str
) -> None:
    result = run_example("selectors_loop.py", *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("usage: selectors_loop.py")
    assert message in result.stderr
    assert "Traceback" not in result.stderr
