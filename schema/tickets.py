"""Support tickets."""

from __future__ import annotations

from datetime import datetime

import strawberry

from auth.permissions import Permission
from models.tickets import Ticket as TicketRow
from models.tickets import TicketMessage as MessageRow
from schema.directives import Requires
from schema.enums import AuthorKind, Department, TicketStatus
from schema.relay import Node


@strawberry.type(description="Who opened a ticket: a user of the account, or a contact by email.")
class TicketOpener:
    name: str
    email: str
    is_contact: bool


@strawberry.type
class TicketMessage:
    author_name: str
    author_kind: AuthorKind
    body: str
    created_at: datetime

    @classmethod
    def from_model(cls, row: MessageRow) -> TicketMessage:
        return cls(
            author_name=row.author_name, author_kind=row.author_kind, body=row.body,
            created_at=row.created_at,
        )


@strawberry.type(directives=[Requires(permission=Permission.TICKETS_READ)])
class Ticket(Node):
    number: str
    subject: str
    department: Department
    status: TicketStatus
    opened_by: TicketOpener
    created_at: datetime
    updated_at: datetime
    cc_emails: list[str]

    @strawberry.field(description="Oldest first.")
    async def messages(self, info: strawberry.Info) -> list[TicketMessage]:
        rows = await info.context.loaders.messages_by_ticket_id.load(self.pk)
        return [TicketMessage.from_model(row) for row in rows]

    @classmethod
    def from_model(cls, row: TicketRow) -> Ticket:
        return cls(
            pk=row.id, account_id=row.account_id, number=row.number, subject=row.subject,
            department=row.department, status=row.status,
            opened_by=TicketOpener(
                name=row.opened_by_name, email=row.opened_by_email,
                is_contact=row.opened_by_contact_id is not None,
            ),
            created_at=row.created_at, updated_at=row.updated_at, cc_emails=list(row.cc_emails),
        )
