"""Run the Alembic migrations programmatically, without alembic.ini or a working directory.

Both functions block and drive their own event loop (``asyncio.run`` inside ``env.py``),
so call them outside a running loop, or from async code via ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import models

# Found beside the installed ``models`` package, so it works from any working directory.
SCRIPT_LOCATION = Path(models.__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at our scripts and ``url``."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.set_main_option("path_separator", "os")
    # The config is a ConfigParser: '%' would start an interpolation (e.g. %40 in a password).
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _refuse_inside_event_loop() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError("migrations block; from async code use asyncio.to_thread(...)")


def upgrade_database(url: str, revision: str = "heads") -> None:
    """Migrate the database at ``url`` up to ``revision``."""
    _refuse_inside_event_loop()
    command.upgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at; None when it was never migrated."""
    _refuse_inside_event_loop()

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async def run() -> str | None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(read)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def pending_revisions(url: str) -> list[str]:
    """The migrations not yet applied to the database at ``url``, oldest first."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config(url))
    current = current_revision(url)
    return [
        script.revision
        for script in reversed(list(scripts.walk_revisions("base", "heads")))
        if current is None or not _is_ancestor_or_same(scripts, script.revision, current)
    ]


def _is_ancestor_or_same(scripts: Any, revision: str, current: str) -> bool:
    return any(step.revision == revision for step in scripts.iterate_revisions(current, "base"))
