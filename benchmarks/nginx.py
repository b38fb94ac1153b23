"""nginx configurations for the two roles it plays: static backend and reference proxy.

Both run one worker process (the proxies under test run one core each), listen on
127.0.0.1 only, keep every file under the run's own prefix directory and never touch the
system's nginx service.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["argv", "backend_conf", "proxy_conf"]

# Every path nginx would otherwise take from its compiled-in defaults (/var/lib/nginx, ...).
_COMMON = """\
worker_processes 1;
worker_rlimit_nofile {nofile};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections {connections}; }}
"""
_TEMP_PATHS = """\
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
"""


def argv(nginx: str, prefix: Path) -> list[str]:
    """The command that runs nginx in the foreground with ``prefix/nginx.conf``."""
    return [
        nginx,
        "-p",
        str(prefix),
        "-c",
        str(prefix / "nginx.conf"),
        "-e",
        str(prefix / "error.log"),
        "-g",
        "daemon off;",
    ]


def _head(prefix: Path, nofile: int) -> str:
    return _COMMON.format(prefix=prefix, nofile=nofile, connections=max(1024, nofile - 100))


def backend_conf(prefix: Path, port: int, root: Path, nofile: int) -> str:
    """Serve the files of ``root`` on ``127.0.0.1:port`` with nginx: sendfile, keep-alive."""
    return (
        _head(prefix, nofile)
        + "http {\n"
        + _TEMP_PATHS.format(prefix=prefix)
        + f"""\
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 600s;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {root};
    }}
}}
"""
    )


def proxy_conf(prefix: Path, port: int, upstream_port: int, nofile: int) -> str:
    """Proxy with nginx, streaming, to ``127.0.0.1:upstream_port``, with an access log.

    Upstream keep-alive caches 32 idle connections (sansproxy's ``max_idle_per_server``
    default); bodies stream both ways (no request buffering, no temporary files), as they
    do through sansproxy.
    """
    return (
        _head(prefix, nofile)
        + "http {\n"
        + _TEMP_PATHS.format(prefix=prefix)
        + f"""\
    access_log {prefix}/access.log combined;
    keepalive_timeout 600s;
    keepalive_requests 1000000;
    client_max_body_size 0;
    upstream backend {{
        server 127.0.0.1:{upstream_port};
        keepalive 32;
        keepalive_requests 1000000;
        keepalive_timeout 600s;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_request_buffering off;
            proxy_max_temp_file_size 0;
        }}
    }}
}}
"""
    )
