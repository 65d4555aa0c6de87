"""Keyset pagination: opaque cursors holding the sort key of the last row seen.

Pages never use OFFSET: the cost of a page depends on its size, not on how deep it is.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from aiodataloader import DataLoader
from sqlalchemy import BigInteger, Select, and_, bindparam, column, func, or_, select, true
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from auth.errors import BadInput
from resolvers.id_sets import among, dialect_of
from resolvers.validation import parse_instant, untypable_character

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
        return [getattr(row, sort_column.key) for sort_column in self.columns]

    def after(self, values: Sequence[Any]) -> Any:
        """Rows strictly past ``values`` in this order (expanded, so every database indexes it)."""
        clauses = []
        for position, sort_column in enumerate(self.columns):
            equal_prefix = [self.columns[i] == values[i] for i in range(position)]
            value = values[position]
            beyond = sort_column < value if self.descending else sort_column > value
            clauses.append(and_(*equal_prefix, beyond))
        return or_(*clauses)


@dataclass(frozen=True)
class Page(Generic[Row]):
    rows: list[Row]
    key: SortKey  # the list's order: a row's cursor is written only when someone asks for it
    has_next_page: bool
    has_previous_page: bool
    count: Callable[[], Any]  # awaitable factory: totalCount is computed only when asked for

    def cursor(self, index: int) -> str:
        return encode_cursor(self.key.values_of(self.rows[index]))

    @property
    def cursors(self) -> list[str]:
        return [self.cursor(index) for index in range(len(self.rows))]

    @property
    def end_cursor(self) -> str | None:
        return self.cursor(len(self.rows) - 1) if self.rows else None


@dataclass(frozen=True)
class PageBounds:
    """``first`` when absent, and the largest ``first`` accepted (the API allows 1–100)."""

    default: int = DEFAULT_PAGE_SIZE
    maximum: int = MAX_PAGE_SIZE

    def size(self, first: int | None) -> int:
        if first is None:
            return self.default
        if not MIN_PAGE_SIZE <= first <= self.maximum:
            raise BadInput(
                f"`first` must be between {MIN_PAGE_SIZE} and {self.maximum}.", field="first"
            )
        return first


def encode_cursor(values: Sequence[Any]) -> str:
    plain = [value.isoformat() if isinstance(value, datetime) else value for value in values]
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


# Longer than any cursor ``encode_cursor`` writes for our sort keys.
MAX_CURSOR_LENGTH = 512
_BIGINT = range(-(2**63), 2**63)


def decode_cursor(cursor: str, key: SortKey) -> list[Any]:
    """A cursor is input like any other: anyone can forge one, so every value in it must be
    one the database can compare (an integer in BIGINT, text without a NUL or a lone
    surrogate, an instant with its zone that exists in UTC), or it is bad input."""
    try:
        if len(cursor) > MAX_CURSOR_LENGTH:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
        if not isinstance(values, list) or len(values) != len(key.columns):
            raise ValueError("wrong shape")
        return [_typed(column, value) for column, value in zip(key.columns, values)]
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, RecursionError) as error:
        raise BadInput("The `after` cursor is not valid.", field="after") from error


def _typed(column: InstrumentedAttribute[Any], value: Any) -> Any:
    python_type = column.type.python_type
    if python_type is datetime:
        if not isinstance(value, str):
            raise ValueError("expected a timestamp")
        return parse_instant(value)
    if python_type is int:
        if not isinstance(value, int) or isinstance(value, bool) or value not in _BIGINT:
            raise ValueError("expected an integer")
        return value
    if python_type is str:
        if not isinstance(value, str) or untypable_character(value) is not None:
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
    bounds: PageBounds = PageBounds(),
) -> Page[Any]:
    """One page of ``statement``'s rows (ORM entities) in ``key`` order."""
    size = bounds.size(first)
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
        key=key,
        has_next_page=has_next,
        has_previous_page=after is not None,
        count=count,
    )


@dataclass(frozen=True)
class ChildList:
    """A keyset-paginated list of rows under a parent: an account's invoices, tickets, ….

    ``narrow`` applies a list's filter argument (a hashable value) to the statement.
    """

    model: type[Any]
    parent: InstrumentedAttribute[Any]
    key: SortKey
    narrow: Callable[[Select[Any], Any], Select[Any]] | None = None

    def statement(self, parent_ids: Sequence[int], filter: Any, dialect: str) -> Select[Any]:
        statement = select(self.model.__table__).where(among(self.parent, parent_ids, dialect))
        if filter is not None and self.narrow is not None:
            statement = self.narrow(statement, filter)
        return statement


@dataclass(frozen=True)
class PageRequest:
    """One parent's page: hashable, so a DataLoader can batch many parents' requests."""

    parent_id: int
    size: int
    after: tuple[Any, ...] | None
    filter: Any = None

    @classmethod
    def checked(
        cls, child_list: ChildList, parent_id: int, *, first: int | None, after: str | None,
        bounds: PageBounds, filter: Any = None,
    ) -> PageRequest:
        """Validates ``first`` and ``after`` here, so bad input fails this field alone."""
        values = None if after is None else tuple(decode_cursor(after, child_list.key))
        return cls(parent_id, bounds.size(first), values, filter)


def child_pages_loader(session: AsyncSession, child_list: ChildList) -> DataLoader:
    """Pages for many parents in one statement per distinct (size, after, filter).

    Each parent's first ``size + 1`` rows (the extra one tells whether there is a next page):
    on PostgreSQL a ``LATERAL`` join with ``LIMIT`` (one short index scan per parent), on
    SQLite ``row_number() over (partition by parent)``.
    """
    counts = child_counts_loader(session, child_list)

    async def load(requests: Sequence[PageRequest]) -> list[Page[Any]]:
        batches: dict[tuple[Any, ...], list[PageRequest]] = defaultdict(list)
        for request in requests:
            batches[(request.size, request.after, request.filter)].append(request)
        pages: dict[PageRequest, Page[Any]] = {}
        for (size, after, filter), batch in batches.items():
            rows_by_parent = await _first_rows(
                session, child_list, [request.parent_id for request in batch], size, after, filter
            )
            for request in batch:
                rows = rows_by_parent.get(request.parent_id, [])
                pages[request] = _page(child_list, request, rows, counts)
        return [pages[request] for request in requests]

    return DataLoader(load)


async def _first_rows(
    session: AsyncSession, child_list: ChildList, parent_ids: list[int], size: int,
    after: tuple[Any, ...] | None, filter: Any,
) -> dict[int, list[Any]]:
    if session.get_bind().dialect.name == "postgresql":
        statement = _lateral_pages(child_list, parent_ids, size, after, filter)
    else:
        statement = _windowed_pages(child_list, parent_ids, size, after, filter)
    grouped: dict[int, list[Any]] = defaultdict(list)
    for row in (await session.execute(statement)).all():
        grouped[getattr(row, child_list.parent.key)].append(row)
    return grouped


def _lateral_pages(
    child_list: ChildList, parent_ids: list[int], size: int, after: tuple[Any, ...] | None,
    filter: Any,
) -> Select[Any]:
    """PostgreSQL: for each parent, an index scan that stops after ``size + 1`` rows, so the
    cost follows the page even when a parent has millions of rows. The parents come as one
    array (``unnest``): the statement's text is then the same for any number of parents, so
    SQLAlchemy compiles it once and PostgreSQL prepares it once (a ``VALUES`` list was
    compiled again on every request)."""
    parents = func.unnest(bindparam("parent_ids", parent_ids, type_=ARRAY(BigInteger))) \
        .table_valued(column("parent_id", BigInteger)).render_derived(name="parents")
    per_parent = select(child_list.model.__table__).where(child_list.parent == parents.c.parent_id)
    if filter is not None and child_list.narrow is not None:
        per_parent = child_list.narrow(per_parent, filter)
    if after is not None:
        per_parent = per_parent.where(child_list.key.after(after))
    page = per_parent.order_by(*child_list.key.order_by()).limit(size + 1).lateral("page")
    return select(page).select_from(parents).join(page, true())


def _windowed_pages(
    child_list: ChildList, parent_ids: list[int], size: int, after: tuple[Any, ...] | None,
    filter: Any,
) -> Select[Any]:
    """SQLite (no LATERAL): ``row_number()`` over each parent's rows, first ``size + 1`` kept."""
    statement = child_list.statement(parent_ids, filter, "sqlite")
    if after is not None:
        statement = statement.where(child_list.key.after(after))
    position = func.row_number().over(
        partition_by=child_list.parent, order_by=child_list.key.order_by()
    )
    ranked = statement.add_columns(position.label("position")).subquery()
    return select(ranked).where(ranked.c.position <= size + 1).order_by(ranked.c.position)


def _page(child_list: ChildList, request: PageRequest, rows: list[Any], counts: DataLoader) -> Page[Any]:
    has_next = len(rows) > request.size
    rows = rows[: request.size]
    return Page(
        rows=rows,
        key=child_list.key,
        has_next_page=has_next,
        has_previous_page=request.after is not None,
        count=lambda: counts.load((request.parent_id, request.filter)),
    )


def child_counts_loader(session: AsyncSession, child_list: ChildList) -> DataLoader:
    """``totalCount`` for many parents: one grouped count per distinct filter."""

    async def load(keys: Sequence[tuple[int, Any]]) -> list[int]:
        by_filter: dict[Any, list[int]] = defaultdict(list)
        for parent_id, filter in keys:
            by_filter[filter].append(parent_id)
        totals: dict[tuple[int, Any], int] = {}
        for filter, parent_ids in by_filter.items():
            counted = child_list.statement(parent_ids, filter, dialect_of(session)).subquery()
            parent = counted.c[child_list.parent.key]
            rows = await session.execute(select(parent, func.count()).group_by(parent))
            for parent_id, total in rows.all():
                totals[(parent_id, filter)] = int(total)
        return [totals.get(key, 0) for key in keys]

    return DataLoader(load)
