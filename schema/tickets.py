"""Support tickets."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import strawberry

from auth.permissions import Permission
from models.tickets import Ticket as TicketRow
from models.tickets import TicketMessage as MessageRow
from resolvers import ticket_mutations
from resolvers.user_errors import UserError as UserErrorValue
from schema.directives import Requires
from schema.enums import AuthorKind, Department, TicketStatus
from schema.payloads import UserError
from schema.prefetch import NOT_PREFETCHED, prefetched_or
from schema.relay import Node, decode_id_of


@strawberry.type(description="Who opened a ticket: a user of the account, or a contact by email.")
class TicketOpener:
    name: str
    email: str
    is_contact: bool


@strawberry.enum(description="How a ticket message arrived: typed in the dashboard, or sent "
                            "by email to the support or billing address.")
class TicketMessageVia(enum.Enum):
    PORTAL = "PORTAL"
    EMAIL = "EMAIL"


@strawberry.type(description="A file that came with a message by email (its name, type and size).")
class TicketAttachment:
    filename: str
    content_type: str
    size: int = strawberry.field(description="In bytes.")


@strawberry.type
class TicketMessage:
    author_name: str
    author_kind: AuthorKind
    body: str
    created_at: datetime
    via: TicketMessageVia
    pk: strawberry.Private[int]

    @strawberry.field(description="Files that came with the message by email, in their order.")
    async def attachments(self, info: strawberry.Info) -> list[TicketAttachment]:
        rows = await info.context.loaders.attachments_by_message_id.load(self.pk)
        return [TicketAttachment(filename=row.filename, content_type=row.content_type, size=row.size)
                for row in rows]

    @classmethod
    def from_model(cls, row: MessageRow) -> TicketMessage:
        return cls(
            author_name=row.author_name, author_kind=row.author_kind, body=row.body,
            created_at=row.created_at, via=TicketMessageVia(row.via), pk=row.id,
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
    # Set when the page that holds this ticket loaded its messages (schema/prefetch.py).
    prefetched_messages: strawberry.Private[list[TicketMessage]] = NOT_PREFETCHED

    @strawberry.field(description="Oldest first.")
    def messages(self, info: strawberry.Info) -> list[TicketMessage]:
        return prefetched_or(self.prefetched_messages, lambda: self._load_messages(info))  # type: ignore[return-value]

    async def _load_messages(self, info: strawberry.Info) -> list[TicketMessage]:
        rows = await info.context.loaders.messages_by_ticket_id.load(self.pk)
        return [TicketMessage.from_model(row) for row in rows]

    @classmethod
    def from_model(cls, row: TicketRow, message_rows: list[MessageRow] | None = None) -> Ticket:
        return cls(
            pk=row.id, account_id=row.account_id, number=row.number, subject=row.subject,
            department=row.department, status=row.status,
            opened_by=TicketOpener(
                name=row.opened_by_name, email=row.opened_by_email,
                is_contact=row.opened_by_contact_id is not None,
            ),
            created_at=row.created_at, updated_at=row.updated_at, cc_emails=list(row.cc_emails),
            prefetched_messages=NOT_PREFETCHED if message_rows is None
            else [TicketMessage.from_model(message) for message in message_rows],
        )


@strawberry.input
class OpenTicketInput:
    account_id: strawberry.ID
    subject: str
    body: str = strawberry.field(description="Limited to LINKGATE_MAX_TICKET_BODY_CHARS characters.")
    department: Department = Department.TECHNICAL
    cc_emails: list[str] = strawberry.field(
        default_factory=list, description="Also emailed when staff replies (at most 10)."
    )


@strawberry.input
class ReplyToTicketInput:
    ticket_id: strawberry.ID
    body: str


@strawberry.input
class CloseTicketInput:
    ticket_id: strawberry.ID


@strawberry.type
class OpenTicketPayload:
    ticket: Ticket | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ReplyToTicketPayload(OpenTicketPayload):
    pass


@strawberry.type
class CloseTicketPayload(OpenTicketPayload):
    pass


PAYLOAD_TYPES = (OpenTicketPayload, ReplyToTicketPayload, CloseTicketPayload)


def _payload(
    payload: type[OpenTicketPayload], result: TicketRow | UserErrorValue | list[UserErrorValue]
) -> Any:
    if isinstance(result, (UserErrorValue, list)):
        return payload(user_errors=UserError.list_from(result))
    return payload(ticket=Ticket.from_model(result))


async def open_ticket(info: strawberry.Info, input: OpenTicketInput) -> OpenTicketPayload:
    context = info.context
    return _payload(OpenTicketPayload, await ticket_mutations.open_ticket(
        context.session, context.access, principal=context.signed_in(),
        account_id=decode_id_of(input.account_id, "Account", field="accountId"),
        subject=input.subject, body=input.body, department=input.department,
        cc_emails=list(input.cc_emails), tunables=context.tunables,
    ))


async def reply_to_ticket(info: strawberry.Info, input: ReplyToTicketInput) -> ReplyToTicketPayload:
    context = info.context
    return _payload(ReplyToTicketPayload, await ticket_mutations.reply_to_ticket(
        context.session, context.access, principal=context.signed_in(),
        ticket_id=decode_id_of(input.ticket_id, "Ticket", field="ticketId"), body=input.body,
        tunables=context.tunables,
    ))


async def close_ticket(info: strawberry.Info, input: CloseTicketInput) -> CloseTicketPayload:
    context = info.context
    return _payload(CloseTicketPayload, await ticket_mutations.close_ticket(
        context.session, context.access, principal=context.signed_in(),
        ticket_id=decode_id_of(input.ticket_id, "Ticket", field="ticketId"),
    ))


@strawberry.type
class TicketMutations:
    open_ticket: OpenTicketPayload = strawberry.mutation(
        resolver=open_ticket, description="Needs TICKETS_WRITE on the account (customers)."
    )
    reply_to_ticket: ReplyToTicketPayload = strawberry.mutation(
        resolver=reply_to_ticket,
        description="Customers with TICKETS_WRITE, and SUPPORT/ADMIN staff. A staff reply "
        "emails the opener (and the owner), or the owner and support contacts, plus CCs.",
    )
    close_ticket: CloseTicketPayload = strawberry.mutation(
        resolver=close_ticket, description="Needs TICKETS_WRITE on the ticket's account."
    )
