"""Alembic environment: async engines, the models' metadata, and the URL from the caller.

The URL is never stored in alembic.ini. In order of precedence it comes from
``sqlalchemy.url`` set by the caller (``linkgate.migrations``), ``-x url=...`` on the
command line, the ``LINKGATE_DATABASE_URL`` environment variable, then the embedded
SQLite default.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Iterator
from logging.config import fileConfig
from typing import Any

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import make_url, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import models
from models.base import StringList, UTCDateTime

DEFAULT_URL = "sqlite+aiosqlite:///./linkgate.db"

config = context.config
target_metadata = models.Base.metadata

# Only the `alembic` command has an ini file; programmatic callers keep their own logging.
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    """The URL to migrate, from the most explicit source that has one."""
    url = (
        config.get_main_option("sqlalchemy.url")
        or context.get_x_argument(as_dictionary=True).get("url")
        or os.environ.get("LINKGATE_DATABASE_URL")
    )
    return url or DEFAULT_URL


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | bool:
    """Render our TypeDecorators as plain SQLAlchemy types.

    Migrations then stay valid when ``models.base`` is refactored later; the Python-side
    conversions of the decorators do not matter to DDL.
    """
    if type_ == "type":
        if isinstance(obj, UTCDateTime):
            return "sa.DateTime(timezone=True)"
        if isinstance(obj, StringList):
            return "sa.JSON()"
    return False


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        render_item=render_item,
        **kwargs,
    )


def run_migrations_offline() -> None:
    """Emit SQL to stdout (``alembic upgrade --sql``) without a database."""
    url = database_url()
    _configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


# Any constant: the advisory lock every migration run on one PostgreSQL database takes turns on.
MIGRATION_LOCK_KEY = 0x6C696E6B67617465  # "linkgate"


def do_run_migrations(connection: Connection) -> None:
    # SQLite cannot ALTER most things: batch mode recreates the table instead.
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Two replicas starting at once on a fresh database would both create
            # alembic_version: the second waits here, then finds the work done. Held until
            # the migration transaction ends (PostgreSQL DDL is transactional).
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        context.run_migrations()


async def run_async_migrations() -> None:
    # NullPool: a migration run is one connection, closed when done.
    engine = create_async_engine(database_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


@contextlib.contextmanager
def sqlite_migration_lock(url: str) -> Iterator[None]:
    """SQLite's driver commits DDL as it goes, so two processes migrating one file at once
    would both create the tables: they take turns on a lock file beside it instead (the
    PostgreSQL runs take turns on an advisory lock, in ``do_run_migrations``)."""
    database = make_url(url).database if url.startswith("sqlite") else None
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}-migrate.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def run_migrations_online() -> None:
    with sqlite_migration_lock(database_url()):
        asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
