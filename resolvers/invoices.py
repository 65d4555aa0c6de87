"""Reading invoices."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from typing import Any

from sqlalchemy import Select, false

from models.billing import Invoice, InvoiceStatus
from resolvers.pagination import ChildList, SortKey

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
