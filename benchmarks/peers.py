"""The peers compared side by side, how to find them, and how to start each one.

A peer is the backend reached directly, or a proxy in front of it. Every proxy gets a
fresh process per scenario (so its peak memory belongs to that scenario), on the proxy's
CPU, with its access log on and written to a file. A peer whose program is missing is
skipped with the reason, never replaced by a number.
"""

from __future__ import annotations

import http.client
import importlib.metadata
import importlib.util
import os
import resource
import shutil
import ssl
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import nginx
from benchmarks.backend import JSON_NAME, STATS_PATH, body_sizes, json_body, parse_stats
from benchmarks.certs import Certificate
from benchmarks.procs import CpuLayout, Process, free_port

__all__ = [
    "PEERS",
    "Backends",
    "Peer",
    "Running",
    "Tools",
    "keeps_alive",
    "launch",
    "start_backends",
    "unavailable",
]

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Peer:
    """One column of the comparison."""

    name: str
    kind: str  # direct, relay, sansproxy, nginx, mitmproxy, proxy.py
    loop: str = ""
    workers: int = 1
    tls: bool = False  # set up here with a TLS listener (HTTP/2 and HTTP/1.1 over TLS)
    description: str = ""


PEERS: tuple[Peer, ...] = (
    Peer("backend-direct", "direct", description="the backend itself, no proxy"),
    Peer("relay", "relay", description="benchmarks/relay.py: asyncio Protocol + h11 (reference)"),
    Peer("sansproxy-trio", "sansproxy", "trio", tls=True, description="sansproxy --loop trio"),
    Peer(
        "sansproxy-asyncio",
        "sansproxy",
        "asyncio",
        tls=True,
        description="sansproxy --loop asyncio",
    ),
    Peer(
        "sansproxy-uvloop", "sansproxy", "uvloop", tls=True, description="sansproxy --loop uvloop"
    ),
    Peer(
        "sansproxy-asyncio-2w",
        "sansproxy",
        "asyncio",
        workers=2,
        description="sansproxy --loop asyncio --workers 2",
        tls=True,
    ),
    Peer(
        "nginx-proxy",
        "nginx",
        description="nginx proxy_pass, upstream keepalive 32 (TLS: listen ssl http2)",
        tls=True,
    ),
    Peer("mitmproxy", "mitmproxy", description="mitmdump --mode reverse, streaming > 1 MiB"),
    Peer("proxy.py", "proxy.py", description="proxy.py reverse-proxy plugin"),
)


@dataclass(frozen=True)
class Tools:
    """The programs found on this machine (``None``: not installed)."""

    python: str
    nginx: str | None
    wrk: str | None
    h2load: str | None
    curl: str | None
    mitmdump: str | None
    proxypy: bool
    uvloop: bool
    sansproxy: bool

    @classmethod
    def find(cls, mitmdump: str | None = None) -> Tools:
        """Look for every program; ``mitmdump`` overrides the PATH lookup."""
        return cls(
            python=sys.executable,
            nginx=shutil.which("nginx") or _existing("/usr/sbin/nginx"),
            wrk=shutil.which("wrk"),
            h2load=shutil.which("h2load"),
            curl=shutil.which("curl"),
            mitmdump=mitmdump or shutil.which("mitmdump"),
            proxypy=importlib.util.find_spec("proxy") is not None and _has_dist("proxy.py"),
            uvloop=importlib.util.find_spec("uvloop") is not None,
            sansproxy=_sansproxy_importable(),
        )


def _existing(path: str) -> str | None:
    return path if Path(path).exists() else None


def _has_dist(name: str) -> bool:
    try:
        importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _sansproxy_importable() -> bool:
    """Whether the checkout's server runs with this interpreter's packages (trio, h11...)."""
    probe = "import sansproxy_trio.cli"
    done = subprocess.run(  # the checkout goes first on the path, as when launched
        [sys.executable, "-c", probe],
        env=_checkout_env(),
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def _checkout_env() -> dict[str, str]:
    path = os.pathsep.join([str(REPO), str(REPO / "adapters"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path.rstrip(os.pathsep)}


def unavailable(peer: Peer, tools: Tools) -> str | None:
    """Why ``peer`` cannot run here, or ``None`` when it can."""
    if peer.kind == "sansproxy" and not tools.sansproxy:
        return "sansproxy_trio does not import with this Python (pip install '.[server]')"
    if peer.kind == "sansproxy" and peer.loop == "uvloop" and not tools.uvloop:
        return "uvloop is not installed (pip install uvloop)"
    if peer.kind == "nginx" and tools.nginx is None:
        return "nginx is not installed (apt-get install nginx)"
    if peer.kind == "mitmproxy" and tools.mitmdump is None:
        return "mitmdump not found (pip install mitmproxy in its own venv; --mitmdump PATH)"
    if peer.kind == "proxy.py" and not tools.proxypy:
        return "proxy.py is not installed (pip install proxy.py)"
    return None


@dataclass
class Backends:
    """The backend processes: static bodies, and the upload sink (the same one, or not)."""

    kind: str  # "nginx" or "built-in"
    static_port: int
    sink_port: int
    processes: list[Process]
    _asked: int = field(default=0, init=False, repr=False)  # stub_status questions so far

    def requests_served(self) -> int | None:
        """How many requests the static backend has answered so far (None: it cannot say).

        The count leaves out these questions themselves (nginx's ``stub_status`` counts
        them), so the difference between two readings is what reached it in between.
        """
        connection = http.client.HTTPConnection("127.0.0.1", self.static_port, timeout=5)
        try:
            connection.request("GET", STATS_PATH)
            response = connection.getresponse()
            text = response.read().decode("latin-1")
        except (OSError, http.client.HTTPException):
            return None
        finally:
            connection.close()
        count = parse_stats(text) if response.status == 200 else None
        if count is None:
            return None
        if self.kind == "nginx":
            self._asked += 1
            count -= self._asked
        return count

    def stop(self) -> None:
        """Stop every backend process."""
        for process in self.processes:
            process.stop()


_PROXYPY_PLUGIN = '''\
"""proxy.py reverse-proxy plugin of the benchmark: every path goes to BENCH_UPSTREAM."""
import os

from proxy.http import Url
from proxy.http.server import ReverseProxyBasePlugin

UPSTREAM = os.environ["BENCH_UPSTREAM"].encode()


class BenchReverseProxy(ReverseProxyBasePlugin):
    def routes(self):
        return [r"/.*$"]

    def handle_route(self, request, pattern):
        return Url.from_bytes(UPSTREAM + (request.path or b"/"))
'''


def _write_static_files(root: Path, transfer_bytes: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    for name, size in body_sizes(transfer_bytes).items():
        path = root / name
        if size <= 1024 * 1024:
            path.write_bytes(b"x" * size)
        else:
            with path.open("wb") as file:
                file.truncate(size)  # sparse: reading it costs no disk
        path.chmod(0o644)
    document = root / JSON_NAME
    document.write_bytes(json_body())
    document.chmod(0o644)


def start_backends(
    tools: Tools,
    workdir: Path,
    layout: CpuLayout,
    transfer_bytes: int,
    nofile: int,
    *,
    use_nginx: bool,
) -> tuple[Backends | None, str]:
    """Start the backend on the load side's CPUs; (backends, "") or (None, the problem)."""
    cpus = layout.load_for(1)
    logs = workdir / "logs"
    sink_port = free_port()
    builtin = Process(
        "backend-builtin",
        [
            tools.python,
            "-m",
            "benchmarks.backend",
            "--port",
            str(sink_port),
            "--transfer-bytes",
            str(transfer_bytes),
        ],
        logs=logs,
        cpus=cpus,
        env=_checkout_env(),
        cwd=REPO,
    )
    processes = [builtin]
    problem = builtin.wait_http(sink_port, "/100b", 100)
    if problem:
        builtin.stop()
        return None, f"built-in backend: {problem}"
    if not use_nginx or tools.nginx is None:
        return Backends("built-in", sink_port, sink_port, processes), ""
    prefix = workdir / "nginx-backend"
    prefix.mkdir(mode=0o755)
    _write_static_files(workdir / "static", transfer_bytes)
    static_port = free_port()
    conf = nginx.backend_conf(prefix, static_port, workdir / "static", nofile)
    (prefix / "nginx.conf").write_text(conf)
    server = Process("backend-nginx", nginx.argv(tools.nginx, prefix), logs=logs, cpus=cpus)
    processes.append(server)
    problem = server.wait_http(static_port, "/100b", 100)
    if problem:
        for process in processes:
            process.stop()
        return None, f"nginx backend: {problem}"
    return Backends("nginx", static_port, sink_port, processes), ""


@dataclass
class Running:
    """A peer ready to measure: the port clients use and its process (none for direct)."""

    peer: Peer
    port: int
    process: Process | None


def _sansproxy_toml(
    port: int,
    upstream_port: int,
    tls: Certificate | None = None,
    *,
    compress: bool = False,
    cache: bool = False,
) -> str:
    listener = f'address = "127.0.0.1:{port}"'
    if tls is not None:  # the default ALPN offer of a TLS listener: h2, then http/1.1
        listener += f'\ncertificate = "{tls.certificate}"\nprivate_key = "{tls.private_key}"'
    return f"""\
[[listeners]]
{listener}

[upstreams.backend]
servers = ["http://127.0.0.1:{upstream_port}"]

[timeouts]
client_keepalive = 600
upstream_keepalive = 600

[limits]
max_client_connections = 20000
max_body_bytes = 0

[logging]
access_log = true
""" + (
        ("\n[compression]\nenabled = true\n" if compress else "")
        + ("\n[cache]\nenabled = true\n" if cache else "")
    )


def launch(
    peer: Peer,
    tools: Tools,
    upstream_port: int,
    *,
    workdir: Path,
    layout: CpuLayout,
    tag: str,
    tls: Certificate | None = None,
    compress: bool = False,
    cache: bool = False,
) -> tuple[Running | None, str]:
    """Start ``peer`` in front of ``upstream_port`` and wait until it answers.

    With ``tls`` its listener terminates TLS with that certificate (only for peers whose
    ``tls`` is set) and the readiness check goes over TLS. With ``compress`` sansproxy and
    nginx compress responses (sansproxy with its defaults, nginx with gzip at level 5).
    With ``cache`` they cache responses (sansproxy's ``[cache]`` with its defaults, nginx's
    ``proxy_cache``).

    Returns:
        (running peer, "") or (None, why it could not start).
    """
    if tls is not None and not peer.tls:
        raise ValueError(f"{peer.name} is not set up for TLS here")
    if peer.kind == "direct":
        return Running(peer, upstream_port, None), ""
    port = free_port()
    home = workdir / f"{peer.name}-{tag}"
    home.mkdir(mode=0o755)
    logs = workdir / "logs"
    cpus = layout.proxy(peer.workers)
    env: dict[str, str] = {}
    cwd: Path | None = None
    if peer.kind == "relay":
        argv = [tools.python, "-m", "benchmarks.relay", "--port", str(port)]
        argv += ["--upstream", f"127.0.0.1:{upstream_port}"]
        env, cwd = _checkout_env(), REPO
    elif peer.kind == "sansproxy":
        config = home / "proxy.toml"
        config.write_text(_sansproxy_toml(port, upstream_port, tls, compress=compress, cache=cache))
        argv = [tools.python, "-m", "sansproxy_trio", "--config", str(config)]
        argv += ["--loop", peer.loop, "--workers", str(peer.workers)]
        env = _checkout_env()
    elif peer.kind == "nginx":
        assert tools.nginx is not None
        pair = None if tls is None else (tls.certificate, tls.private_key)
        conf = nginx.proxy_conf(
            home, port, upstream_port, nofile=_nofile(), tls=pair, gzip=compress, cache=cache
        )
        (home / "nginx.conf").write_text(conf)
        argv = nginx.argv(tools.nginx, home)
    elif peer.kind == "mitmproxy":
        assert tools.mitmdump is not None
        argv = [tools.mitmdump, "--mode", f"reverse:http://127.0.0.1:{upstream_port}"]
        argv += ["--listen-host", "127.0.0.1", "--listen-port", str(port)]
        argv += ["--set", "stream_large_bodies=1m", "--set", "keep_host_header=true"]
        argv += ["--set", f"confdir={home}"]
    elif peer.kind == "proxy.py":
        (home / "bench_proxypy.py").write_text(_PROXYPY_PLUGIN)
        argv = [tools.python, "-m", "proxy", "--hostname", "127.0.0.1", "--port", str(port)]
        argv += ["--enable-reverse-proxy", "--plugins", "bench_proxypy.BenchReverseProxy"]
        argv += ["--num-acceptors", "1", "--num-workers", "1"]
        env = {"BENCH_UPSTREAM": f"http://127.0.0.1:{upstream_port}", "PYTHONPATH": str(home)}
        cwd = home
    else:
        raise ValueError(f"unknown peer kind {peer.kind!r}")
    process = Process(f"{peer.name}-{tag}", argv, logs=logs, cpus=cpus, env=env, cwd=cwd)
    context = None if tls is None else tls.client_context()
    problem = process.wait_http(port, "/100b", 100, tls=context)
    if problem:
        process.stop()
        return None, problem
    return Running(peer, port, process), ""


def _nofile() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def keeps_alive(port: int, timeout: float = 5.0, tls: ssl.SSLContext | None = None) -> bool:
    """Whether a second request on the same connection is answered (proxy.py's is not).

    With ``tls`` the connection is HTTP/1.1 over TLS, checked with that client context.
    """
    connection = (
        http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        if tls is None
        else http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=tls)
    )
    try:
        for _ in range(2):
            connection.request("GET", "/100b")
            response = connection.getresponse()
            if response.status != 200 or len(response.read()) != 100:
                return False
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()
    return True
