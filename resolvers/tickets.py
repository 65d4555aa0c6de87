"""Reading tickets."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select

from models.tickets import Ticket, TicketStatus
from resolvers.pagination import ChildList, SortKey

NEWEST_FIRST = SortKey((Ticket.id,), descending=True)


def filter_tickets(statement: Select[Any], status: TicketStatus) -> Select[Any]:
    return statement.where(Ticket.status == status)


# Every ticket of an account, newest first.
TICKETS_BY_ACCOUNT = ChildList(Ticket, Ticket.account_id, NEWEST_FIRST, narrow=filter_tickets)
