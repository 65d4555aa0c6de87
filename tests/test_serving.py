"""The uvicorn workaround for ``--workers``: the shared socket must say it is TCP."""

from __future__ import annotations

import socket

from uvicorn.config import Config

from linkgate.serving import keep_tcp_nodelay_with_workers


def test_the_shared_listening_socket_is_marked_tcp() -> None:
    keep_tcp_nodelay_with_workers()
    listening = Config(app="linkgate.asgi:app", host="127.0.0.1", port=0).bind_socket()
    try:
        # asyncio sets TCP_NODELAY on accepted connections only for IPPROTO_TCP sockets.
        assert listening.proto == socket.IPPROTO_TCP
    finally:
        listening.close()
