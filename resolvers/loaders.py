"""Per-request DataLoaders, one per relation, named by result and key.

Every loader returns results in key order, ``None`` or ``[]`` for misses, and batches all
keys requested in one tick into one statement. Loaders return read-only Core rows (attribute
access like the models, a fraction of the cost of ORM objects); code that changes a row loads
the ORM object itself (``session.get``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from aiodataloader import DataLoader
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from resolvers.audit import AUDIT_BY_ACCOUNT
from resolvers.credits import LEDGER_BY_ACCOUNT
from resolvers.invoices import INVOICES_BY_PAYER
from resolvers.notifications import NOTIFICATIONS_BY_ACCOUNT
from resolvers.pagination import child_pages_loader
from resolvers.tickets import TICKETS_BY_ACCOUNT, attachments_by_message_id
from models import (
    Account, AuditEvent, Contact, CreditLedgerEntry, Invitation, Invoice, InvoiceLine, LinkGroup,
    LinkMember, LowCreditReminder, Membership, Notification, Payment, PaymentMethod, Service, Ticket,
    TicketMessage, User,
)


def _by_key(
    session: AsyncSession, model: type[Any], column: InstrumentedAttribute[Any]
) -> DataLoader:
    """One row (or None) per key."""

    async def load(keys: Sequence[Any]) -> list[Any]:
        rows = (await session.execute(select(model.__table__).where(column.in_(keys)))).all()
        found = {getattr(row, column.key): row for row in rows}
        return [found.get(key) for key in keys]

    return DataLoader(load)


def _many_by_key(
    session: AsyncSession,
    model: type[Any],
    column: InstrumentedAttribute[Any],
    order_by: Iterable[Any] = (),
    where: Any = None,
) -> DataLoader:
    """A list of rows per key (those matching ``where``, if given), in ``order_by`` order."""
    ordering = list(order_by) or [model.id]

    async def load(keys: Sequence[Any]) -> list[list[Any]]:
        statement = select(model.__table__).where(column.in_(keys)).order_by(*ordering)
        if where is not None:
            statement = statement.where(where)
        grouped: dict[Any, list[Any]] = defaultdict(list)
        for row in (await session.execute(statement)).all():
            grouped[getattr(row, column.key)].append(row)
        return [grouped.get(key, []) for key in keys]

    return DataLoader(load)


def _groups_of(loader: DataLoader) -> DataLoader:
    """``loader``'s relation keyed by tuples of its keys: a page's children arrive as one
    future instead of one per key (a future, a callback and a loop turn each), and every
    tuple asked for in one tick is still one statement."""

    async def load(groups: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
        keys = list(dict.fromkeys(key for group in groups for key in group))
        found = dict(zip(keys, await loader.batch_load_fn(keys))) if keys else {}
        return [[found[key] for key in group] for group in groups]

    return DataLoader(load)


class Loaders:
    """Built once per request by the context getter; never shared between requests."""

    def __init__(self, session: AsyncSession) -> None:
        self.account_by_id = _by_key(session, Account, Account.id)
        self.user_by_id = _by_key(session, User, User.id)
        self.contact_by_id = _by_key(session, Contact, Contact.id)
        self.service_by_id = _by_key(session, Service, Service.id)
        self.invoice_by_id = _by_key(session, Invoice, Invoice.id)
        self.ticket_by_id = _by_key(session, Ticket, Ticket.id)
        self.ledger_entry_by_id = _by_key(session, CreditLedgerEntry, CreditLedgerEntry.id)
        self.notification_by_id = _by_key(session, Notification, Notification.id)
        self.audit_event_by_id = _by_key(session, AuditEvent, AuditEvent.id)
        self.link_group_by_id = _by_key(session, LinkGroup, LinkGroup.id)
        self.invitation_by_id = _by_key(session, Invitation, Invitation.id)
        self.low_credit_reminder_by_account_id = _by_key(
            session, LowCreditReminder, LowCreditReminder.account_id
        )
        self.link_places_by_account_id = _many_by_key(session, LinkMember, LinkMember.account_id)
        self.link_members_by_group_id = _many_by_key(session, LinkMember, LinkMember.group_id)
        self.services_by_account_id = _many_by_key(session, Service, Service.account_id)
        self.contacts_by_account_id = _many_by_key(session, Contact, Contact.account_id)
        self.memberships_by_account_id = _many_by_key(
            session, Membership, Membership.account_id
        )
        # Newest first: the pending one a manager looks for is usually the latest.
        self.invitations_by_account_id = _many_by_key(
            session, Invitation, Invitation.account_id, order_by=[Invitation.id.desc()]
        )
        self.invoice_lines_by_invoice_id = _many_by_key(
            session, InvoiceLine, InvoiceLine.invoice_id
        )
        self.payment_method_by_id = _by_key(session, PaymentMethod, PaymentMethod.id)
        # Cards still on file only: removed ones stay as rows for the payments made with them.
        self.payment_methods_by_account_id = _many_by_key(
            session, PaymentMethod, PaymentMethod.account_id, where=PaymentMethod.removed_at.is_(None)
        )
        self.payments_by_invoice_id = _many_by_key(session, Payment, Payment.invoice_id)
        self.attachments_by_message_id = attachments_by_message_id(session)
        self.messages_by_ticket_id = _many_by_key(
            session, TicketMessage, TicketMessage.ticket_id
        )
        # The same relations asked for a whole page at once (schema/prefetch.py).
        self.accounts_by_ids = _groups_of(self.account_by_id)
        self.invoice_lines_by_invoice_ids = _groups_of(self.invoice_lines_by_invoice_id)
        self.messages_by_ticket_ids = _groups_of(self.messages_by_ticket_id)
        self.services_by_account_ids = _groups_of(self.services_by_account_id)
        self.contacts_by_account_ids = _groups_of(self.contacts_by_account_id)
        # Paginated children: one statement for every parent's page (and one per totalCount).
        self.invoice_pages_by_payer_id = child_pages_loader(session, INVOICES_BY_PAYER)
        self.ledger_pages_by_account_id = child_pages_loader(session, LEDGER_BY_ACCOUNT)
        self.ticket_pages_by_account_id = child_pages_loader(session, TICKETS_BY_ACCOUNT)
        self.notification_pages_by_account_id = child_pages_loader(
            session, NOTIFICATIONS_BY_ACCOUNT
        )
        self.audit_pages_by_account_id = child_pages_loader(session, AUDIT_BY_ACCOUNT)

    def clear(self) -> None:
        """Drops every cached row. Called when the request ends: graphql-core's executor sits
        in a reference cycle that reaches the context, so without this the rows of a large
        answer would wait for a full garbage collection instead of going with the request."""
        for loader in vars(self).values():
            if isinstance(loader, DataLoader):
                loader.clear_all()
