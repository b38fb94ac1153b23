"""Drive the sansproxy core from a plain ``selectors`` loop: no async framework at all.

Non-blocking sockets, one ``select()`` that sleeps until ``proxy.next_deadline()``, events in,
commands out; plain TCP only. ``--listen HOST:PORT --upstream URL`` runs a proxy; ``--once``
starts a backend thread, proxies one request through the loop and exits 0 on success.
"""

import argparse
import contextlib
import http.server
import os
import random
import selectors
import socket
import struct
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field

import sansproxy as sp

R, W = selectors.EVENT_READ, selectors.EVENT_WRITE


def nonblocking(sock: socket.socket) -> socket.socket:
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small writes go out at once
    return sock


@dataclass(eq=False)
class Conn:
    sock: socket.socket
    connecting: bool = False  # an upstream whose connect() is in progress
    out: bytearray = field(default_factory=bytearray)  # sent by the core, not yet written
    paused: bool = False
    closing: bool = False  # Close(abort=False): write what is queued, then close
    eof: bool = False
    half_close: bool = False  # ShutdownWrite: write what is queued, then send FIN


class Loop:
    def __init__(self, proxy: sp.Proxy, listener: socket.socket) -> None:
        self.proxy, self.listener, self.sel = proxy, listener, selectors.DefaultSelector()
        self.sel.register(listener, R, None)
        self.conns: dict[sp.ConnId, Conn] = {}
        self.done = False

    def feed(self, event: sp.Event | None) -> None:  # one turn of the core; None = timer due
        now, wall = time.monotonic(), time.time()  # timers; HTTP dates
        if event is None:
            cmds = self.proxy.handle_timeout(now, wall=wall)
        else:
            cmds = self.proxy.handle(event, now, wall=wall)
        for cmd in cmds:
            match cmd:
                case sp.Send():
                    self.conns[cmd.conn].out += cmd.data
                case sp.OpenUpstream():
                    sock = nonblocking(socket.socket(socket.getaddrinfo(cmd.host, cmd.port)[0][0]))
                    sock.connect_ex((cmd.host, cmd.port))  # in progress; writable when done
                    self.conns[cmd.conn] = Conn(sock, connecting=True)
                case sp.Close(abort=True):
                    self.drop(cmd.conn, reset=True)
                case sp.Close():
                    self.conns[cmd.conn].closing = True
                case sp.ShutdownWrite():
                    self.conns[cmd.conn].half_close = True
                case sp.PauseReading() | sp.ResumeReading():
                    self.conns[cmd.conn].paused = isinstance(cmd, sp.PauseReading)
                case sp.Log():
                    print(f"[{cmd.level}] {cmd.message}", file=sys.stderr)
                case sp.AccessLog():
                    print(f"access: {cmd.record.method} {cmd.record.target} {cmd.record.status}")
                case sp.ShutdownComplete():
                    self.done = True
            if (conn := getattr(cmd, "conn", None)) in self.conns:
                self.watch(conn)

    def watch(self, conn: sp.ConnId) -> None:  # select on what this connection waits for
        c = self.conns[conn]
        if c.closing and not c.out:
            return self.drop(conn)
        if c.half_close and not c.out:
            c.half_close = False
            c.sock.shutdown(socket.SHUT_WR)
        reading = not (c.paused or c.closing or c.connecting or c.eof)
        mask = (R if reading else 0) | (W if c.out or c.connecting else 0)
        if c.sock in self.sel.get_map():
            self.sel.unregister(c.sock)
        if mask:
            self.sel.register(c.sock, mask, conn)
        return None

    def drop(self, conn: sp.ConnId, *, reset: bool = False) -> None:
        c = self.conns.pop(conn)
        if c.sock in self.sel.get_map():
            self.sel.unregister(c.sock)
        if reset:  # SO_LINGER 0: close() sends a reset
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.sock.close()

    def ready(self, conn: sp.ConnId, mask: int) -> None:
        c = self.conns[conn]
        try:
            if c.connecting:
                if error := c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    self.drop(conn)
                    return self.feed(sp.UpstreamFailed(conn=conn, reason=os.strerror(error)))
                c.connecting = False
                self.feed(sp.UpstreamConnected(conn=conn))
            elif mask & R:
                data = c.sock.recv(65536)
                c.eof = not data
                self.feed(
                    sp.DataReceived(conn=conn, data=data) if data else sp.EofReceived(conn=conn)
                )
            elif mask & W:
                sent = c.sock.send(c.out)
                del c.out[:sent]
                if not c.closing:  # after Close the core has forgotten this connection
                    self.feed(sp.Written(conn=conn, nbytes=sent))
        except BlockingIOError:
            pass
        except OSError as error:
            self.drop(conn)
            return None if c.closing else self.feed(sp.ConnectionLost(conn=conn, reason=str(error)))
        return self.watch(conn) if conn in self.conns else None

    def accept(self) -> None:
        sock, peer = self.listener.accept()
        self.conns[conn := self.proxy.allocate_id()] = Conn(nonblocking(sock))
        local = sock.getsockname()[:2]
        self.feed(sp.ConnectionAccepted(conn=conn, listener=0, peer=peer[:2], local=local))
        return self.watch(conn) if conn in self.conns else None

    def run(self, stop: threading.Event) -> None:
        while not (stop.is_set() or self.done):
            deadline = self.proxy.next_deadline()  # wake for it, and at least every 0.2 s
            wait = 0.2 if deadline is None else min(0.2, max(0.0, deadline - time.monotonic()))
            for key, mask in self.sel.select(wait):
                if key.data is None:
                    self.accept()
                elif key.data in self.conns:
                    self.ready(key.data, mask)
            if deadline is not None and time.monotonic() >= deadline:
                self.feed(None)


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello from the selectors backend ({self.path})\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="example: selectors_loop.py --listen 127.0.0.1:8080 --upstream "
        "http://127.0.0.1:9000   (or --once for a self-test)",
    )
    parser.add_argument("--listen", default="127.0.0.1:8080", help="default: %(default)s")
    parser.add_argument("--upstream", action="append", default=[], help="a backend (repeatable)")
    parser.add_argument("--once", action="store_true", help="self-test: one request, then exit")
    args = parser.parse_args()
    if not args.once and not args.upstream:
        parser.print_usage(sys.stderr)
        print(
            "selectors_loop.py: give at least one --upstream URL to proxy to, "
            "or --once for a self-test with a backend of its own",
            file=sys.stderr,
        )
        return 2
    if args.once:
        backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
        threading.Thread(target=backend.serve_forever, daemon=True).start()
        args.listen, args.upstream = "127.0.0.1:0", [f"http://127.0.0.1:{backend.server_port}"]
    try:
        config = sp.quick_config([args.listen], args.upstream)
    except sp.ConfigError as error:
        parser.error(str(error))
    if any(server.tls for up in config.upstreams.values() for server in up.servers):
        parser.error("this example speaks plain TCP only: no https:// upstreams")
    host, port = config.listeners[0].host, config.listeners[0].port
    try:
        family = socket.getaddrinfo(host, port)[0][0]
        listener = socket.create_server((host, port), family=family)
    except OSError as error:
        print(f"selectors_loop.py: cannot listen on {args.listen}: {error}", file=sys.stderr)
        return 1
    listener.setblocking(False)
    loop = Loop(sp.Proxy(config, rng=random.Random(1)), listener)
    bound_host, bound_port = listener.getsockname()[:2]
    url = f"http://{f'[{bound_host}]' if ':' in bound_host else bound_host}:{bound_port}"
    print(f"listening on {url}", file=sys.stderr)
    stop, result = threading.Event(), {}

    def client() -> None:  # urllib (ignoring any http_proxy variable); its timeout bounds the test
        try:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(f"{url}/once", timeout=10) as response:
                result["status"], result["body"] = response.status, response.read()
        finally:
            stop.set()

    if args.once:
        threading.Thread(target=client, daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt):
        loop.run(stop)
    loop.feed(sp.ShutdownRequested())  # graceful: the core closes everything, then says so
    loop.run(threading.Event())
    listener.close()
    if args.once:
        print(f"response: {result.get('status')} {result.get('body', b'').decode()!r}")
    return 0 if not args.once or result.get("status") == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
