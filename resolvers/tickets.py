"""Reading tickets."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.tickets import Ticket, TicketStatus
from resolvers.pagination import Page, SortKey, paginate

NEWEST_FIRST = SortKey((Ticket.id,), descending=True)


async def list_tickets(
    session: AsyncSession,
    *,
    account_id: int,
    first: int | None,
    after: str | None,
    status: TicketStatus | None = None,
) -> Page[Ticket]:
    statement = select(Ticket).where(Ticket.account_id == account_id)
    if status is not None:
        statement = statement.where(Ticket.status == status)
    return await paginate(session, statement, NEWEST_FIRST, first=first, after=after)
