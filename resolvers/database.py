"""The per-request session: one connection, used by one coroutine at a time."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession


class RequestFinished(RuntimeError):
    """A statement from a resolver whose request has already been answered."""


class _RequestLock(asyncio.Lock):
    finished = False

    async def __aenter__(self) -> None:
        await super().__aenter__()
        if self.finished:
            self.release()
            raise RequestFinished("the request this statement belonged to has been answered")


class RequestSession(AsyncSession):
    """GraphQL resolves sibling fields concurrently, but a session must not be used
    concurrently; this lock serialises the awaits so loaders and resolvers can share it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = _RequestLock()

    async def close(self) -> None:
        """Waits for the statement in flight, then refuses any later one.

        When a non-null field fails, GraphQL answers at once while sibling resolvers are
        still running; the request then closes its session under them. Their results are
        discarded either way, so they get ``RequestFinished`` instead of a connection that
        is being closed (or a new one opened after the request ended).
        """
        async with self._lock:
            self._lock.finished = True
            await super().close()

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        async with self._lock:
            return await super().execute(*args, **kwargs)

    async def scalar(self, *args: Any, **kwargs: Any) -> Any:
        async with self._lock:
            return await super().scalar(*args, **kwargs)

    async def run_sync(self, *args: Any, **kwargs: Any) -> Any:
        async with self._lock:
            return await super().run_sync(*args, **kwargs)

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        async with self._lock:
            return await super().get(*args, **kwargs)

    async def flush(self, *args: Any, **kwargs: Any) -> None:
        async with self._lock:
            await super().flush(*args, **kwargs)

    async def commit(self) -> None:
        async with self._lock:
            await super().commit()

    async def rollback(self) -> None:
        async with self._lock:
            await super().rollback()

    async def refresh(self, *args: Any, **kwargs: Any) -> None:
        async with self._lock:
            await super().refresh(*args, **kwargs)


async def begin_write(session: AsyncSession) -> None:
    """Start a mutation's transaction as a writer, before it reads what it will change.

    PostgreSQL: nothing to do; mutations lock the rows they change (``SELECT … FOR NO KEY
    UPDATE``, in ascending id order). SQLite has no row locks, and the sqlite3 driver runs the
    reads before a transaction's first write outside any transaction, so two read-then-write
    requests could both read the same balance (a lost update) or fail with "database is
    locked". There the transaction starts with ``BEGIN IMMEDIATE``: it takes the database's
    single write lock at once (waiting up to the busy timeout), so writers queue and read
    current rows. Read-only requests never call this, so they never wait for writers (WAL).
    """
    connection = await session.connection()
    if connection.dialect.name != "sqlite":
        return
    raw = await connection.get_raw_connection()
    if not raw.driver_connection.in_transaction:  # type: ignore[union-attr]
        await connection.exec_driver_sql("BEGIN IMMEDIATE")
