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
from sqlalchemy import inspect, make_url, pool, text
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
            # Reflection leaves triggers out; the rights version lives by them (models/rights.py).
            "triggers": sorted(_triggers(connection, table)),
        }
    return schema


def _triggers(connection: Connection, table: str) -> list[tuple[str, str]]:
    if connection.dialect.name == "postgresql":
        return [(name, enabled) for name, enabled in connection.execute(text(
            "SELECT tgname, tgenabled FROM pg_trigger WHERE NOT tgisinternal AND tgrelid = to_regclass(:table)"
        ), {"table": table})]
    return [(name, sql) for name, sql in connection.execute(text(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :table"), {"table": table})]


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
        for statement in rows:
            connection.execute(text(statement))

    def read(connection: Connection) -> Any:
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


def test_billing_migration_fills_snapshots_payments_and_link_periods(database_urls: list[str]) -> None:
    """0003 (payments, invoice snapshots, link periods) on a database with data from 0002: the
    issued invoices get their snapshots from the accounts and their tax rate from their own
    tax and subtotal, a PAID one exactly one offline payment of its total, the standing link
    one open period, and every account keeps its token digest, as version 1."""
    url = database_urls[0]
    upgrade_database(url, "0002")
    now = "2026-11-01 10:00:00"
    rows = [
        f"INSERT INTO users (id, email, name, password_hash, token_version, created_at) VALUES "
        f"(1, 'owner@mig.example', 'Owner', 'x', 1, '{now}')",
        f"INSERT INTO accounts (id, number, name, status, owner_id, credit_balance, enrollment_token_hash, created_at) "
        f"VALUES (1, 'ACC-HEAD', 'Head Ltd', 'ACTIVE', 1, 0, 'digest-1', '{now}'), "
        f"(2, 'ACC-MEMBER', 'Member Ltd', 'ACTIVE', 1, 0, 'digest-2', '{now}')",
        f"INSERT INTO link_groups (id, kind, name, created_at) VALUES (1, 'BILLING', 'Group', '{now}')",
        "INSERT INTO link_members (id, group_id, kind, account_id, is_head, friendly_name, linked_at, linked_via) "
        f"VALUES (1, 1, 'BILLING', 1, true, NULL, '{now}', 'SAME_OWNER'), "
        f"(2, 1, 'BILLING', 2, false, 'Branch', '2026-11-02 09:30:00', 'SAME_OWNER')",
        "INSERT INTO invoices (id, number, payer_account_id, link_group_id, period_start, period_end, "
        "issued_at, due_at, status, currency, subtotal, tax, total, bill_to_name, bill_to_email, created_at) VALUES "
        f"(1, 'INV-2026-09-000001', 1, NULL, '2026-09-01', '2026-09-30', '{now}', '{now}', 'PAID', 'EUR', "
        f"1000, 210, 1210, 'Owner', 'owner@mig.example', '{now}'), "
        f"(2, 'INV-2026-10-000001', 1, 1, '2026-10-01', '2026-10-31', '{now}', '{now}', 'UNPAID', 'EUR', "
        f"333, 70, 403, 'Owner', 'owner@mig.example', '{now}')",
        "INSERT INTO invoice_lines (id, invoice_id, account_id, charge_id, description, quantity, unit_price, amount) "
        "VALUES (1, 1, 1, NULL, 'Hosting', 1, 1000, 1000), (2, 2, 1, NULL, 'Hosting', 1, 300, 300), "
        "(3, 2, 2, NULL, 'Email', 1, 33, 33)",
    ]

    def seed(connection: Connection) -> None:
        for statement in rows:
            connection.execute(text(statement))

    def read(connection: Connection) -> dict[str, Any]:
        def all_of(query: str) -> list[tuple[Any, ...]]:
            return [tuple(row) for row in connection.execute(text(query)).all()]

        return {
            "invoices": all_of(
                "SELECT id, payer_number, payer_name, tax_rate_basis_points, amount_paid, "
                "paid_at IS NOT NULL, status, seller_name FROM invoices ORDER BY id"),
            "payments": all_of("SELECT invoice_id, kind, status, amount, currency FROM payments"),
            "lines": all_of("SELECT id, account_number, account_name FROM invoice_lines ORDER BY id"),
            "periods": all_of(
                "SELECT p.kind, p.account_id, p.group_id, p.head_account_id, p.valid_to, "
                "p.valid_from = m.linked_at FROM link_periods p "
                "JOIN link_members m ON m.kind = p.kind AND m.account_id = p.account_id"),
            "period_count": connection.execute(text("SELECT count(*) FROM link_periods")).scalar(),
            "accounts": all_of(
                "SELECT id, enrollment_token_hash, enrollment_token_version FROM accounts ORDER BY id"),
        }

    _run_sync(url, seed)
    upgrade_database(url)
    found = _run_sync(url, read)
    assert found["invoices"] == [
        (1, "ACC-HEAD", "Head Ltd", 2100, 1210, True, "PAID", None),
        (2, "ACC-HEAD", "Head Ltd", 2102, 0, False, "UNPAID", None),  # 70 / 333 = 21.02%
    ]
    assert found["payments"] == [(1, "OFFLINE", "SUCCEEDED", 1210, "EUR")]
    assert found["lines"] == [(1, "ACC-HEAD", "Head Ltd"), (2, "ACC-HEAD", "Head Ltd"),
                              (3, "ACC-MEMBER", "Member Ltd")]
    assert found["period_count"] == 1
    assert found["periods"] == [("BILLING", 2, 1, 1, None, True)]
    assert found["accounts"] == [(1, "digest-1", 1), (2, "digest-2", 1)]
