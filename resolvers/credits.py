"""Reading the credit ledger."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.credits import CreditLedgerEntry
from resolvers.pagination import Page, SortKey, paginate

NEWEST_FIRST = SortKey((CreditLedgerEntry.id,), descending=True)


async def list_ledger_entries(
    session: AsyncSession, *, account_id: int, first: int | None, after: str | None
) -> Page[CreditLedgerEntry]:
    statement = select(CreditLedgerEntry).where(CreditLedgerEntry.account_id == account_id)
    return await paginate(session, statement, NEWEST_FIRST, first=first, after=after)
