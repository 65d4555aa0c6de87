"""Reading invoices."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.billing import Invoice, InvoiceStatus
from resolvers.pagination import Page, SortKey, paginate

NEWEST_FIRST = SortKey((Invoice.issued_at, Invoice.id), descending=True)


@dataclass(frozen=True)
class InvoiceFilter:
    issued_from: datetime | None = None
    issued_to: datetime | None = None
    status: InvoiceStatus | None = None
    number: str | None = None


async def list_invoices(
    session: AsyncSession,
    *,
    account_id: int,
    first: int | None,
    after: str | None,
    filter: InvoiceFilter | None = None,
) -> Page[Invoice]:
    """Invoices the account pays (consolidated ones included), newest first."""
    statement = select(Invoice).where(Invoice.payer_account_id == account_id)
    if filter is not None:
        if filter.issued_from is not None:
            statement = statement.where(Invoice.issued_at >= filter.issued_from)
        if filter.issued_to is not None:
            statement = statement.where(Invoice.issued_at < filter.issued_to)
        if filter.status is not None:
            statement = statement.where(Invoice.status == filter.status)
        if filter.number:
            statement = statement.where(Invoice.number.contains(filter.number.strip().upper(), autoescape=True))
    return await paginate(session, statement, NEWEST_FIRST, first=first, after=after)
