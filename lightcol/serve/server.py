"""Serve the application with uvicorn: bind, announce the address, shut down gracefully.

On SIGTERM or SIGINT uvicorn stops accepting connections, lets the requests in flight finish (up
to ``graceful_timeout`` seconds), then ends the application's lifespan, which stops the batcher
once the texts it holds are done.
"""

from __future__ import annotations

import ipaddress
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from lightcol import _optional


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None)
        except OSError:
            return False
        return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def bind(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: a free port, read it from ``getsockname()``)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    try:
        sock.bind(address)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run(app: Any, host: str = "127.0.0.1", port: int = 8080, *, graceful_timeout: float = 30.0,
        log_level: str = "info", access_log: bool = False,
        on_listen: Callable[[str], None] | None = None) -> None:
    """Serve ``app`` (from :func:`lightcol.serve.create_app`) until SIGTERM/SIGINT, then shut down gracefully."""
    uvicorn = _optional.require("uvicorn", "serve", "lightcol serve")
    sock = bind(host, port)
    config = uvicorn.Config(app, log_level=log_level, access_log=access_log, lifespan="on",
                            timeout_graceful_shutdown=graceful_timeout, server_header=False)
    server = uvicorn.Server(config)
    if on_listen is not None:
        on_listen(url(sock))
    else:
        print(f"lightcol serve: listening on {url(sock)}", file=sys.stderr, flush=True)
    # uvicorn re-raises the signal that stopped it once it is done; these handlers make that a no-op, so a
    # graceful shutdown exits with status 0 (and a signal before uvicorn's own handlers still stops it)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda signum, frame: setattr(server, "should_exit", True))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
