"""Reading invoices: one account's (``INVOICES_BY_PAYER``) and every account's the viewer may
read (``list_invoices``), newest first, with the same filter."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from typing import Any

from sqlalchemy import ARRAY, BigInteger, Select, any_, false, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.permissions import Permission
from auth.policy import AccessMap
from models.billing import Invoice, InvoiceStatus
from resolvers.pagination import ChildList, Page, PageBounds, SortKey, paginate

MAX_INVOICE_NUMBER = Invoice.number.type.length  # type: ignore[attr-defined]
NEWEST_FIRST = SortKey((Invoice.issued_at, Invoice.id), descending=True)


@dataclass(frozen=True)
class InvoiceFilter:
    issued_from: datetime | None = None
    issued_to: datetime | None = None
    status: InvoiceStatus | None = None
    number: str | None = None


def filter_invoices(statement: Select[Any], filter: InvoiceFilter) -> Select[Any]:
    if filter.issued_from is not None:
        statement = statement.where(Invoice.issued_at >= filter.issued_from)
    if filter.issued_to is not None:
        statement = statement.where(Invoice.issued_at < filter.issued_to)
    if filter.status is not None:
        statement = statement.where(Invoice.status == filter.status)
    if filter.number:
        number = filter.number.strip().upper()
        if len(number) > MAX_INVOICE_NUMBER:
            # No number is that long, and SQLite refuses LIKE patterns over 50,000 bytes.
            return statement.where(false())
        statement = statement.where(Invoice.number.contains(number, autoescape=True))
    return statement


# Invoices an account pays (consolidated ones included), newest first.
INVOICES_BY_PAYER = ChildList(
    Invoice, Invoice.payer_account_id, NEWEST_FIRST, narrow=filter_invoices
)


def readable_payers(access: AccessMap) -> frozenset[int] | None:
    """The accounts whose invoices the principal may read: the ``Invoice`` type's own rule,
    ``@requires(permission: INVOICES_READ)`` on the paying account. ``None`` means every
    account (BILLING and ADMIN staff); SUPPORT staff see every account but hold no
    INVOICES_READ, so only their customer-side rights count, as they do for the type's guard."""
    if access.sees_every_account and Permission.INVOICES_READ in access.staff_permissions:
        return None
    return frozenset(
        account_id for account_id in access.visible_account_ids
        if access.has(account_id, Permission.INVOICES_READ)
    )


async def list_invoices(
    session: AsyncSession,
    access: AccessMap,
    *,
    first: int | None,
    after: str | None,
    filter: InvoiceFilter | None = None,
    payers: frozenset[int] | None = None,
    bounds: PageBounds = PageBounds(),
) -> Page[Invoice]:
    """Every invoice the principal may read, all accounts together, newest first; ``payers``
    (when given) keeps those paid by these accounts only. One statement a page, whatever the
    number of accounts: the permission is the WHERE, so every page is full and the guard on
    the ``Invoice`` objects (schema/directives.py) finds nothing left to drop."""
    allowed = readable_payers(access)
    if payers is not None:
        allowed = payers if allowed is None else allowed & payers
    statement = select(Invoice)
    if allowed is not None:
        statement = statement.where(
            _among(Invoice.payer_account_id, allowed, session.get_bind().dialect.name)
        )
    if filter is not None:
        statement = filter_invoices(statement, filter)
    return await paginate(session, statement, NEWEST_FIRST, first=first, after=after, bounds=bounds)


def _among(column: Any, ids: Collection[int], dialect: str) -> Any:
    """``column IN ids`` with all the ids in ONE bound value. An ``IN`` list binds a parameter
    per id: the SQL text changes with their number (no prepared statement is reused), and
    past 32,766 ids SQLite and asyncpg refuse the statement. A viewer in a large BILLING group
    can read that many accounts' invoices; this keeps the statement one, and the same."""
    values = sorted(ids)
    if not values:
        return false()
    if dialect == "postgresql":
        return column == any_(literal(values, ARRAY(BigInteger)))
    # SQLite: the ids as a JSON array, read back as rows by ``json_each``.
    return column.in_(select(func.json_each(json.dumps(values)).table_valued("value").c.value))
