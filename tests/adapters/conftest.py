"""Fixtures for the real-socket suite: backends, TLS material and the proxy process.

The proxy runs as ``python -m sansproxy_trio --loop ADAPTER --config FILE``,
exactly as an operator runs it. A test builds a config dict with
:func:`proxy_config`, hands it to the ``start_proxy`` fixture and gets a
:class:`RunningProxy` once the proxy has logged ``listening on ...``. At teardown
every proxy gets SIGTERM, must exit 0 within a bounded time (it is killed by PID
otherwise) and must not have printed a Python traceback.

One suite, every adapter: each test that starts a proxy runs once per event loop
(trio, asyncio, and uvloop where installed; see :func:`pytest_generate_tests`).
A behaviour that differs between them is a bug in the shared code or the core.

Test modules import the peers with ``from backend import ...``; this file puts
its own folder on ``sys.path`` so that works under every pytest import mode.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from backend import Backend  # noqa: E402

REPO = HERE.parents[1]
STARTUP_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
LISTENING = re.compile(r"listening on (https?)://(\[[0-9a-fA-F:]+\]|[0-9.]+):(\d+)")


ADAPTERS = ("trio", "asyncio", "uvloop")
"""Every event loop the proxy runs on (``--loop``); the integration suite runs on each."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: real sockets, a proxy subprocess and real clients"
    )
    config.addinivalue_line(
        "markers",
        "adapters(*names): run this test only on these adapters (default: every adapter)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test that starts a proxy once per adapter: one suite, every event loop.

    A test that holds for some adapters only says so with ``@pytest.mark.adapters("trio")``.
    uvloop runs where it is installed (it is an optional extra).
    """
    if "adapter" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("adapters")
    names = ADAPTERS if marker is None else marker.args
    params = []
    for name in names:
        marks = []
        if name == "uvloop" and importlib.util.find_spec("uvloop") is None:
            marks.append(pytest.mark.skip(reason="uvloop is not installed"))
        params.append(pytest.param(name, id=name, marks=marks))
    metafunc.parametrize("adapter", params, scope="function")


# -- config ------------------------------------------------------------------


def proxy_config(*servers: str, **sections: dict[str, Any]) -> dict[str, Any]:
    """A config dict: one listener on an ephemeral port, one upstream ``app``.

    Args:
        servers: Backend URLs for ``upstreams.app.servers``.
        sections: Extra top-level tables (``timeouts={...}``, ``limits={...}``),
            or ``listener={...}`` / ``upstream={...}`` merged into the listener
            and the upstream.
    """
    listener: dict[str, Any] = {"address": "127.0.0.1:0", "upstream": "app"}
    listener.update(sections.pop("listener", {}))
    upstream: dict[str, Any] = {"servers": list(servers)}
    upstream.update(sections.pop("upstream", {}))
    config: dict[str, Any] = {"listeners": [listener], "upstreams": {"app": upstream}}
    config.update(sections)
    return config


def to_toml(config: dict[str, Any]) -> str:
    """Serialise the small subset of TOML the tests use (tables, arrays of tables, scalars)."""
    lines: list[str] = []

    def scalar(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return repr(value)
        if isinstance(value, str):
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(value, list | tuple):
            return "[" + ", ".join(scalar(item) for item in value) + "]"
        raise TypeError(f"cannot write {value!r} as TOML")

    def table(prefix: str, values: dict[str, Any], header: str | None) -> None:
        if header is not None:
            lines.append(header)
        nested = []
        for key, value in values.items():
            tables = isinstance(value, list) and value and all(isinstance(v, dict) for v in value)
            if isinstance(value, dict) or tables:
                nested.append((key, value))
            else:
                lines.append(f"{key} = {scalar(value)}")
        lines.append("")
        for key, value in nested:
            name = f"{prefix}.{key}" if prefix else key
            if isinstance(value, dict):
                table(name, value, f"[{name}]")
            else:
                for item in value:
                    table(name, item, f"[[{name}]]")

    table("", config, None)
    return "\n".join(lines)


# -- the proxy process ---------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class RunningProxy:
    """A started ``sansproxy_trio`` process and where it listens."""

    proc: subprocess.Popen[bytes]
    urls: list[str]
    stdout_path: Path
    stderr_path: Path
    config_path: Path
    stopped: bool = False
    returncode: int | None = None
    ports: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return self.urls[0]

    @property
    def port(self) -> int:
        return self.ports[0]

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def status_kib(self, key: str) -> int:
        """A ``VmXXX`` field of ``/proc/PID/status`` in KiB (``VmHWM`` is the peak RSS)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def send_sigterm(self) -> None:
        """Ask for a graceful shutdown; :meth:`wait_exit` collects the result."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """Wait up to ``timeout`` for the exit code; kill by PID and return ``None`` past it."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            self.returncode = None
        self.stopped = True
        return self.returncode

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, then :meth:`wait_exit`."""
        self.send_sigterm()
        return self.wait_exit(timeout)

    def wait_for_stdout(self, needle: str, timeout: float = 5.0) -> str:
        """Poll the access log (stdout) until ``needle`` appears; returns stdout."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.stdout()
            if needle in text or time.monotonic() > deadline:
                return text
            time.sleep(0.05)


def proxy_env() -> dict[str, str]:
    """The environment for the proxy: it imports the same sansproxy as the tests do.

    ``tests/conftest.py`` puts the checkout on ``sys.path`` unless a copy is
    installed; the child gets the folders the parent resolved, ahead of the rest.
    """
    env = dict(os.environ)
    paths: list[str] = []
    for name in ("sansproxy", "sansproxy_trio"):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            folder = REPO if name == "sansproxy" else REPO / "adapters"
        else:
            folder = Path(spec.origin).resolve().parent.parent
        if str(folder) not in paths:
            paths.append(str(folder))
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def launch_proxy(
    config: dict[str, Any], workdir: Path, listeners: int | None = None, adapter: str = "trio"
) -> RunningProxy:
    """Write ``config`` under ``workdir``, start the proxy, wait for every listening line.

    ``adapter`` is the event loop (``--loop``) the proxy runs on.
    """
    expected = listeners if listeners is not None else len(config["listeners"])
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "proxy.toml"
    config_path.write_text(to_toml(config))
    stdout_path = workdir / "proxy.stdout"
    stderr_path = workdir / "proxy.stderr"
    command = [sys.executable, "-m", "sansproxy_trio", "--loop", adapter]
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        proc = subprocess.Popen(
            [*command, "--config", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=workdir,
            env=proxy_env(),
        )
    running = RunningProxy(
        proc=proc,
        urls=[],
        stdout_path=stdout_path,
        stderr_path=stderr_path,
        config_path=config_path,
    )
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        found = LISTENING.findall(running.stderr())
        if len(found) >= expected:
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            pytest.fail(
                f"proxy did not report {expected} listener(s) "
                f"(exit code {proc.returncode}); config:\n{config_path.read_text()}\n"
                f"stderr:\n{running.stderr()}"
            )
        time.sleep(0.05)
    for scheme, host, port in found[:expected]:
        running.urls.append(f"{scheme}://{host}:{port}")
        running.ports.append(int(port))
    return running


@pytest.fixture
def start_proxy(tmp_path: Path, adapter: str) -> Iterator[Callable[..., RunningProxy]]:
    """Start proxies from config dicts; stop them all (SIGTERM, bounded) at teardown.

    The proxies run on ``adapter``'s event loop; see :func:`pytest_generate_tests`.

    Teardown fails the test if a proxy printed a traceback, or did not exit 0
    on SIGTERM within the bound.
    """
    started: list[RunningProxy] = []

    def start(config: dict[str, Any], *, listeners: int | None = None) -> RunningProxy:
        running = launch_proxy(config, tmp_path / f"proxy{len(started)}", listeners, adapter)
        started.append(running)
        return running

    yield start
    problems = []
    for running in started:
        was_stopped = running.stopped
        code = running.returncode if was_stopped else running.terminate()
        stderr = running.stderr()
        if "Traceback" in stderr:
            problems.append(f"proxy {running.pid} printed a traceback:\n{stderr}")
        if not was_stopped and code != 0:
            problems.append(
                f"proxy {running.pid} exit code on SIGTERM: {code} (None = killed after "
                f"{STOP_TIMEOUT}s)\nstderr:\n{stderr[-4000:]}"
            )
    if problems:
        pytest.fail("\n\n".join(problems))


# -- backends and TLS material ------------------------------------------------


@pytest.fixture
def backend() -> Iterator[Backend]:
    with Backend("a") as server:
        yield server


@pytest.fixture
def backend_b() -> Iterator[Backend]:
    with Backend("b") as server:
        yield server


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsFiles:
    """A trustme CA and a certificate for ``localhost`` / ``127.0.0.1``, as files and contexts."""

    ca: trustme.CA
    ca_file: Path
    cert_file: Path
    key_file: Path
    server_context: ssl.SSLContext

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        return context


def make_tls_files(directory: Path) -> TlsFiles:
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ca_file = directory / "ca.pem"
    cert_file = directory / "cert.pem"
    key_file = directory / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key_file))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_context)
    return TlsFiles(
        ca=ca,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        server_context=server_context,
    )


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    return make_tls_files(tmp_path / "tls")


@pytest.fixture
def other_tls_files(tmp_path: Path) -> TlsFiles:
    """A second, unrelated CA (for wrong-CA tests)."""
    return make_tls_files(tmp_path / "tls-other")


@pytest.fixture
def tls_backend(tls_files: TlsFiles) -> Iterator[Backend]:
    with Backend("tls", tls_context=tls_files.server_context) as server:
        yield server


# -- small helpers -------------------------------------------------------------


def _running_in_ci() -> bool:
    """``.ci/run`` (and CI services generally) set ``CI``; a developer's shell usually does not."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def required_tool(name: str, package: str) -> str:
    """The path of the command-line client ``name``.

    Missing, it skips the test on a developer's machine but fails it in CI, where
    ``.ci/run`` installs ``package``: a client that silently went missing must not turn
    its tests into skips that nobody reads.
    """
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package {package})"
        if _running_in_ci():
            pytest.fail(message + "; CI must install it (see .ci/run)")
        pytest.skip(message)
    return path


@pytest.fixture
def curl() -> str:
    return required_tool("curl", "curl")


@pytest.fixture
def h2load() -> str:
    """nghttp2's HTTP/2 load generator."""
    return required_tool("h2load", "nghttp2-client")


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
