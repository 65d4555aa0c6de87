"""``Subscription``: live updates for dashboards, over graphql-transport-ws on ``/graphql``.

Each event names only ids (``resolvers/live_events.py``). At delivery the subscriber's
session and rights are read again in a new database session (``Context.rebind``) and the
event is dropped unless the subscriber holds the field's permission on the event's account:
the same ``AccessMap.has`` that ``@requires`` asks on a query. The payload is then built from
the rows as they are now, field by field, through the same types and guards as any query.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated

import strawberry

from auth.errors import BadInput, NotFound, Unauthenticated
from auth.permissions import Permission
from resolvers.live_events import LiveEvent, Topic, matches
from schema.accounts import Account
from schema.context import FELL_BEHIND, SESSION_ENDED, Context
from schema.credits import CreditLedgerEntry
from schema.directives import Requires, field_requirement, object_error
from schema.invoices import Invoice
from schema.relay import decode_id_of
from schema.tickets import Ticket, TicketMessage


@strawberry.type(description="A ticket that changed: opened, answered (the new message), closed.")
class TicketEvent:
    ticket: Ticket
    message: TicketMessage | None = strawberry.field(
        description="The message that arrived, when the change was a message; null when the "
        "ticket was closed.")


@strawberry.type(description="A credit balance that changed, with the ledger entry that changed it.")
class CreditEvent:
    account: Account
    entry: CreditLedgerEntry


AccountFilter = Annotated[strawberry.ID | None, strawberry.argument(
    description="Only events of this account (one you can see); all your accounts when omitted.")]


@strawberry.type
class Subscription:
    @strawberry.subscription(
        directives=[Requires(permission=Permission.TICKETS_READ)],
        description="A ticket was opened, got a message (from the portal or by email) or was "
        "closed, on an account where you may read tickets.",
    )
    async def ticket_updated(
        self, info: strawberry.Info,
        account_id: AccountFilter = None,
    ) -> AsyncGenerator[TicketEvent, None]:
        async for event in _deliveries(info, {Topic.TICKET}, account_id):
            loaders = info.context.loaders
            ticket = await loaders.ticket_by_id.load(event.subject_id)
            if ticket is None:
                continue
            message = None
            if event.detail_id is not None:
                rows = await loaders.messages_by_ticket_id.load(ticket.id)
                message = next((TicketMessage.from_model(row) for row in rows if row.id == event.detail_id), None)
            shown = Ticket.from_model(ticket)
            if object_error(info.context, shown) is None:
                yield TicketEvent(ticket=shown, message=message)

    @strawberry.subscription(
        directives=[Requires(permission=Permission.CREDITS_READ)],
        description="A credit balance changed (a purchase, a transfer, usage) on an account where "
        "you may read credits.",
    )
    async def credit_balance_changed(
        self, info: strawberry.Info,
        account_id: AccountFilter = None,
    ) -> AsyncGenerator[CreditEvent, None]:
        async for event in _deliveries(info, {Topic.CREDIT}, account_id):
            loaders = info.context.loaders
            entry = await loaders.ledger_entry_by_id.load(event.subject_id)
            account = await loaders.account_by_id.load(event.account_id)
            if entry is None or account is None:
                continue
            shown = CreditLedgerEntry.from_model(entry)
            if object_error(info.context, shown) is None:
                yield CreditEvent(account=Account.from_model(account), entry=shown)

    @strawberry.subscription(
        directives=[Requires(permission=Permission.INVOICES_READ)],
        description="An invoice was issued to an account where you may read invoices.",
    )
    async def invoice_issued(
        self, info: strawberry.Info,
        account_id: AccountFilter = None,
    ) -> AsyncGenerator[Invoice, None]:
        async for invoice in _invoices(info, Topic.INVOICE_ISSUED, account_id):
            yield invoice

    @strawberry.subscription(
        directives=[Requires(permission=Permission.INVOICES_READ)],
        description="An invoice was paid (in full or in part) or voided, on an account where "
        "you may read invoices.",
    )
    async def invoice_updated(
        self, info: strawberry.Info,
        account_id: AccountFilter = None,
    ) -> AsyncGenerator[Invoice, None]:
        async for invoice in _invoices(info, Topic.INVOICE_UPDATED, account_id):
            yield invoice


async def _invoices(info: strawberry.Info, topic: Topic, account_id: strawberry.ID | None) -> AsyncIterator[Invoice]:
    context: Context = info.context
    async for event in _deliveries(info, {topic}, account_id):
        row = await context.loaders.invoice_by_id.load(event.subject_id)
        if row is None:
            continue
        invoice = Invoice.from_model(row)
        # The type's own @requires, as every path to an Invoice checks it.
        if object_error(context, invoice) is None:
            yield invoice


async def _deliveries(
    info: strawberry.Info, topics: set[Topic], account_id: strawberry.ID | None,
) -> AsyncIterator[LiveEvent]:
    """The events this subscriber may hear of, each while a fresh session is bound to the
    context (the payload is built inside it). The permission is the field's own printed
    ``@requires``: what the schema says is what is checked. Ends quietly when the socket's
    session ended (the socket is closed with 4401) or the subscriber fell too far behind."""
    context: Context = info.context
    permission = _required(info)
    socket = context.socket
    if socket is None:
        raise BadInput("Subscriptions run over a WebSocket on /graphql (graphql-transport-ws).")
    only = decode_id_of(account_id, "Account", field="accountId") if account_id is not None else None
    if only is not None and not context.access.can_see(only):
        raise NotFound("No such account.")
    wanted = frozenset(topics)
    read_at = time.monotonic()  # when ``context.access`` was last read (subscribing read it)
    stream = socket.feed.open_stream()
    stream.on_overflow = lambda: socket.end(FELL_BEHIND, "Too many events were waiting for this socket; reconnect.")
    try:
        async for event in stream:
            if not matches(event, wanted, only):
                continue
            allowed = not context.enforce_permissions or context.access.has(event.account_id, permission)
            if not allowed and time.monotonic() - read_at < socket.recheck_seconds:
                # Not allowed a moment ago: passed by without a database session (a grant since
                # then is heard once the rights are read again, within ``recheck_seconds``).
                # What was allowed is never trusted: it is read again before every delivery.
                continue
            async with socket.sessions() as session:
                try:
                    await context.rebind(session)
                except Unauthenticated as error:
                    socket.end(SESSION_ENDED, error.message)
                    return
                read_at = time.monotonic()
                if not context.enforce_permissions or context.access.has(event.account_id, permission):
                    yield event
    finally:
        stream.close()


def _required(info: strawberry.Info) -> Permission:
    """The permission of the subscription field being resolved (its ``@requires``)."""
    permission = field_requirement(info._field)
    assert permission is not None, f"subscription field {info.field_name} has no @requires"
    return permission
