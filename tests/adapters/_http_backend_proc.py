"""A tiny HTTP/1.1 keep-alive backend that runs as its own process, so a test can SIGKILL it.

Usage: ``python _http_backend_proc.py --name NAME --port PORT``. It listens on
127.0.0.1:PORT (0: an ephemeral port), prints ``ready PORT`` on stdout once it
listens, and answers ``GET /health`` with ``ok NAME`` and any other request
with ``NAME METHOD TARGET``, so a client can tell which backend answered.
It binds with ``SO_REUSEADDR`` so that a restart on the same port works while
old connections sit in TIME_WAIT.
"""

from __future__ import annotations

import argparse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless the client says close
    server_version = "failover-backend"
    disable_nagle_algorithm = True  # head and body are two writes: no 40 ms delayed-ACK stall
    name = "?"

    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, *, body: bool = True) -> None:
        if self.path == "/health":
            text = f"ok {self.name}\n"
        else:
            text = f"{self.name} {self.command} {self.path}\n"
        data = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Backend", self.name)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: thousands of requests per test


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the proxy resets probes that time out: no traceback on stderr for that


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    handler = type("Handler", (_Handler,), {"name": args.name})
    with _Server(("127.0.0.1", args.port), handler) as server:
        print(f"ready {server.server_address[1]}", flush=True)
        server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()
