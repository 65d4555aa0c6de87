"""``python -m uvicorn`` with one fix, for ``bench.gateway --tcp-nodelay``: the same CLI and
arguments, but the listening socket that ``--workers N`` binds up front is marked IPPROTO_TCP.

Why: uvicorn binds that socket with ``proto=0``; accepted connections inherit it and asyncio
only sets TCP_NODELAY when ``proto == IPPROTO_TCP``, so with ``--workers`` > 1 every keep-alive
response waits ~40 ms for the client's delayed ACK (Nagle). Upstream: Kludex/uvicorn#3149.
Single-worker uvicorn is not affected. Benchmark only; it shows what the fix would buy.
"""

from __future__ import annotations

import socket
import sys

from uvicorn.config import Config
from uvicorn.main import main

_bind_socket = Config.bind_socket


def _bind_tcp_socket(self: Config) -> socket.socket:
    sock = _bind_socket(self)
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto == 0:
        # Same file descriptor, re-wrapped with the protocol asyncio looks for.
        return socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
    return sock


Config.bind_socket = _bind_tcp_socket  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
