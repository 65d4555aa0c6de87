"""Accounts, memberships and the viewer."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import strawberry

from auth.permissions import ALL, Permission, parse_permissions, sorted_permissions
from models.accounts import Account as AccountRow
from models.accounts import Membership as MembershipRow
from resolvers import accounts as account_resolvers
from resolvers.audit import AUDIT_BY_ACCOUNT
from resolvers.credits import LEDGER_BY_ACCOUNT
from resolvers.invoices import INVOICES_BY_PAYER, list_invoices
from resolvers.notifications import NOTIFICATIONS_BY_ACCOUNT
from resolvers.pagination import PageRequest
from resolvers.tickets import TICKETS_BY_ACCOUNT
from schema.audit import AuditEvent
from schema.context import Context
from schema.contacts import Contact
from schema.credits import CreditLedgerEntry, LowCreditReminder
from schema.directives import gated
from schema.enums import AccountStatus, TicketStatus
from schema.invoices import Invoice, InvoiceFilter, invoice_connection
from schema.notifications import Notification
from schema.prefetch import NOT_PREFETCHED, prefetch, prefetched_or
from schema.relay import Connection, Node
from schema.services import Service
from schema.tickets import Ticket
from schema.users import User

if TYPE_CHECKING:
    from schema.invitations import Invitation
    from schema.links import LinkGroup
    from schema.payments import PaymentMethod

P = Permission


@strawberry.type(description="A user's rights on an account: the owner, or a sub-account.")
class Membership:
    is_owner: bool
    permissions: list[Permission]
    user_pk: strawberry.Private[int]
    account_pk: strawberry.Private[int]

    @strawberry.field
    async def user(self, info: strawberry.Info) -> User:
        return User.from_model(await info.context.loaders.user_by_id.load(self.user_pk))

    @strawberry.field
    async def account(self, info: strawberry.Info) -> Account:
        return Account.from_model(await info.context.loaders.account_by_id.load(self.account_pk))

    @classmethod
    def owner_of(cls, account: AccountRow) -> Membership:
        return cls(
            is_owner=True, permissions=sorted_permissions(ALL),
            user_pk=account.owner_id, account_pk=account.id,
        )

    @classmethod
    def from_model(cls, row: MembershipRow) -> Membership:
        return cls(
            is_owner=False, permissions=sorted_permissions(parse_permissions(row.permissions)),
            user_pk=row.user_id, account_pk=row.account_id,
        )


@strawberry.type(description="A billable customer account.")
class Account(Node):
    number: str
    name: str
    status: AccountStatus
    owner_pk: strawberry.Private[int]
    balance: strawberry.Private[int]
    # Set by the page that lists this account, when the query selects them (schema/prefetch.py).
    prefetched_services: strawberry.Private[list[Service]] = NOT_PREFETCHED
    prefetched_contacts: strawberry.Private[list[Contact]] = NOT_PREFETCHED

    @strawberry.field(
        description="Your effective permissions here, so a client can hide what you may not use."
    )
    def viewer_permissions(self, info: strawberry.Info) -> list[Permission]:
        return sorted_permissions(info.context.access.permissions_on(self.pk))

    @strawberry.field
    def viewer_is_owner(self, info: strawberry.Info) -> bool:
        return info.context.access.is_owner(self.pk)

    @strawberry.field(description="The groups this account is in, as head or member.")
    async def link_groups(
        self, info: strawberry.Info
    ) -> list[Annotated[LinkGroup, strawberry.lazy("schema.links")]]:
        from schema.links import can_see_link_group, load_link_group, prefetch_accounts

        places = await info.context.loaders.link_places_by_account_id.load(self.pk)
        groups = await asyncio.gather(*(load_link_group(info, place.group_id) for place in places))
        # A head reached through a group you see via a member shows that group, not its others.
        shown = [
            group for group in groups
            if group is not None and await can_see_link_group(info, group)
        ]
        await prefetch_accounts(info, shown)
        return shown

    @gated(P.CREDITS_READ)
    def credit_balance(self) -> int | None:
        return self.balance

    @gated(P.CREDITS_READ)
    async def credit_ledger(
        self, info: strawberry.Info, first: int | None = None, after: str | None = None
    ) -> Connection[CreditLedgerEntry] | None:
        request = PageRequest.checked(
            LEDGER_BY_ACCOUNT, self.pk, first=first, after=after, bounds=info.context.tunables.pages
        )
        page = await info.context.loaders.ledger_pages_by_account_id.load(request)
        return Connection.from_page(page, CreditLedgerEntry.from_model)

    @gated(P.CREDITS_READ)
    async def low_credit_reminder(self, info: strawberry.Info) -> LowCreditReminder | None:
        row = await info.context.loaders.low_credit_reminder_by_account_id.load(self.pk)
        return LowCreditReminder.from_model(row)

    @gated(P.INVOICES_READ)
    async def billing_contact(self, info: strawberry.Info) -> Contact | None:
        contacts = await info.context.loaders.contacts_by_account_id.load(self.pk)
        row = next((contact for contact in contacts if contact.is_billing_contact), None)
        return None if row is None else Contact.from_model(row)

    @gated(P.INVOICES_READ, description="Invoices this account pays, newest first.")
    async def invoices(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        filter: InvoiceFilter | None = None,
    ) -> Connection[Invoice] | None:
        request = PageRequest.checked(
            INVOICES_BY_PAYER, self.pk, first=first, after=after,
            bounds=info.context.tunables.pages,
            filter=filter.to_values() if filter is not None else None,
        )
        page = await info.context.loaders.invoice_pages_by_payer_id.load(request)
        return await invoice_connection(info, page)

    @gated(P.INVOICES_PAY, description="Cards on file that can pay this account's invoices.")
    async def payment_methods(
        self, info: strawberry.Info
    ) -> list[Annotated[PaymentMethod, strawberry.lazy("schema.payments")]] | None:
        from schema.payments import PaymentMethod

        rows = await info.context.loaders.payment_methods_by_account_id.load(self.pk)
        return [PaymentMethod.from_model(row) for row in rows]

    @gated(P.LINKS_MANAGE, description="Proves control of this account when linking it "
           "(also printed on its invoices). `rotateEnrollmentToken` replaces it.")
    async def enrollment_token(self, info: strawberry.Info) -> str | None:
        row = await info.context.loaders.account_by_id.load(self.pk)
        return account_resolvers.current_enrollment_token(row, info.context.tunables.enrollment_key)

    @gated(P.SERVICES_READ)
    def services(self, info: strawberry.Info) -> list[Service] | None:
        return prefetched_or(self.prefetched_services, lambda: self._load_services(info))  # type: ignore[return-value]

    async def _load_services(self, info: strawberry.Info) -> list[Service]:
        rows = await info.context.loaders.services_by_account_id.load(self.pk)
        return [Service.from_model(row) for row in rows]

    @gated(P.TICKETS_READ, description="Every ticket of the account, newest first.")
    async def tickets(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        status: TicketStatus | None = None,
    ) -> Connection[Ticket] | None:
        request = PageRequest.checked(
            TICKETS_BY_ACCOUNT, self.pk, first=first, after=after,
            bounds=info.context.tunables.pages, filter=status
        )
        loaders = info.context.loaders
        page = await loaders.ticket_pages_by_account_id.load(request)
        messages = await prefetch(info, ("edges", "node", "messages"), loaders.messages_by_ticket_ids,
                                  [row.id for row in page.rows])
        return Connection.from_page(page, lambda row: Ticket.from_model(row, messages.get(row.id)))

    @gated(P.CONTACTS_READ)
    def contacts(self, info: strawberry.Info) -> list[Contact] | None:
        return prefetched_or(self.prefetched_contacts, lambda: self._load_contacts(info))  # type: ignore[return-value]

    async def _load_contacts(self, info: strawberry.Info) -> list[Contact]:
        rows = await info.context.loaders.contacts_by_account_id.load(self.pk)
        return [Contact.from_model(row) for row in rows]

    @gated(P.CONTACTS_MANAGE, description="The owner first, then every sub-account.")
    async def members(self, info: strawberry.Info) -> list[Membership] | None:
        account = await info.context.loaders.account_by_id.load(self.pk)
        rows = await info.context.loaders.memberships_by_account_id.load(self.pk)
        return [Membership.owner_of(account)] + [Membership.from_model(row) for row in rows]

    @gated(
        P.CONTACTS_MANAGE,
        description="Invitations to become a sub-account, newest first, whatever their status.",
    )
    async def invitations(
        self, info: strawberry.Info
    ) -> list[Annotated[Invitation, strawberry.lazy("schema.invitations")]] | None:
        from schema.invitations import Invitation

        rows = await info.context.loaders.invitations_by_account_id.load(self.pk)
        return [Invitation.from_model(row) for row in rows]

    @gated(P.EMAILS_READ, description="Emails sent about this account, newest first.")
    async def notifications(
        self, info: strawberry.Info, first: int | None = None, after: str | None = None
    ) -> Connection[Notification] | None:
        request = PageRequest.checked(
            NOTIFICATIONS_BY_ACCOUNT, self.pk, first=first, after=after, bounds=info.context.tunables.pages
        )
        page = await info.context.loaders.notification_pages_by_account_id.load(request)
        return Connection.from_page(page, Notification.from_model)

    @gated(P.AUDIT_READ, description="Changes made to this account, newest first.")
    async def audit_log(
        self, info: strawberry.Info, first: int | None = None, after: str | None = None
    ) -> Connection[AuditEvent] | None:
        request = PageRequest.checked(
            AUDIT_BY_ACCOUNT, self.pk, first=first, after=after, bounds=info.context.tunables.pages
        )
        page = await info.context.loaders.audit_pages_by_account_id.load(request)
        return Connection.from_page(page, AuditEvent.from_model)

    @classmethod
    def from_model(cls, row: AccountRow) -> Account:
        return cls(
            pk=row.id, account_id=row.id, number=row.number, name=row.name, status=row.status,
            owner_pk=row.owner_id, balance=row.credit_balance,
        )


@strawberry.type(description="The signed-in user and what it can reach.")
class Viewer:
    user_pk: strawberry.Private[int]

    @strawberry.field
    async def user(self, info: strawberry.Info) -> User:
        return User.from_model(await info.context.loaders.user_by_id.load(self.user_pk))

    @strawberry.field(description="Accounts you can see, by name; `search` matches name, number or a member's "
                      "friendly name in a link group.")
    async def accounts(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        search: str | None = None,
    ) -> Connection[Account]:
        context = info.context
        page = await account_resolvers.list_accounts(
            context.session, context.access, first=first, after=after, search=search,
            bounds=context.tunables.pages,
        )
        ids = [row.id for row in page.rows]
        # Lists without arguments come with the page; the fields' guards still decide what
        # is shown, so the rows of an account you may not read them on are never returned.
        services, contacts = await asyncio.gather(
            prefetch(info, ("edges", "node", "services"), context.loaders.services_by_account_ids, ids),
            prefetch(info, ("edges", "node", "contacts"), context.loaders.contacts_by_account_ids, ids),
        )

        def account(row: AccountRow) -> Account:
            account = Account.from_model(row)
            if row.id in services:
                account.prefetched_services = [Service.from_model(item) for item in services[row.id]]
            if row.id in contacts:
                account.prefetched_contacts = [Contact.from_model(item) for item in contacts[row.id]]
            return account

        return Connection.from_page(page, account)

    @strawberry.field(description="One account you can see, by number; null otherwise.")
    async def account(self, info: strawberry.Info, number: str) -> Account | None:
        row = await account_resolvers.find_account_by_number(
            info.context.session, info.context.access, number
        )
        return None if row is None else Account.from_model(row)

    @strawberry.field(
        description="Every invoice you may read (INVOICES_READ on the account that pays it), "
        "all accounts together, newest first: one screen instead of `invoices` on each account. "
        "`filter.accountIds` narrows it to some paying accounts."
    )
    async def invoices(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        filter: InvoiceFilter | None = None,
    ) -> Connection[Invoice]:
        context = info.context
        page = await list_invoices(
            context.session, context.access, first=first, after=after,
            filter=filter.row_values() if filter is not None else None,
            payers=filter.payer_pks() if filter is not None else None,
            bounds=context.tunables.pages,
        )
        return await invoice_connection(info, page)


def hides_account(context: Context, account_id: int) -> bool:
    """Whether an account reached through a relation shows as null (no error) to the viewer."""
    return context.enforce_permissions and not context.access.can_see(account_id)


async def visible_account(info: strawberry.Info, account_id: int) -> Account | None:
    """An account reached through a relation, or null when ``hides_account``."""
    context = info.context
    if hides_account(context, account_id):
        return None
    row = await context.loaders.account_by_id.load(account_id)
    return None if row is None else Account.from_model(row)


async def membership_of(info: strawberry.Info, *, account_id: int, user_id: int) -> Membership | None:
    """The membership (owner included) of one user on one account, through the loaders."""
    account = await info.context.loaders.account_by_id.load(account_id)
    if account is not None and account.owner_id == user_id:
        return Membership.owner_of(account)
    rows = await info.context.loaders.memberships_by_account_id.load(account_id)
    row = next((row for row in rows if row.user_id == user_id), None)
    return None if row is None else Membership.from_model(row)
