"""Keyset pagination: opaque cursors holding the sort key of the last row seen.

Pages never use OFFSET: the cost of a page depends on its size, not on how deep it is.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from auth.errors import BadInput

Row = TypeVar("Row")

MIN_PAGE_SIZE = 1
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20


@dataclass(frozen=True)
class SortKey:
    """The columns a list is ordered by, the last one unique (the primary key)."""

    columns: tuple[InstrumentedAttribute[Any], ...]
    descending: bool = False

    def order_by(self) -> list[Any]:
        return [column.desc() if self.descending else column.asc() for column in self.columns]

    def values_of(self, row: Any) -> list[Any]:
        return [getattr(row, column.key) for column in self.columns]

    def after(self, values: Sequence[Any]) -> Any:
        """Rows strictly past ``values`` in this order (expanded, so every database indexes it)."""
        clauses = []
        for position, column in enumerate(self.columns):
            equal_prefix = [self.columns[i] == values[i] for i in range(position)]
            beyond = column < values[position] if self.descending else column > values[position]
            clauses.append(and_(*equal_prefix, beyond))
        return or_(*clauses)


@dataclass(frozen=True)
class Page(Generic[Row]):
    rows: list[Row]
    cursors: list[str]
    has_next_page: bool
    has_previous_page: bool
    count: Callable[[], Any]  # awaitable factory: totalCount is computed only when asked for


def page_size(first: int | None, default: int = DEFAULT_PAGE_SIZE) -> int:
    if first is None:
        return default
    if not MIN_PAGE_SIZE <= first <= MAX_PAGE_SIZE:
        raise BadInput(
            f"`first` must be between {MIN_PAGE_SIZE} and {MAX_PAGE_SIZE}.", field="first"
        )
    return first


def encode_cursor(values: Sequence[Any]) -> str:
    plain = [value.isoformat() if isinstance(value, datetime) else value for value in values]
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, key: SortKey) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
        if not isinstance(values, list) or len(values) != len(key.columns):
            raise ValueError("wrong shape")
        return [_typed(column, value) for column, value in zip(key.columns, values)]
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as error:
        raise BadInput("The `after` cursor is not valid.", field="after") from error


def _typed(column: InstrumentedAttribute[Any], value: Any) -> Any:
    python_type = column.type.python_type
    if python_type is datetime:
        if not isinstance(value, str):
            raise ValueError("expected a timestamp")
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise ValueError("expected a UTC timestamp")
        return moment
    if python_type is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError("expected an integer")
        return value
    if python_type is str:
        if not isinstance(value, str):
            raise ValueError("expected a string")
        return value
    raise ValueError("unsupported cursor column")


async def paginate(
    session: AsyncSession,
    statement: Select[Any],
    key: SortKey,
    *,
    first: int | None,
    after: str | None,
) -> Page[Any]:
    """One page of ``statement``'s rows (ORM entities) in ``key`` order."""
    size = page_size(first)
    paged = statement
    if after is not None:
        paged = paged.where(key.after(decode_cursor(after, key)))
    rows = list((await session.scalars(paged.order_by(*key.order_by()).limit(size + 1))).all())
    has_next = len(rows) > size
    rows = rows[:size]

    async def count() -> int:
        total = select(func.count()).select_from(statement.order_by(None).subquery())
        return int((await session.execute(total)).scalar_one())

    return Page(
        rows=rows,
        cursors=[encode_cursor(key.values_of(row)) for row in rows],
        has_next_page=has_next,
        has_previous_page=after is not None,
        count=count,
    )
