"""One number that moves whenever anyone's rights may have changed.

Every replica keeps what it computed of a user's rights (``auth/access_cache.py``) and reads
this number with the caller's session on every request: when it moved, the rights are read
again. The database moves it, by triggers on every table the rights are computed from
(memberships, account owners, link members), so no writer can forget: the API, the CLI, a
migration or an operator's SQL alike.

On PostgreSQL the triggers are deferred constraint triggers: the counter row is locked only
at commit, after every other lock the transaction takes, so two transactions changing rights
can never deadlock on it; they queue for a moment at commit. On SQLite, writers are serial
anyway.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import BigInteger, CheckConstraint, DDL, event, insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base

# The tables ``auth.policy.load_access`` reads, and for each the writes that may change what
# it computes. ``accounts`` changes rights only through who owns an account.
WATCHED: dict[str, tuple[str, ...]] = {
    "memberships": ("INSERT", "UPDATE", "DELETE"),
    "accounts": ("INSERT", "DELETE", "UPDATE OF owner_id"),
    "link_members": ("INSERT", "UPDATE", "DELETE"),
}
_BUMP = "UPDATE rights_version SET version = version + 1 WHERE id = 1"
_FUNCTION = "linkgate_bump_rights_version"


class RightsVersion(Base):
    """A single row (id 1)."""

    __tablename__ = "rights_version"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


def _trigger_name(table: str, write: str) -> str:
    return f"{table}_{write.split()[0].lower()}_bumps_rights_version"


def create_statements(dialect: str) -> Sequence[str]:
    """The DDL that keeps ``rights_version`` moving (after the table exists)."""
    if dialect == "postgresql":
        statements = [
            f"CREATE OR REPLACE FUNCTION {_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN {_BUMP}; RETURN NULL; END $$"
        ]
        for table, writes in WATCHED.items():
            statements.append(
                f"CREATE CONSTRAINT TRIGGER {table}_bumps_rights_version "
                f"AFTER {' OR '.join(writes)} ON {table} DEFERRABLE INITIALLY DEFERRED "
                f"FOR EACH ROW EXECUTE FUNCTION {_FUNCTION}()"
            )
        return statements
    return [
        f"CREATE TRIGGER {_trigger_name(table, write)} AFTER {write} ON {table} "
        f"BEGIN {_BUMP}; END"
        for table, writes in WATCHED.items() for write in writes
    ]


def drop_statements(dialect: str) -> Sequence[str]:
    if dialect == "postgresql":
        return [f"DROP TRIGGER IF EXISTS {table}_bumps_rights_version ON {table}" for table in WATCHED] + [
            f"DROP FUNCTION IF EXISTS {_FUNCTION}()"
        ]
    return [f"DROP TRIGGER IF EXISTS {_trigger_name(table, write)}"
            for table, writes in WATCHED.items() for write in writes]


def install(connection: Connection) -> None:
    """The counter's row and its triggers: for the migration and for ``metadata.create_all``."""
    connection.execute(insert(RightsVersion).values(id=1, version=0))
    for statement in create_statements(connection.dialect.name):
        connection.execute(DDL(statement))


@event.listens_for(Base.metadata, "after_create")
def _install_after_create_all(target: object, connection: Connection, **kw: object) -> None:
    created = kw.get("tables") or ()
    if RightsVersion.__table__ in created:  # type: ignore[operator]
        install(connection)
