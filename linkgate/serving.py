"""Running the server process: the garbage collector's settings, and one uvicorn workaround.

Garbage collection: a dashboard answer allocates some 100,000 container objects that all
live until the response is sent. With CPython's defaults (a collection every 700 new
objects, a full one whenever the survivors add up) a request paid for several collections of
its own live objects and of the whole heap: bench/RESULTS.md measured ~70 ms of collector
time per dashboard request. ``tune_garbage_collection`` runs once the app has started:
``gc.freeze()`` moves everything built at startup (the schema, the models, the libraries),
which lives as long as the process, out of the collector's reach, and the young generation
grows to ``gc_young_threshold`` objects before a collection.

uvicorn and TCP_NODELAY:

uvicorn binds the shared listening socket of ``--workers`` with ``proto=0``; accepted
connections inherit it, and asyncio only sets TCP_NODELAY when ``proto == IPPROTO_TCP``. So
with more than one worker every keep-alive response waits ~40 ms for the client's delayed
ACK (Nagle): bench/RESULTS.md measured 1.1 ms → 44.7 ms for /healthz. Upstream issue:
Kludex/uvicorn#3149. Remove this once uvicorn sets the protocol itself.
"""

from __future__ import annotations

import gc
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


def tune_garbage_collection(young_threshold: int) -> None:
    """Call once the process has built what it keeps (see the module docstring)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
