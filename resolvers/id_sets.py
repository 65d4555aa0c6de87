"""``column IN (ids)`` written so that the statement's text never depends on the ids.

An ``IN`` list binds one parameter per id: SQLAlchemy renders the list again on every
execution, the SQL text changes with the number of ids (PostgreSQL prepares a new statement
for each length), and past 32,766 ids SQLite and asyncpg refuse the statement. Here all the
ids travel in ONE bound value: a ``BIGINT[]`` on PostgreSQL, a JSON array read back by
``json_each`` on SQLite. Loaders batch hundreds of keys per statement, so this is on every
dashboard's path.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from sqlalchemy import ARRAY, BigInteger, any_, false, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession


def among(column: Any, ids: Collection[int], dialect: str) -> Any:
    """``column IN ids`` for integer ids; ``dialect`` is the session's (``dialect_of``)."""
    values = sorted(ids)
    if not values:
        return false()
    if dialect == "postgresql":
        return column == any_(literal(values, ARRAY(BigInteger)))
    return column.in_(select(func.json_each(json.dumps(values)).table_valued("value").c.value))


def dialect_of(session: AsyncSession) -> str:
    return session.get_bind().dialect.name
