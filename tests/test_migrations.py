"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL.

Each case migrates one fresh database and builds a second with ``metadata.create_all`` as
the reference. Alembic's ``compare_metadata`` must find nothing to do, and since it does not
look at CHECK constraints or partial-index predicates, the two reflected schemas must also
be equal. PostgreSQL runs when ``LINKGATE_TEST_DATABASE_URL`` points at a server.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, make_url, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import models
from models.database import scratch_database
from linkgate.migrations import alembic_config, current_revision, upgrade_database

metadata = models.Base.metadata


def _run_sync(url: str, fn: Any) -> Any:
    """Run ``fn(connection)`` on a short-lived async engine (the project only has async drivers)."""

    async def run() -> Any:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        try:
            async with engine.begin() as connection:
                return await connection.run_sync(fn)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _diffs(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "target_metadata": metadata}
    )
    return compare_metadata(context, metadata)


def _schema(connection: Connection) -> dict[str, Any]:
    """What reflection sees of every table, in a form that compares with ``==``."""
    inspector = inspect(connection)
    schema: dict[str, Any] = {}
    for table in sorted(set(inspector.get_table_names()) - {"alembic_version"}):
        schema[table] = {
            # Sorted: a later migration appends columns where create_all would put them in
            # declaration order, and the order of columns is not part of the schema.
            "columns": sorted(
                (c["name"], repr(c["type"]), c["nullable"]) for c in inspector.get_columns(table)
            ),
            "primary_key": inspector.get_pk_constraint(table),
            "foreign_keys": sorted(
                (fk["name"], fk["constrained_columns"], fk["referred_table"],
                 fk["referred_columns"], sorted(fk["options"].items()))
                for fk in inspector.get_foreign_keys(table)
            ),
            "unique": sorted(
                (u["name"], u["column_names"]) for u in inspector.get_unique_constraints(table)
            ),
            "indexes": sorted(
                (i["name"], i["column_names"], i["unique"],
                 sorted((k, str(v)) for k, v in i.get("dialect_options", {}).items()))
                for i in inspector.get_indexes(table)
            ),
            "checks": sorted(
                (c["name"], c["sqltext"]) for c in inspector.get_check_constraints(table)
            ),
        }
    return schema


def _create_all(connection: Connection) -> None:
    metadata.create_all(connection)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_urls(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[list[str]]:
    """Two empty databases: one to migrate, one for ``create_all``."""
    if request.param == "sqlite":
        yield [f"sqlite+aiosqlite:///{tmp_path / name}" for name in ("migrated.db", "reference.db")]
        return
    server_url = os.environ.get("LINKGATE_TEST_DATABASE_URL", "")
    if not server_url.startswith("postgresql"):
        pytest.skip("LINKGATE_TEST_DATABASE_URL does not point at PostgreSQL")
    server = make_url(server_url).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    with scratch_database(server, "linkgate_mig") as migrated, \
            scratch_database(server, "linkgate_mig") as reference:
        yield [migrated, reference]


def test_upgrade_builds_the_models_schema(database_urls: list[str]) -> None:
    migrated_url, reference_url = database_urls
    head = ScriptDirectory.from_config(alembic_config(migrated_url)).get_current_head()

    assert current_revision(migrated_url) is None
    upgrade_database(migrated_url)
    assert current_revision(migrated_url) == head

    migrated = _run_sync(migrated_url, _schema)
    assert set(migrated) == set(metadata.tables)
    assert _run_sync(migrated_url, _diffs) == []

    _run_sync(reference_url, _create_all)
    assert migrated == _run_sync(reference_url, _schema)


def test_downgrade_to_base_removes_every_table(tmp_path: Any) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'down.db'}"
    upgrade_database(url)
    command.downgrade(alembic_config(url), "base")
    assert current_revision(url) is None
    assert _run_sync(url, _schema) == {}


def test_percent_in_url_survives_the_config(tmp_path: Any) -> None:
    """Alembic's config is a ConfigParser: an unescaped '%' would break interpolation."""
    url = f"sqlite+aiosqlite:///{tmp_path / '100%25.db'}"
    assert alembic_config(url).get_main_option("sqlalchemy.url") == url
    upgrade_database(url)
    assert current_revision(url) == ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def test_identity_migration_keeps_every_sub_account(database_urls: list[str]) -> None:
    """0002 (invitations, sessions, two-factor) on a database with data from 0001: every user,
    membership and activated contact is still there, unchanged."""
    url = database_urls[0]
    upgrade_database(url, "0001")
    now = "2026-11-01 10:00:00"
    rows = [
        f"INSERT INTO users (id, email, name, password_hash, token_version, created_at) VALUES "
        f"(1, 'owner@mig.example', 'Owner', 'x', 1, '{now}'), (2, 'sub@mig.example', 'Sub', 'y', 3, '{now}')",
        f"INSERT INTO accounts (id, number, name, status, owner_id, credit_balance, enrollment_token_hash, created_at) "
        f"VALUES (1, 'ACC-1', 'Migrated', 'ACTIVE', 1, 0, 'h', '{now}')",
        f"INSERT INTO memberships (id, user_id, account_id, permissions, created_at) "
        f"VALUES (1, 2, 1, '[\"INVOICES_READ\"]', '{now}')",
        f"INSERT INTO contacts (id, account_id, name, email, is_support_contact, is_billing_contact, "
        f"email_preferences, user_id, created_at) VALUES (1, 1, 'Sub', 'sub@mig.example', false, false, '[]', 2, '{now}')",
    ]

    def seed(connection: Connection) -> None:
        from sqlalchemy import text

        for statement in rows:
            connection.execute(text(statement))

    def read(connection: Connection) -> Any:
        from sqlalchemy import text

        return (
            connection.execute(text("SELECT user_id, account_id, permissions FROM memberships")).all(),
            connection.execute(text("SELECT id, user_id FROM contacts")).all(),
            connection.execute(text("SELECT id, token_version, totp_enabled_at FROM users ORDER BY id")).all(),
            connection.execute(text("SELECT count(*) FROM invitations")).scalar(),
        )

    _run_sync(url, seed)
    upgrade_database(url)
    memberships, contacts, users, invitations = _run_sync(url, read)
    assert [(m[0], m[1]) for m in memberships] == [(2, 1)]
    assert "INVOICES_READ" in str(memberships[0][2])
    assert [tuple(c) for c in contacts] == [(1, 2)]
    assert [tuple(u) for u in users] == [(1, 1, None), (2, 3, None)]
    assert invitations == 0


def test_replicas_migrating_at_once_take_turns(empty_database: str) -> None:
    """Four processes upgrading one fresh database together (replicas starting at once): on
    PostgreSQL they queue on an advisory lock, so none fails creating ``alembic_version``
    and the schema is built once."""
    import subprocess
    import sys

    environment = {**os.environ, "LINKGATE_DATABASE_URL": empty_database}
    environment["LINKGATE_SECRET_KEY"] = "migration-test-key-that-is-long-enough-0123456789"
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "linkgate", "db", "upgrade"], env=environment,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for _ in range(4)
    ]
    outcomes = [(process.wait(timeout=120), process.stdout.read()) for process in processes]  # type: ignore[union-attr]
    assert [code for code, _ in outcomes] == [0, 0, 0, 0], outcomes
    head = ScriptDirectory.from_config(alembic_config(empty_database)).get_current_head()
    assert current_revision(empty_database) == head
