"""One number that moves whenever anyone's rights may have changed.

Every replica keeps what it computed of a user's rights (``auth/access_cache.py``) and reads
this number with the caller's session on every request: when it moved, the rights are read
again. The database moves it, by triggers on every table the rights are computed from
(memberships, account owners, link members), so no writer can forget: the API, the CLI, a
migration or an operator's SQL alike.

On PostgreSQL the triggers are deferred constraint triggers: the counter row is locked only
at commit, after every other lock the transaction takes, so two transactions changing rights
can never deadlock on it; they queue for a moment at commit, and a transaction moves it once
however many rows it writes. ``TRUNCATE`` has statement triggers of its own, and every trigger
is ``ENABLE ALWAYS`` (replication and restores with ``session_replication_role = replica``).
On SQLite, writers are serial anyway. A transaction that changes rights under REPEATABLE READ
or SERIALIZABLE may fail at commit ("could not serialize access") when another rights change
committed since it began: retry it, as any such transaction.

The number never repeats (it is kept at or above the clock in microseconds), and the server
refuses to cache rights when a trigger is missing (``missing_triggers``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import DDL, BigInteger, CheckConstraint, event, insert, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base

# The tables ``auth.policy.load_access`` reads, and for each the writes that may change what
# it computes. ``accounts`` changes rights only through who owns an account (and its id).
WATCHED: dict[str, tuple[str, ...]] = {
    "memberships": ("INSERT", "UPDATE", "DELETE"),
    "accounts": ("INSERT", "DELETE", "UPDATE OF owner_id, id"),
    "link_members": ("INSERT", "UPDATE", "DELETE"),
}
_FUNCTION = "linkgate_bump_rights_version"


def _now_micros_sql(dialect: str) -> str:
    if dialect == "postgresql":
        return "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint"
    return "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)"


def _bump(dialect: str) -> str:
    """Up by one, and never below the clock in microseconds: the number never comes back to a
    value it had (a restored backup, the counter's row re-created), so an entry cached under
    an old value can never match again."""
    greatest = "greatest" if dialect == "postgresql" else "max"
    return (f"UPDATE rights_version SET version = {greatest}(version + 1, {_now_micros_sql(dialect)}) "
            "WHERE id = 1")


class RightsVersion(Base):
    """A single row (id 1)."""

    __tablename__ = "rights_version"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


# The counter's current value: read with the caller (auth/principals.py) and again after a
# user's rights were computed (auth/access_cache.py).
CURRENT_VERSION = select(RightsVersion.version).where(RightsVersion.id == 1)


def trigger_names(dialect: str) -> dict[str, str]:
    """Each trigger that keeps the counter moving, by name, with its table."""
    if dialect == "postgresql":
        return {**{f"{table}_bumps_rights_version": table for table in WATCHED},
                **{f"{table}_truncate_bumps_rights_version": table for table in WATCHED}}
    return {f"{table}_{write.split()[0].lower()}_bumps_rights_version": table
            for table, writes in WATCHED.items() for write in writes}


def create_statements(dialect: str) -> Sequence[str]:
    """The DDL that keeps ``rights_version`` moving (after the table exists)."""
    if dialect != "postgresql":
        return [
            f"CREATE TRIGGER {table}_{write.split()[0].lower()}_bumps_rights_version "
            f"AFTER {write} ON {table} BEGIN {_bump(dialect)}; END"
            for table, writes in WATCHED.items() for write in writes
        ]
    # Once per transaction however many rows it writes: each update of one row in one
    # transaction costs more than the last (a bulk load of 50,000 memberships took 14 s to
    # commit when every row bumped). The search path is fixed where the tables were created.
    statements = [
        f"CREATE OR REPLACE FUNCTION {_FUNCTION}() RETURNS trigger LANGUAGE plpgsql "
        "SET search_path FROM CURRENT AS $$ BEGIN "
        "IF current_setting('linkgate.rights_bumped', true) IS DISTINCT FROM txid_current()::text THEN "
        f"{_bump(dialect)}; "
        "PERFORM set_config('linkgate.rights_bumped', txid_current()::text, true); "
        "END IF; RETURN NULL; END $$"
    ]
    for table, writes in WATCHED.items():
        statements += [
            f"CREATE CONSTRAINT TRIGGER {table}_bumps_rights_version "
            f"AFTER {' OR '.join(writes)} ON {table} DEFERRABLE INITIALLY DEFERRED "
            f"FOR EACH ROW EXECUTE FUNCTION {_FUNCTION}()",
            # Row triggers never see a TRUNCATE.
            f"CREATE TRIGGER {table}_truncate_bumps_rights_version AFTER TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {_FUNCTION}()",
        ]
        # Also for replication and restores that set session_replication_role = replica.
        statements += [f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {name}"
                       for name, on in trigger_names(dialect).items() if on == table]
    return statements


def drop_statements(dialect: str) -> Sequence[str]:
    if dialect == "postgresql":
        return [f"DROP TRIGGER IF EXISTS {name} ON {table}" for name, table in trigger_names(dialect).items()] + [
            f"DROP FUNCTION IF EXISTS {_FUNCTION}()"
        ]
    return [f"DROP TRIGGER IF EXISTS {name}" for name in trigger_names(dialect)]


def install(connection: Connection) -> None:
    """The counter's row and its triggers: for the migration and for ``metadata.create_all``.
    The counter starts at the clock, so re-installing it never repeats an earlier value."""
    connection.execute(insert(RightsVersion).values(id=1, version=int(time.time() * 1_000_000)))
    for statement in create_statements(connection.dialect.name):
        connection.execute(DDL(statement))


def missing_triggers(connection: Connection) -> list[str]:
    """The triggers this database lacks (or has disabled): a later migration that rebuilds a
    table (SQLite's batch mode) or a restore without triggers would silently stop the
    counter. The server then stops caching rights rather than serve stale ones."""
    expected = trigger_names(connection.dialect.name)
    if connection.dialect.name == "postgresql":
        present = {(name, table) for name, table in connection.execute(text(
            "SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE t.tgenabled = 'A' AND c.relnamespace = current_schema()::regnamespace"
        ))}
    else:
        present = {(name, table) for name, table in connection.execute(text(
            "SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'"))}
    missing = sorted(name for name, table in expected.items() if (name, table) not in present)
    if connection.execute(text("SELECT count(*) FROM rights_version WHERE id = 1")).scalar_one() != 1:
        missing.append("the rights_version row")
    return missing


@event.listens_for(Base.metadata, "after_create")
def _install_after_create_all(target: object, connection: Connection, **kw: object) -> None:
    created = kw.get("tables") or ()
    if RightsVersion.__table__ in created:  # type: ignore[operator]
        install(connection)
