"""nginx configurations for the two roles it plays: static backend and reference proxy.

Both run one worker process (the proxies under test run one core each), listen on
127.0.0.1 only, keep every file under the run's own prefix directory and never touch the
system's nginx service.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.backend import CACHE_CONTROL, CACHED_PREFIX, STATS_PATH

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
    """Serve the files of ``root`` on ``127.0.0.1:port`` with nginx: sendfile, keep-alive.

    As the built-in backend does, ``/cached/<name>`` serves ``/<name>`` with
    ``Cache-Control: max-age=3600`` and ``/_stats`` counts the requests answered (nginx's
    ``stub_status``, which counts the request that asks as well).
    """
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
        location = /json100k {{
            default_type application/json;
        }}
        location {CACHED_PREFIX} {{
            alias {root}/;
            add_header Cache-Control "{CACHE_CONTROL}";
        }}
        location = {CACHED_PREFIX}json100k {{
            alias {root}/json100k;
            default_type application/json;
            add_header Cache-Control "{CACHE_CONTROL}";
        }}
        location = {STATS_PATH} {{
            stub_status;
        }}
    }}
}}
"""
    )


_GZIP = """\
    gzip on;
    gzip_comp_level 5;
    gzip_min_length 512;
    gzip_proxied any;
    gzip_vary on;
    gzip_types text/plain text/css application/json application/javascript application/xml;
"""


_CACHE_PATH = """\
    proxy_cache_path {prefix}/cache levels=1:2 keys_zone=bench:10m max_size=256m inactive=1h
                     use_temp_path=off;
"""
_CACHE = """\
            proxy_cache bench;
            proxy_cache_lock on;
            add_header X-Cache-Status $upstream_cache_status;
"""


def proxy_conf(
    prefix: Path,
    port: int,
    upstream_port: int,
    nofile: int,
    tls: tuple[Path, Path] | None = None,
    *,
    gzip: bool = False,
    cache: bool = False,
) -> str:
    """Proxy with nginx, streaming, to ``127.0.0.1:upstream_port``, with an access log.

    With ``gzip`` it compresses what sansproxy does by default (text and JSON of 512
    bytes or more, at level 5, for any proxied response): open-source nginx has gzip
    only.

    With ``cache`` it caches responses by their Cache-Control (``proxy_cache``, files
    under ``prefix/cache`` that the page cache keeps in memory, one request per key fills
    it: ``proxy_cache_lock``), as sansproxy's ``[cache]`` does.

    Upstream keep-alive caches 32 idle connections (sansproxy's ``max_idle_per_server``
    default); bodies stream both ways (no request buffering, no temporary files), as they
    do through sansproxy. With ``tls`` (certificate, key) the listener terminates TLS and
    offers ``h2`` and ``http/1.1`` by ALPN (nginx 1.22's ``listen ... ssl http2``), with
    TLS 1.2 and 1.3 as sansproxy's listener has (1.22's default stops at 1.2); the upstream
    side stays HTTP/1.1, as sansproxy's. ``keepalive_timeout`` and ``keepalive_requests``
    also bound HTTP/2 connections since nginx 1.19.7.
    """
    listen = f"listen 127.0.0.1:{port} backlog=4096;"
    if tls is not None:
        listen = (
            f"listen 127.0.0.1:{port} ssl http2 backlog=4096;\n"
            f"        ssl_certificate {tls[0]};\n"
            f"        ssl_certificate_key {tls[1]};\n"
            "        ssl_protocols TLSv1.2 TLSv1.3;"
        )
    return (
        _head(prefix, nofile)
        + "http {\n"
        + _TEMP_PATHS.format(prefix=prefix)
        + f"""\
    access_log {prefix}/access.log combined;
    keepalive_timeout 600s;
    keepalive_requests 1000000;
    client_max_body_size 0;
{_GZIP if gzip else ""}{_CACHE_PATH.format(prefix=prefix) if cache else ""}    upstream backend {{
        server 127.0.0.1:{upstream_port};
        keepalive 32;
        keepalive_requests 1000000;
        keepalive_timeout 600s;
    }}
    server {{
        {listen}
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_request_buffering off;
            proxy_max_temp_file_size 0;
{_CACHE if cache else ""}        }}
    }}
}}
"""
    )
