"""Reading tickets."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from aiodataloader import DataLoader
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.tickets import Ticket, TicketAttachment, TicketStatus
from resolvers.id_sets import among, dialect_of
from resolvers.pagination import ChildList, SortKey

NEWEST_FIRST = SortKey((Ticket.id,), descending=True)


def filter_tickets(statement: Select[Any], status: TicketStatus) -> Select[Any]:
    return statement.where(Ticket.status == status)


# Every ticket of an account, newest first.
TICKETS_BY_ACCOUNT = ChildList(Ticket, Ticket.account_id, NEWEST_FIRST, narrow=filter_tickets)


def attachments_by_message_id(session: AsyncSession) -> DataLoader:
    """The files that came with each message, in the order they came: name, type and size,
    never the bytes (a page of messages must not read every file)."""
    table = TicketAttachment.__table__.c
    dialect = dialect_of(session)

    async def load(keys: Sequence[int]) -> list[list[Any]]:
        statement = (
            select(table.id, table.ticket_message_id, table.filename, table.content_type, table.size)
            .where(among(table.ticket_message_id, keys, dialect)).order_by(table.id)
        )
        grouped: dict[int, list[Any]] = defaultdict(list)
        for row in (await session.execute(statement)).all():
            grouped[row.ticket_message_id].append(row)
        return [grouped.get(key, []) for key in keys]

    return DataLoader(load)
