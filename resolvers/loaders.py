"""Per-request DataLoaders, one per relation, named by result and key.

Every loader returns results in key order, ``None`` or ``[]`` for misses, and batches all
keys requested in one tick into one statement. Loaders return read-only Core rows (attribute
access like the models, a fraction of the cost of ORM objects); code that changes a row loads
the ORM object itself (``session.get``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Any

from aiodataloader import DataLoader
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from resolvers.audit import AUDIT_BY_ACCOUNT
from resolvers.credits import LEDGER_BY_ACCOUNT
from resolvers.id_sets import among, dialect_of
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

    dialect = dialect_of(session)

    async def load(keys: Sequence[Any]) -> list[Any]:
        rows = (await session.execute(select(model.__table__).where(among(column, keys, dialect)))).all()
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
    dialect = dialect_of(session)

    async def load(keys: Sequence[Any]) -> list[list[Any]]:
        statement = select(model.__table__).where(among(column, keys, dialect)).order_by(*ordering)
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
    """One per request (the context getter's); never shared between requests. Each loader is
    built the first time a resolver asks for it: a small request uses two or three of them."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    @cached_property
    def account_by_id(self) -> DataLoader:
        return _by_key(self._session, Account, Account.id)

    @cached_property
    def user_by_id(self) -> DataLoader:
        return _by_key(self._session, User, User.id)

    @cached_property
    def contact_by_id(self) -> DataLoader:
        return _by_key(self._session, Contact, Contact.id)

    @cached_property
    def service_by_id(self) -> DataLoader:
        return _by_key(self._session, Service, Service.id)

    @cached_property
    def invoice_by_id(self) -> DataLoader:
        return _by_key(self._session, Invoice, Invoice.id)

    @cached_property
    def ticket_by_id(self) -> DataLoader:
        return _by_key(self._session, Ticket, Ticket.id)

    @cached_property
    def ledger_entry_by_id(self) -> DataLoader:
        return _by_key(self._session, CreditLedgerEntry, CreditLedgerEntry.id)

    @cached_property
    def notification_by_id(self) -> DataLoader:
        return _by_key(self._session, Notification, Notification.id)

    @cached_property
    def audit_event_by_id(self) -> DataLoader:
        return _by_key(self._session, AuditEvent, AuditEvent.id)

    @cached_property
    def link_group_by_id(self) -> DataLoader:
        return _by_key(self._session, LinkGroup, LinkGroup.id)

    @cached_property
    def invitation_by_id(self) -> DataLoader:
        return _by_key(self._session, Invitation, Invitation.id)

    @cached_property
    def low_credit_reminder_by_account_id(self) -> DataLoader:
        return _by_key(self._session, LowCreditReminder, LowCreditReminder.account_id)

    @cached_property
    def link_places_by_account_id(self) -> DataLoader:
        return _many_by_key(self._session, LinkMember, LinkMember.account_id)

    @cached_property
    def link_members_by_group_id(self) -> DataLoader:
        return _many_by_key(self._session, LinkMember, LinkMember.group_id)

    @cached_property
    def services_by_account_id(self) -> DataLoader:
        return _many_by_key(self._session, Service, Service.account_id)

    @cached_property
    def contacts_by_account_id(self) -> DataLoader:
        return _many_by_key(self._session, Contact, Contact.account_id)

    @cached_property
    def memberships_by_account_id(self) -> DataLoader:
        return _many_by_key(self._session, Membership, Membership.account_id)

    @cached_property
    def invitations_by_account_id(self) -> DataLoader:
        # Newest first: the pending one a manager looks for is usually the latest.
        return _many_by_key(
            self._session, Invitation, Invitation.account_id, order_by=[Invitation.id.desc()]
        )

    @cached_property
    def invoice_lines_by_invoice_id(self) -> DataLoader:
        return _many_by_key(self._session, InvoiceLine, InvoiceLine.invoice_id)

    @cached_property
    def payment_method_by_id(self) -> DataLoader:
        return _by_key(self._session, PaymentMethod, PaymentMethod.id)

    @cached_property
    def payment_methods_by_account_id(self) -> DataLoader:
        # Cards still on file only: removed ones stay as rows for the payments made with them.
        return _many_by_key(
            self._session, PaymentMethod, PaymentMethod.account_id, where=PaymentMethod.removed_at.is_(None)
        )

    @cached_property
    def payments_by_invoice_id(self) -> DataLoader:
        return _many_by_key(self._session, Payment, Payment.invoice_id)

    @cached_property
    def attachments_by_message_id(self) -> DataLoader:
        return attachments_by_message_id(self._session)

    @cached_property
    def messages_by_ticket_id(self) -> DataLoader:
        return _many_by_key(self._session, TicketMessage, TicketMessage.ticket_id)

    @cached_property
    def accounts_by_ids(self) -> DataLoader:
        # The same relations asked for a whole page at once (schema/prefetch.py).
        return _groups_of(self.account_by_id)

    @cached_property
    def invoice_lines_by_invoice_ids(self) -> DataLoader:
        return _groups_of(self.invoice_lines_by_invoice_id)

    @cached_property
    def messages_by_ticket_ids(self) -> DataLoader:
        return _groups_of(self.messages_by_ticket_id)

    @cached_property
    def services_by_account_ids(self) -> DataLoader:
        return _groups_of(self.services_by_account_id)

    @cached_property
    def contacts_by_account_ids(self) -> DataLoader:
        return _groups_of(self.contacts_by_account_id)

    @cached_property
    def invoice_pages_by_payer_id(self) -> DataLoader:
        # Paginated children: one statement for every parent's page (and one per totalCount).
        return child_pages_loader(self._session, INVOICES_BY_PAYER)

    @cached_property
    def ledger_pages_by_account_id(self) -> DataLoader:
        return child_pages_loader(self._session, LEDGER_BY_ACCOUNT)

    @cached_property
    def ticket_pages_by_account_id(self) -> DataLoader:
        return child_pages_loader(self._session, TICKETS_BY_ACCOUNT)

    @cached_property
    def notification_pages_by_account_id(self) -> DataLoader:
        return child_pages_loader(self._session, NOTIFICATIONS_BY_ACCOUNT)

    @cached_property
    def audit_pages_by_account_id(self) -> DataLoader:
        return child_pages_loader(self._session, AUDIT_BY_ACCOUNT)

    def clear(self) -> None:
        """Drops every cached row. Called when the request ends: graphql-core's executor sits
        in a reference cycle that reaches the context, so without this the rows of a large
        answer would wait for a full garbage collection instead of going with the request."""
        for loader in vars(self).values():
            if isinstance(loader, DataLoader):
                loader.clear_all()
