"""Reading invoices: one account's (``INVOICES_BY_PAYER``) and every account's the viewer may
read (``list_invoices``), newest first, with the same filter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from typing import Any

from sqlalchemy import Select, false, select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.permissions import Permission
from auth.policy import AccessMap
from models.billing import Invoice, InvoiceStatus
from resolvers.id_sets import among, dialect_of
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
            among(Invoice.payer_account_id, allowed, dialect_of(session))
        )
    if filter is not None:
        statement = filter_invoices(statement, filter)
    return await paginate(session, statement, NEWEST_FIRST, first=first, after=after, bounds=bounds)
