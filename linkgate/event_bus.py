"""Carries committed live events (``resolvers/live_events.py``) to every subscriber.

- **Sending.** ``install_commit_hooks`` listens to every SQLAlchemy session of the process.
  On PostgreSQL the events go out as ``pg_notify`` *inside* the committing transaction:
  PostgreSQL delivers a notification exactly when, and only if, its transaction commits, to
  every connection listening on the channel (every replica, and CLI commands such as
  ``run-invoicing`` included). On SQLite (one process) they are handed to this process's
  ``LocalHub`` after the commit.
- **Receiving.** ``LocalHub`` fans events out to the streams of this process's subscribers,
  each with a bounded queue: a subscriber that stops reading is cut off, never buffered
  without end. On PostgreSQL, ``PostgresListener`` keeps one connection per process
  ``LISTEN``ing and feeds the hub; when that connection drops it reconnects and listens
  again (events committed while it was away are missed; clients refetch on reconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import asyncpg
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from resolvers.live_events import LiveEvent, take_pending

logger = logging.getLogger("linkgate.live")

CHANNEL = "linkgate_live"
# How the LISTEN connection shows in pg_stat_activity.
APPLICATION_NAME = "linkgate-live"
_NOTIFY = text("SELECT pg_notify(:channel, :payload)")


class Stream:
    """One subscriber's queue of events; iterate it, close it when done."""

    def __init__(self, hub: LocalHub, size: int) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[LiveEvent | None] = asyncio.Queue(maxsize=size)
        self.overflowed = False
        # Called once when it overflows: its reader is stuck (a socket nobody reads), so
        # waking the reader is not enough; whoever owns the socket cuts it off.
        self.on_overflow: Callable[[], None] | None = None

    def offer(self, live_event: LiveEvent) -> None:
        if self.overflowed:
            return
        try:
            self._queue.put_nowait(live_event)
        except asyncio.QueueFull:
            # Too far behind: stop queueing and wake the reader, which ends its subscription.
            self.overflowed = True
            self._queue.get_nowait()
            self._queue.put_nowait(None)
            if self.on_overflow is not None:
                self.on_overflow()

    def __aiter__(self) -> AsyncIterator[LiveEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[LiveEvent]:
        while True:
            live_event = await self._queue.get()
            if live_event is None:
                return
            yield live_event

    def close(self) -> None:
        self._hub.streams.discard(self)


class LocalHub:
    """This process's subscribers. Events reach it from the commit hook (SQLite) or from
    ``PostgresListener``; it hands each to every open stream."""

    def __init__(self, queue_size: int = 100) -> None:
        self.queue_size = queue_size
        self.streams: set[Stream] = set()

    def open_stream(self) -> Stream:
        stream = Stream(self, self.queue_size)
        self.streams.add(stream)
        return stream

    def deliver(self, live_event: LiveEvent) -> None:
        for stream in list(self.streams):
            stream.offer(live_event)


# The process's one hub: the commit hook of any session (whichever app or command opened it)
# delivers into it on SQLite.
HUB = LocalHub()


def install_commit_hooks() -> None:
    """Once per process: events leave with the commit of the transaction that made them."""
    if not event.contains(Session, "before_commit", _before_commit):
        event.listen(Session, "before_commit", _before_commit)
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_rollback", _after_rollback)


_COMMITTED = "linkgate.live_events.committed"


def _before_commit(session: Session) -> None:
    pending = take_pending(session)
    if not pending:
        return
    if session.get_bind().dialect.name == "postgresql":
        # Sent by PostgreSQL when (and only if) this transaction commits.
        for live_event in pending:
            session.execute(_NOTIFY, {"channel": CHANNEL, "payload": live_event.encode()})
    else:
        session.info[_COMMITTED] = pending


def _after_commit(session: Session) -> None:
    for live_event in session.info.pop(_COMMITTED, None) or ():
        HUB.deliver(live_event)


def _after_rollback(session: Session) -> None:
    take_pending(session)
    session.info.pop(_COMMITTED, None)


class PostgresListener:
    """One ``LISTEN`` connection per process, kept open: reconnects with backoff and listens
    again after a restart, a failover or a terminated backend."""

    def __init__(self, database_url: str, hub: LocalHub, *, health_seconds: float = 10.0) -> None:
        url = make_url(database_url).set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self._hub = hub
        self._health_seconds = health_seconds
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.reconnects = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="linkgate-live-listener")
        # Serve at once even if the database is down; wait a moment for the common case.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self.connected.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = 0.1
        while True:
            try:
                await self._listen_until_lost()
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the database is down or the connection broke
                logger.warning("live updates: LISTEN connection lost (%s: %s); retrying in %.1f s",
                               type(error).__name__, error, delay)
            self.connected.clear()
            self.reconnects += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _listen_until_lost(self) -> None:
        connection = await asyncpg.connect(
            self._dsn, timeout=10, server_settings={"application_name": APPLICATION_NAME})
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        try:
            await connection.add_listener(CHANNEL, self._on_notification)
            self.connected.set()
            logger.info("live updates: listening on %s", CHANNEL)
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._health_seconds):
                        await lost.wait()
                if not lost.is_set():
                    await connection.fetchval("SELECT 1", timeout=self._health_seconds)
            raise ConnectionError("the LISTEN connection was closed")
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), timeout=2)
            if not connection.is_closed():
                connection.terminate()

    def _on_notification(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        live_event = LiveEvent.decode(payload)
        if live_event is not None:
            self._hub.deliver(live_event)
