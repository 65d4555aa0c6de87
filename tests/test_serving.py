"""The server process: the collector's settings, and the uvicorn workaround for ``--workers``."""

from __future__ import annotations

import gc
import socket
from collections.abc import Iterator

import pytest
from uvicorn.config import Config

import linkgate.app
from linkgate.serving import keep_tcp_nodelay_with_workers, tune_garbage_collection
from linkgate.settings import Settings


def test_the_shared_listening_socket_is_marked_tcp() -> None:
    keep_tcp_nodelay_with_workers()
    listening = Config(app="linkgate.asgi:app", host="127.0.0.1", port=0).bind_socket()
    try:
        # asyncio sets TCP_NODELAY on accepted connections only for IPPROTO_TCP sockets.
        assert listening.proto == socket.IPPROTO_TCP
    finally:
        listening.close()


@pytest.fixture
def collector_settings() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_tuning_freezes_what_startup_built_and_widens_the_young_generation(
    collector_settings: None,
) -> None:
    middle_and_old = gc.get_threshold()[1:]
    tune_garbage_collection(12_345)
    assert gc.get_freeze_count() > 10_000  # the libraries and the schema, at least
    assert gc.get_threshold() == (12_345, *middle_and_old)


async def test_the_app_tunes_the_collector_when_it_starts(
    collector_settings: None, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(linkgate.app, "tune_garbage_collection", calls.append)
    app = linkgate.app.create_app(settings.model_copy(update={"gc_young_threshold": 20_000}))
    async with app.router.lifespan_context(app):
        assert calls == [20_000]


def test_the_threshold_cannot_go_below_cpythons_default() -> None:
    with pytest.raises(ValueError, match="gc_young_threshold"):
        Settings(gc_young_threshold=10)
