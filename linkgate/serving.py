"""Running uvicorn: one workaround that ``linkgate serve --workers N`` needs.

uvicorn binds the shared listening socket of ``--workers`` with ``proto=0``; accepted
connections inherit it, and asyncio only sets TCP_NODELAY when ``proto == IPPROTO_TCP``. So
with more than one worker every keep-alive response waits ~40 ms for the client's delayed
ACK (Nagle): bench/RESULTS.md measured 1.1 ms → 44.7 ms for /healthz. Upstream issue:
Kludex/uvicorn#3149. Remove this once uvicorn sets the protocol itself.
"""

from __future__ import annotations

import socket

from uvicorn.config import Config

_bind_socket = Config.bind_socket


def _bind_tcp_socket(self: Config) -> socket.socket:
    sock = _bind_socket(self)
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto == 0:
        # The same file descriptor, re-wrapped with the protocol asyncio looks for.
        return socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
    return sock


def keep_tcp_nodelay_with_workers() -> None:
    Config.bind_socket = _bind_tcp_socket  # type: ignore[method-assign]
