"""The demo data set behind ``linkgate serve --demo`` (DESIGN §3: the demo logins are contract).

Olivia Northwind owns four accounts. "Northwind Head Office" heads both link groups:

- BILLING group "Northwind consolidated billing": Head Office (head), Retail, Logistics;
- MANAGEMENT group "Northwind operations": Head Office (head), Logistics;
- Northwind Labs is linked to nothing (it gets its own invoices, and no permission flows to it).

So Logistics is the account "in both". With that shape every rule of the gateway is visible
from the demo logins: bill (billing family on the head office) sees the billing half of Retail
and Logistics but nothing of Labs; dev (technical rights on the head office) sees Logistics'
services through the MANAGEMENT link but not Retail's; eve sees only Contoso.

The story runs January–November 2026 with fixed timestamps so the demo is the same on every
run: invoices issued for 2026-08..2026-10 (August and September paid, the head office's
October consolidated invoice unpaid), a November credit purchase still waiting for the next
invoice run, and a head-office usage on 6 November that crossed the low-credit threshold and
queued a reminder that the delivery worker has not sent yet.

Payments: olivia keeps a Visa card (the test gateway's ``tok_visa``) on the head office, which
paid its August and September consolidated invoices; the other paid invoices were bank
transfers recorded by finance; Labs' September invoice was voided (its fee waived). The
enrollment tokens are derived like everywhere else (auth/enrollment.py), so each invoice PDF
prints the token that links its account.

Tickets by email: the head office's contacts write to the support address, as ``linkgate
receive-mail`` records it (an ``inbound_messages`` row per message, the messages ``via`` EMAIL):
TKT-100002 (closed) from the reception, and TKT-100005 from the support contact, with the
backup report attached, answered by the agent and replied to by email.
"""

from __future__ import annotations

import asyncio
import calendar
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.passwords import hash_password
from auth.permissions import BILLING_FAMILY, Permission, permission_names
from models.accounts import Account, Membership
from models.audit import AuditEvent
from models.billing import Charge, ChargeKind, InvoiceStatus
from models.contacts import Contact, EmailPreference
from models.credits import CreditLedgerEntry, LedgerEntryKind, LowCreditReminder
from models.links import LinkGroup, LinkKind, LinkMember, LinkMethod, LinkPeriod
from models.notifications import Notification
from models.payments import Payment, PaymentKind, PaymentMethod, PaymentStatus
from models.services import Service, ServiceStatus
from models.tickets import (
    AuthorKind, Department, InboundMessage, Ticket, TicketAttachment, TicketMessage, TicketStatus,
)
from models.users import StaffRole, User
from linkgate.settings import DEMO_SELLER
from resolvers.invoice_documents import money
from resolvers.invoice_emails import issued_body, issued_subject
from resolvers.invoicing import BillTo, Period, write_invoice
from resolvers.tunables import Tunables

DEMO_PASSWORD = "demo-password"

DEMO_LOGINS: list[tuple[str, str]] = [
    ("olivia@northwind.example",
     'owner of "Northwind Head Office" and of three more accounts: two linked to the head '
     "office in a BILLING group, one in a MANAGEMENT group, one of them in both"),
    ("bill@northwind.example",
     "sub-account on the head office: the whole billing family, nothing else"),
    ("dev@northwind.example",
     '"web developer" sub-account on the head office: SERVICES_READ, TICKETS_READ, TICKETS_WRITE'),
    ("eve@contoso.example", 'an unrelated customer owning "Contoso Ltd"'),
    ("agent@linkgate.example", "staff, role SUPPORT"),
    ("finance@linkgate.example", "staff, role BILLING"),
]

# The same business knobs the server runs with by default (resolvers.tunables), so invoices
# the demo seeds and invoices a later `invoice-run` issues agree.
_DEFAULTS = Tunables(seller=DEMO_SELLER)
CURRENCY = _DEFAULTS.currency
CREDIT_UNIT_PRICE = _DEFAULTS.credit_unit_price  # cents per credit
INVOICED_PERIODS = ("2026-08", "2026-09", "2026-10")

HEAD_OFFICE = "ACC-100001"
RETAIL = "ACC-100002"
LOGISTICS = "ACC-100003"
LABS = "ACC-100004"
CONTOSO = "ACC-200001"

OLIVIA = "olivia@northwind.example"
BILL = "bill@northwind.example"
DEV = "dev@northwind.example"
EVE = "eve@contoso.example"
AGENT = "agent@linkgate.example"
FINANCE = "finance@linkgate.example"

# olivia's card on the head office: what the test gateway makes of Stripe's ``tok_visa``.
DEMO_CARD = {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2034,
             "processor_ref": "pm_test_pays_demo00000001", "processor_customer_ref": "cus_test_demo0001"}

# Notifications created before this were delivered; later ones still wait in the outbox.
_OUTBOX_SENT_BEFORE = "2026-11-01 00:00"


def _at(text: str) -> datetime:
    """'YYYY-MM-DD HH:MM' as an aware UTC datetime: keeps the tables below readable."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc)


class _User(NamedTuple):
    email: str
    name: str
    staff_role: StaffRole | None
    created: str


class _Account(NamedTuple):
    number: str
    name: str
    owner: str
    created: str


class _SubAccount(NamedTuple):
    user: str
    account: str
    permissions: frozenset[Permission]
    created: str


class _LinkGroup(NamedTuple):
    kind: LinkKind
    name: str
    head: str
    head_friendly_name: str
    members: tuple[tuple[str, str, str], ...]  # (account, friendly name, linked at)
    created: str


class _Address(NamedTuple):
    line1: str
    line2: str | None
    city: str
    postal_code: str
    country: str


class _Contact(NamedTuple):
    account: str
    name: str
    email: str
    phone: str | None
    preferences: frozenset[EmailPreference]
    created: str
    address: _Address | None = None
    support: bool = False
    billing: bool = False
    user: str | None = None  # the sub-account this contact was activated as
    tax_id: str | None = None


class _Service(NamedTuple):
    account: str
    name: str
    kind: str
    status: ServiceStatus
    monthly_price: int
    created: str


class _Credit(NamedTuple):
    """A ledger event; TRANSFER_OUT also writes the TRANSFER_IN on ``to``."""

    kind: LedgerEntryKind
    account: str
    delta: int
    at: str
    actor: str | None
    note: str
    to: str | None = None


class _Message(NamedTuple):
    author: str  # a user's or a contact's email
    body: str
    at: str
    # Sent to the support address rather than typed in the dashboard (``receive-mail``).
    by_email: bool = False
    attachment: tuple[str, str, bytes] | None = None  # (filename, content type, data)


class _Ticket(NamedTuple):
    number: str
    account: str
    subject: str
    department: Department
    status: TicketStatus
    opener: str  # a user's email, else a contact's email on the account
    messages: tuple[_Message, ...]
    cc_emails: tuple[str, ...] = ()


_USERS: tuple[_User, ...] = (
    _User(AGENT, "Alex Morgan", StaffRole.SUPPORT, "2026-01-05 08:00"),
    _User(FINANCE, "Fatima Haddad", StaffRole.BILLING, "2026-01-05 08:05"),
    _User(OLIVIA, "Olivia Northwind", None, "2026-01-12 09:00"),
    _User(EVE, "Eve Martin", None, "2026-02-03 11:00"),
    _User(BILL, "Bill Turner", None, "2026-03-10 10:20"),
    _User(DEV, "Dana Reyes", None, "2026-05-20 13:50"),
)

_ACCOUNTS: tuple[_Account, ...] = (
    _Account(HEAD_OFFICE, "Northwind Head Office", OLIVIA, "2026-01-12 09:05"),
    _Account(RETAIL, "Northwind Retail", OLIVIA, "2026-01-20 10:00"),
    _Account(CONTOSO, "Contoso Ltd", EVE, "2026-02-03 11:05"),
    _Account(LOGISTICS, "Northwind Logistics", OLIVIA, "2026-02-14 10:00"),
    _Account(LABS, "Northwind Labs", OLIVIA, "2026-04-01 10:00"),
)

_SUB_ACCOUNTS: tuple[_SubAccount, ...] = (
    _SubAccount(BILL, HEAD_OFFICE, BILLING_FAMILY, "2026-03-10 10:30"),
    _SubAccount(DEV, HEAD_OFFICE,
                frozenset({Permission.SERVICES_READ, Permission.TICKETS_READ,
                           Permission.TICKETS_WRITE}),
                "2026-05-20 14:00"),
)

_LINK_GROUPS: tuple[_LinkGroup, ...] = (
    _LinkGroup(LinkKind.BILLING, "Northwind consolidated billing", HEAD_OFFICE, "Head office",
               ((RETAIL, "Shops", "2026-03-01 09:00"),
                (LOGISTICS, "Warehouse & fleet", "2026-03-01 09:05")),
               "2026-03-01 09:00"),
    _LinkGroup(LinkKind.MANAGEMENT, "Northwind operations", HEAD_OFFICE, "Head office",
               ((LOGISTICS, "Warehouse & fleet", "2026-06-15 16:00"),),
               "2026-06-15 16:00"),
)

_HQ_ADDRESS = _Address("12 Harbour Street", "Floor 3", "Rotterdam", "3011 AB", "NL")
_PREFS = EmailPreference
_CONTACTS: tuple[_Contact, ...] = (
    _Contact(HEAD_OFFICE, "Harriet Cole", "ap@northwind.example", "+31 10 555 0101",
             frozenset({_PREFS.INVOICE, _PREFS.CREDIT}), "2026-01-12 09:30",
             address=_HQ_ADDRESS, billing=True, tax_id="NL004495445B01"),
    _Contact(HEAD_OFFICE, "Sam Okafor", "it@northwind.example", "+31 10 555 0102",
             frozenset({_PREFS.SUPPORT, _PREFS.PRODUCT, _PREFS.GENERAL}), "2026-01-15 11:00",
             support=True),
    _Contact(HEAD_OFFICE, "Marta Jansen", "office@northwind.example", "+31 10 555 0100",
             frozenset({_PREFS.GENERAL}), "2026-02-02 09:15", address=_HQ_ADDRESS),
    _Contact(HEAD_OFFICE, "Noor Visser", "marketing@northwind.example", None,
             frozenset(), "2026-02-20 15:40"),
    _Contact(HEAD_OFFICE, "Bill Turner", BILL, "+31 6 5550 1234",
             frozenset({_PREFS.INVOICE, _PREFS.CREDIT}), "2026-03-10 10:15", user=BILL),
    _Contact(HEAD_OFFICE, "Dana Reyes", DEV, None,
             frozenset({_PREFS.SUPPORT, _PREFS.PRODUCT}), "2026-05-20 13:45", user=DEV),
    _Contact(RETAIL, "Lena Vos", "shops@northwind.example", "+31 10 555 0200",
             frozenset({_PREFS.SUPPORT, _PREFS.PRODUCT}), "2026-01-20 10:30"),
    _Contact(LOGISTICS, "Dispatch desk", "dispatch@northwind.example", "+31 10 555 0300",
             frozenset({_PREFS.CREDIT, _PREFS.SUPPORT}), "2026-02-14 10:30"),
    _Contact(CONTOSO, "Ravi Kumar", "ravi@contoso.example", "+32 2 555 0142",
             frozenset({_PREFS.INVOICE, _PREFS.GENERAL}), "2026-02-03 11:30", support=True),
)

_ACTIVE, _SUSPENDED = ServiceStatus.ACTIVE, ServiceStatus.SUSPENDED
_CANCELLED = ServiceStatus.CANCELLED
_SERVICES: tuple[_Service, ...] = (
    _Service(HEAD_OFFICE, "Business Hosting Pro", "hosting", _ACTIVE, 2900, "2026-01-12 09:10"),
    _Service(HEAD_OFFICE, "northwind.example", "domain", _ACTIVE, 125, "2026-01-12 09:10"),
    _Service(HEAD_OFFICE, "Business Email (25 mailboxes)", "email", _ACTIVE, 4500,
             "2026-01-12 09:12"),
    _Service(HEAD_OFFICE, "SMS API access", "sms", _ACTIVE, 1000, "2026-02-01 12:00"),
    _Service(RETAIL, "Webshop Hosting", "hosting", _ACTIVE, 4900, "2026-01-20 10:05"),
    _Service(RETAIL, "northwind-shop.example", "domain", _ACTIVE, 125, "2026-01-20 10:05"),
    _Service(RETAIL, "SMS Bundle 500", "sms", _ACTIVE, 2000, "2026-03-02 09:00"),
    _Service(LOGISTICS, "Fleet tracking SMS", "sms", _ACTIVE, 1500, "2026-02-14 10:10"),
    _Service(LOGISTICS, "Standard Email (10 mailboxes)", "email", _ACTIVE, 1800,
             "2026-02-14 10:10"),
    _Service(LOGISTICS, "northwind-logistics.example", "domain", _ACTIVE, 125, "2026-09-14 15:20"),
    _Service(LABS, "Staging VPS", "hosting", _ACTIVE, 1900, "2026-04-01 10:05"),
    _Service(LABS, "Legacy Hosting Basic", "hosting", _CANCELLED, 900, "2026-04-01 10:05"),
    _Service(LABS, "northwind-labs.example", "domain", _SUSPENDED, 125, "2026-04-02 08:00"),
    _Service(CONTOSO, "Business Hosting", "hosting", _ACTIVE, 2900, "2026-02-03 11:10"),
    _Service(CONTOSO, "contoso.example", "domain", _ACTIVE, 125, "2026-02-03 11:10"),
    _Service(CONTOSO, "Business Email (5 mailboxes)", "email", _ACTIVE, 1200, "2026-02-03 11:12"),
)

_K = LedgerEntryKind
_CREDITS: tuple[_Credit, ...] = (
    _Credit(_K.PURCHASE, CONTOSO, 1000, "2026-08-03 10:00", EVE, "Credit top-up"),
    _Credit(_K.PURCHASE, HEAD_OFFICE, 5000, "2026-08-04 09:12", BILL, "Credit top-up"),
    _Credit(_K.PURCHASE, RETAIL, 1000, "2026-08-10 11:00", OLIVIA, "Credit top-up"),
    _Credit(_K.PURCHASE, LOGISTICS, 3000, "2026-08-12 14:30", OLIVIA, "Credit top-up"),
    _Credit(_K.USAGE, HEAD_OFFICE, -1200, "2026-08-20 17:00", None, "SMS: summer sale campaign"),
    _Credit(_K.USAGE, RETAIL, -600, "2026-08-31 17:00", None, "SMS: loyalty messages"),
    _Credit(_K.PURCHASE, LABS, 500, "2026-09-01 13:00", OLIVIA, "Credit top-up"),
    _Credit(_K.TRANSFER_OUT, HEAD_OFFICE, -1000, "2026-09-05 10:40", BILL,
            "Credits for the shops' loyalty SMS", to=RETAIL),
    _Credit(_K.USAGE, CONTOSO, -400, "2026-09-10 17:00", None, "SMS: order notifications"),
    _Credit(_K.USAGE, LOGISTICS, -900, "2026-09-15 17:00", None, "SMS: delivery notices"),
    _Credit(_K.USAGE, HEAD_OFFICE, -1500, "2026-09-25 17:00", None, "SMS: appointment reminders"),
    _Credit(_K.USAGE, RETAIL, -700, "2026-09-30 17:00", None, "SMS: loyalty messages"),
    _Credit(_K.PURCHASE, HEAD_OFFICE, 2000, "2026-10-02 08:55", BILL, "Credit top-up"),
    _Credit(_K.ADJUSTMENT, CONTOSO, 50, "2026-10-09 15:45", FINANCE,
            "Goodwill credit: delayed SMS delivery on 8 October"),
    _Credit(_K.TRANSFER_OUT, LOGISTICS, -500, "2026-10-15 09:20", OLIVIA,
            "Credits for the SMS pilot", to=LABS),
    _Credit(_K.USAGE, LABS, -320, "2026-10-20 17:00", None, "SMS: pilot test sends"),
    _Credit(_K.USAGE, CONTOSO, -300, "2026-10-22 17:00", None, "SMS: order notifications"),
    _Credit(_K.USAGE, HEAD_OFFICE, -2950, "2026-10-28 17:00", None, "SMS: autumn newsletter"),
    _Credit(_K.USAGE, LOGISTICS, -800, "2026-10-30 17:00", None, "SMS: delivery notices"),
    _Credit(_K.USAGE, RETAIL, -450, "2026-10-31 17:00", None, "SMS: loyalty messages"),
    _Credit(_K.PURCHASE, CONTOSO, 1000, "2026-11-04 10:10", EVE, "Credit top-up"),
    _Credit(_K.USAGE, HEAD_OFFICE, -280, "2026-11-06 17:00", None, "SMS: appointment reminders"),
)

# account -> (threshold, recipients); the reminder arms and fires as the ledger is replayed.
_LOW_CREDIT_REMINDERS: dict[str, tuple[int, tuple[str, ...]]] = {
    HEAD_OFFICE: (100, (BILL,)),
}

# Invoices not listed here were paid: the head office's by card, the others by bank transfer.
_UNPAID_INVOICES: frozenset[tuple[str, str]] = frozenset({
    (HEAD_OFFICE, "2026-10"), (CONTOSO, "2026-10"),
})
_VOID_INVOICES: dict[tuple[str, str], str] = {
    (LABS, "2026-09"): "Fee waived: the staging platform was down for most of September.",
}
_PAID_BY_CARD = frozenset({HEAD_OFFICE})

_TICKETS: tuple[_Ticket, ...] = (
    _Ticket("TKT-100001", HEAD_OFFICE, "SSL certificate for shop.northwind.example expires soon",
            Department.TECHNICAL, TicketStatus.ANSWERED, OLIVIA, (
                _Message(OLIVIA, "Our certificate for shop.northwind.example expires on "
                         "30 September. Can you renew it and confirm nothing changes for the "
                         "webshop?", "2026-09-14 08:30"),
                _Message(AGENT, "The certificate has been renewed and installed; it is valid "
                         "until September 2027. Nothing needs to change on your side.",
                         "2026-09-14 11:05"),
            ), cc_emails=("marketing@northwind.example",)),
    _Ticket("TKT-100002", HEAD_OFFICE, "Reception mailbox not receiving email",
            Department.TECHNICAL, TicketStatus.CLOSED, "office@northwind.example", (
                _Message("office@northwind.example", "Since this morning nothing arrives in "
                         "reception@northwind.example. Senders get no bounce.",
                         "2026-10-05 08:45", by_email=True),
                _Message(AGENT, "The mailbox had reached its quota, so new mail was held. We "
                         "raised the quota to 10 GB and released the held messages.",
                         "2026-10-05 10:20"),
                _Message("office@northwind.example", "It works again, thank you.",
                         "2026-10-05 11:00", by_email=True),
            )),
    _Ticket("TKT-100003", HEAD_OFFICE, "DNS records for staging.northwind.example",
            Department.TECHNICAL, TicketStatus.CUSTOMER_REPLY, DEV, (
                _Message(DEV, "Please add an A record staging.northwind.example -> "
                         "203.0.113.24 for the new staging site.", "2026-10-21 09:10"),
                _Message(AGENT, "Done: the A record is live with a TTL of 300 seconds.",
                         "2026-10-21 13:40"),
                _Message(DEV, "Thanks! Could you also add a TXT record "
                         "'site-verification=nw-7f3a' on the same name?", "2026-10-22 08:05"),
            )),
    _Ticket("TKT-100004", CONTOSO, "SPF record for contoso.example",
            Department.TECHNICAL, TicketStatus.OPEN, EVE, (
                _Message(EVE, "Our newsletter tool asks us to include its servers in the SPF "
                         "record of contoso.example. How do we change it?", "2026-11-07 14:25"),
            )),
    # Written in by the head office's support contact (no login): a ticket by email.
    _Ticket("TKT-100005", HEAD_OFFICE, "Nightly backup of the file server fails",
            Department.TECHNICAL, TicketStatus.CUSTOMER_REPLY, "it@northwind.example", (
                _Message("it@northwind.example", "Since Monday the nightly backup of "
                         "files.northwind.example stops after a few minutes. The backup report "
                         "is attached.", "2026-11-09 08:12", by_email=True,
                         attachment=("backup-report.txt", "text/plain",
                                     b"2026-11-09 02:00:01 backup started (files.northwind.example)\n"
                                     b"2026-11-09 02:03:47 error: quota exceeded on backup target\n"
                                     b"2026-11-09 02:03:47 backup aborted\n")),
                _Message(AGENT, "The backup target had run out of space. We doubled it to 2 TB; "
                         "tonight's backup should run through. Please tell us if it does not.",
                         "2026-11-09 10:30"),
                _Message("it@northwind.example", "Thank you! I started one by hand and it "
                         "finished without errors.", "2026-11-09 11:02", by_email=True),
            )),
)
# Where the demo's customers wrote to: LINKGATE_SUPPORT_ADDRESS / _BILLING_ADDRESS's defaults.
_INBOUND_ADDRESS = {Department.TECHNICAL: "support@linkgate.example",
                    Department.BILLING: "billing@linkgate.example"}

_ACTION_LINK_CREATED = "link.created"
_ACTION_SUB_ACCOUNT_ACTIVATED = "subaccount.activated"
_ACTION_CREDITS_TRANSFERRED = "credits.transferred"
_ACTION_CREDITS_ADJUSTED = "credits.adjusted"


@dataclass
class _Seeded:
    """Rows created so far, by their natural keys, so later parts can refer to them."""

    users: dict[str, User] = field(default_factory=dict)
    accounts: dict[str, Account] = field(default_factory=dict)
    # account number -> (its BILLING group, that group's head)
    billing_group: dict[str, tuple[LinkGroup, Account]] = field(default_factory=dict)
    contacts: dict[tuple[str, str], Contact] = field(default_factory=dict)  # (account, email)
    card: PaymentMethod | None = None
    charges: list[Charge] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    audit: list[AuditEvent] = field(default_factory=list)

    def user_id(self, email: str | None) -> int | None:
        return self.users[email].id if email else None

    def person_name(self, account_number: str, email: str) -> str:
        """A user's name, else the name of the account's contact with that email."""
        user = self.users.get(email)
        return user.name if user else self.contacts[(account_number, email)].name

    def owner_of(self, account: Account) -> User:
        return next(user for user in self.users.values() if user.id == account.owner_id)

    def contacts_of(self, account: Account) -> list[Contact]:
        return [c for (number, _), c in self.contacts.items() if number == account.number]

    def notify(self, account: Account, recipients: Iterable[str], category: EmailPreference,
               subject: str, body: str, related: tuple[str, int], at: datetime) -> None:
        """Queue one outbox row per distinct recipient, as the real rules do."""
        sent_at = at + timedelta(minutes=2) if at < _at(_OUTBOX_SENT_BEFORE) else None
        for recipient in dict.fromkeys(recipients):
            self.notifications.append(Notification(
                account_id=account.id, recipient=recipient,
                category=category.value, subject=subject, body=body,
                related_type=related[0], related_id=related[1], created_at=at,
                sent_at=sent_at, attempts=1 if sent_at else 0,
            ))

    def audit_event(self, account: Account, actor: str | None, action: str, at: datetime,
                    target: tuple[str, int] | None = None, before: dict[str, Any] | None = None,
                    after: dict[str, Any] | None = None) -> None:
        user = self.users[actor] if actor else None
        self.audit.append(AuditEvent(
            account_id=account.id, actor_user_id=user.id if user else None,
            actor_is_staff=bool(user and user.staff_role), action=action,
            target_type=target[0] if target else None, target_id=target[1] if target else None,
            before=before, after=after, created_at=at,
        ))


async def seed_demo(session: AsyncSession) -> bool:
    """Insert the demo in the caller's transaction; False (and nothing written) if it is there."""
    existing = await session.scalar(select(User.id).where(User.email == OLIVIA))
    if existing is not None:
        return False
    # argon2 is deliberately slow: hash once, off the event loop, and share it.
    password_hash = await asyncio.to_thread(hash_password, DEMO_PASSWORD)
    seeded = _Seeded()
    await _seed_users(session, seeded, password_hash)
    await _seed_accounts(session, seeded)
    await _seed_links(session, seeded)
    await _seed_contacts(session, seeded)
    services = await _seed_services(session, seeded)
    await _seed_credits(session, seeded)
    await _seed_card(session, seeded)
    await _seed_invoices(session, seeded, services)
    await _seed_tickets(session, seeded)
    seeded.notifications.sort(key=lambda row: row.created_at)
    seeded.audit.sort(key=lambda row: row.created_at)
    session.add_all([*seeded.notifications, *seeded.audit])
    await session.flush()
    return True


async def _seed_users(session: AsyncSession, seeded: _Seeded, password_hash: str) -> None:
    for spec in _USERS:
        user = User(email=spec.email.lower(), name=spec.name, password_hash=password_hash,
                    staff_role=spec.staff_role, created_at=_at(spec.created))
        seeded.users[spec.email] = user
        session.add(user)
    await session.flush()


async def _seed_accounts(session: AsyncSession, seeded: _Seeded) -> None:
    for spec in _ACCOUNTS:
        account = Account(
            number=spec.number, name=spec.name, owner_id=seeded.users[spec.owner].id,
            enrollment_token_version=1, created_at=_at(spec.created),
        )
        seeded.accounts[spec.number] = account
        session.add(account)
    await session.flush()
    for sub in _SUB_ACCOUNTS:
        account = seeded.accounts[sub.account]
        names = permission_names(sub.permissions)
        user = seeded.users[sub.user]
        session.add(Membership(user_id=user.id, account_id=account.id, permissions=names,
                               created_at=_at(sub.created)))
        seeded.audit_event(account, seeded.owner_of(account).email, _ACTION_SUB_ACCOUNT_ACTIVATED,
                           _at(sub.created), target=("user", user.id),
                           before={"permissions": []}, after={"permissions": names})
    await session.flush()


async def _seed_links(session: AsyncSession, seeded: _Seeded) -> None:
    for spec in _LINK_GROUPS:
        group = LinkGroup(kind=spec.kind, name=spec.name, created_at=_at(spec.created))
        session.add(group)
        await session.flush()
        head = seeded.accounts[spec.head]
        rows = [(spec.head, spec.head_friendly_name, spec.created, True)]
        rows += [(number, friendly, at, False) for number, friendly, at in spec.members]
        for number, friendly_name, linked_at, is_head in rows:
            account = seeded.accounts[number]
            session.add(LinkMember(
                group_id=group.id, kind=spec.kind, account_id=account.id, is_head=is_head,
                friendly_name=friendly_name, linked_at=_at(linked_at),
                linked_via=LinkMethod.SAME_OWNER,
            ))
            if spec.kind is LinkKind.BILLING:
                seeded.billing_group[number] = (group, head)
            if is_head:
                continue
            session.add(LinkPeriod(kind=spec.kind, account_id=account.id, group_id=group.id,
                                   head_account_id=head.id, valid_from=_at(linked_at)))
            details = {"kind": spec.kind.value, "group_id": group.id, "head": head.number,
                       "account": number, "friendly_name": friendly_name,
                       "linked_via": LinkMethod.SAME_OWNER.value}
            for audited in (head, account):
                seeded.audit_event(audited, OLIVIA, _ACTION_LINK_CREATED, _at(linked_at),
                                   target=("link_group", group.id), after=details)
    await session.flush()


async def _seed_contacts(session: AsyncSession, seeded: _Seeded) -> None:
    for spec in _CONTACTS:
        address = spec.address
        contact = Contact(
            account_id=seeded.accounts[spec.account].id, name=spec.name, email=spec.email.lower(),
            phone=spec.phone,
            address_line1=address.line1 if address else None,
            address_line2=address.line2 if address else None,
            city=address.city if address else None,
            postal_code=address.postal_code if address else None,
            country=address.country if address else None, tax_id=spec.tax_id,
            is_support_contact=spec.support, is_billing_contact=spec.billing,
            email_preferences=sorted(preference.value for preference in spec.preferences),
            user_id=seeded.user_id(spec.user), created_at=_at(spec.created),
        )
        seeded.contacts[(spec.account, spec.email)] = contact
        session.add(contact)
    await session.flush()


async def _seed_services(session: AsyncSession, seeded: _Seeded) -> list[Service]:
    services = [
        Service(account_id=seeded.accounts[spec.account].id, name=spec.name, kind=spec.kind,
                status=spec.status, monthly_price=spec.monthly_price, currency=CURRENCY,
                created_at=_at(spec.created))
        for spec in _SERVICES
    ]
    session.add_all(services)
    await session.flush()
    return services


def _charge(seeded: _Seeded, account: Account, kind: ChargeKind, period: str, description: str,
            quantity: int, unit_price: int, at: datetime, service: Service | None = None) -> Charge:
    """A charge is owed by the head of the account's BILLING group at the time it is made."""
    link = seeded.billing_group.get(account.number)
    group, payer = link if link is not None else (None, account)
    return Charge(
        account_id=account.id, payer_account_id=payer.id,
        billing_group_id=group.id if group else None, kind=kind, period=period,
        description=description, quantity=quantity, unit_price=unit_price,
        amount=quantity * unit_price, currency=CURRENCY,
        service_id=service.id if service else None, created_at=at,
    )


async def _seed_credits(session: AsyncSession, seeded: _Seeded) -> None:
    """Replay the ledger in time order, keeping balances, charges and reminders consistent."""
    reminders = {number: LowCreditReminder(account_id=seeded.accounts[number].id, enabled=True,
                                           threshold=threshold, recipients=list(recipients),
                                           armed=True)
                 for number, (threshold, recipients) in _LOW_CREDIT_REMINDERS.items()}
    for event in sorted(_CREDITS, key=lambda credit: _at(credit.at)):
        at = _at(event.at)
        account = seeded.accounts[event.account]
        if event.kind is LedgerEntryKind.TRANSFER_OUT:
            assert event.to is not None
            target = seeded.accounts[event.to]
            transfer_id = str(uuid.uuid4())
            _post(session, seeded, reminders, account, event, at, transfer_id=transfer_id)
            _post(session, seeded, reminders, target,
                  event._replace(kind=LedgerEntryKind.TRANSFER_IN, account=event.to,
                                 delta=-event.delta),
                  at, transfer_id=transfer_id)
            details = {"transfer_id": transfer_id, "from": account.number, "to": target.number,
                       "credits": -event.delta}
            for audited in (account, target):
                seeded.audit_event(audited, event.actor, _ACTION_CREDITS_TRANSFERRED, at,
                                   after=details)
            continue
        _post(session, seeded, reminders, account, event, at)
        if event.kind is LedgerEntryKind.PURCHASE:
            seeded.charges.append(_charge(
                seeded, account, ChargeKind.CREDIT_PURCHASE, at.strftime("%Y-%m"),
                f"{event.delta:,} prepaid credits", event.delta, CREDIT_UNIT_PRICE, at,
            ))
        elif event.kind is LedgerEntryKind.ADJUSTMENT:
            seeded.audit_event(account, event.actor, _ACTION_CREDITS_ADJUSTED, at,
                               before={"credit_balance": account.credit_balance - event.delta},
                               after={"credit_balance": account.credit_balance,
                                      "note": event.note})
    session.add_all(reminders.values())
    await session.flush()


def _post(session: AsyncSession, seeded: _Seeded, reminders: dict[str, LowCreditReminder],
          account: Account, event: _Credit, at: datetime, transfer_id: str | None = None) -> None:
    """One ledger entry; a debit crossing an armed reminder's threshold queues its emails."""
    before = account.credit_balance
    account.credit_balance = before + event.delta
    if account.credit_balance < 0:
        raise ValueError(f"demo ledger overdraws {account.number} at {event.at}")
    session.add(CreditLedgerEntry(
        account_id=account.id, kind=event.kind, delta=event.delta,
        balance_after=account.credit_balance, actor_user_id=seeded.user_id(event.actor),
        note=event.note, transfer_id=transfer_id, created_at=at,
    ))
    reminder = reminders.get(account.number)
    if reminder is None:
        return
    if reminder.armed and before >= reminder.threshold > account.credit_balance:
        reminder.armed = False
        recipients = reminder.recipients or [seeded.owner_of(account).email]
        seeded.notify(account, recipients, EmailPreference.CREDIT,
                      f"Low credit balance on {account.name}",
                      f"The credit balance of {account.name} ({account.number}) is "
                      f"{account.credit_balance}, below your reminder threshold of "
                      f"{reminder.threshold}.", ("account", account.id), at)
    elif account.credit_balance >= reminder.threshold:
        reminder.armed = True


def _period(name: str) -> Period:
    """A past month of the demo (``parse_period`` would also check that it has ended)."""
    year, month = (int(part) for part in name.split("-"))
    return Period(name, date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1]))


async def _seed_card(session: AsyncSession, seeded: _Seeded) -> None:
    head = seeded.accounts[HEAD_OFFICE]
    seeded.card = PaymentMethod(account_id=head.id, gateway="test", added_by_user_id=seeded.user_id(OLIVIA),
                                created_at=_at("2026-03-02 10:00"), **DEMO_CARD)
    session.add(seeded.card)
    await session.flush()
    seeded.audit_event(head, OLIVIA, "payment_method.added", seeded.card.created_at,
                       target=("payment_method", seeded.card.id),
                       after={"brand": "visa", "last4": "4242", "expires": "12/2034"})


async def _seed_invoices(
    session: AsyncSession, seeded: _Seeded, services: list[Service]
) -> None:
    """What the invoice runs of 2026-08..10 produced: fees of active services, then invoices."""
    numbers = {account.id: number for number, account in seeded.accounts.items()}
    sequence = 0
    for period in INVOICED_PERIODS:
        start, end = (bounds := _period(period)).start, bounds.end
        issued_at = datetime.combine(end + timedelta(days=1), datetime.min.time(),
                                     timezone.utc) + timedelta(hours=6)
        for service in services:
            if service.status is ServiceStatus.ACTIVE and service.created_at.date() <= start:
                seeded.charges.append(_charge(
                    seeded, seeded.accounts[numbers[service.account_id]], ChargeKind.SERVICE_FEE,
                    period, f"{service.name} ({period})", 1, service.monthly_price, issued_at,
                    service=service,
                ))
        session.add_all(seeded.charges)
        await session.flush()
        due = [charge for charge in seeded.charges
               if charge.period == period and charge.invoice_id is None]
        for payer_id in sorted({charge.payer_account_id for charge in due}):
            sequence += 1
            payer_charges = sorted((c for c in due if c.payer_account_id == payer_id),
                                   key=lambda c: (numbers[c.account_id], c.created_at, c.id))
            await _issue_invoice(session, seeded, seeded.accounts[numbers[payer_id]],
                                 payer_charges, period, issued_at, sequence)
    session.add_all(seeded.charges)
    await session.flush()


async def _issue_invoice(session: AsyncSession, seeded: _Seeded, payer: Account,
                         charges: list[Charge], period: str, issued_at: datetime,
                         sequence: int) -> None:
    contacts = seeded.contacts_of(payer)
    contact = next((c for c in contacts if c.is_billing_contact), None)
    owner = seeded.owner_of(payer)
    bill_to = BillTo(owner.name, owner.email) if contact is None else BillTo(
        contact.name, contact.email, contact.address_line1, contact.address_line2,
        contact.city, contact.postal_code, contact.country, contact.tax_id,
    )
    invoice = await write_invoice(
        session, payer=payer, charges=charges, number=f"INV-{period}-{sequence:06d}",
        period=_period(period), bill_to=bill_to, issued_at=issued_at, tunables=_DEFAULTS,
    )
    invoice_readers = [c.email for c in contacts
                       if EmailPreference.INVOICE.value in c.email_preferences]
    # The email as the run writes it, before any payment (its "amount due" is the total).
    seeded.notify(payer, [invoice.bill_to_email, *invoice_readers], EmailPreference.INVOICE,
                  issued_subject(invoice.number), issued_body(invoice, public_url=_DEFAULTS.public_url),
                  ("invoice", invoice.id), issued_at)
    void_reason = _VOID_INVOICES.get((payer.number, period))
    if void_reason is not None:
        invoice.status = InvoiceStatus.VOID
        invoice.voided_at = issued_at + timedelta(days=3)
        invoice.void_reason = void_reason
        seeded.audit_event(payer, FINANCE, "invoice.voided", invoice.voided_at,
                           target=("invoice", invoice.id), before={"status": "UNPAID"},
                           after={"status": "VOID", "reason": void_reason})
    elif (payer.number, period) not in _UNPAID_INVOICES:
        await _pay(session, seeded, payer, invoice, issued_at + timedelta(days=6))


async def _pay(session: AsyncSession, seeded: _Seeded, payer: Account, invoice: Any,
               at: datetime) -> None:
    """The payment the real flow would have recorded (resolvers/payments.py), in full."""
    by_card = payer.number in _PAID_BY_CARD and seeded.card is not None
    payment = Payment(
        invoice_id=invoice.id, kind=PaymentKind.CARD if by_card else PaymentKind.OFFLINE,
        status=PaymentStatus.SUCCEEDED, amount=invoice.total, currency=invoice.currency,
        payment_method_id=seeded.card.id if by_card and seeded.card else None,
        idempotency_key=f"demo-{invoice.number}" if by_card else None,
        processor_ref=f"pi_test_demo{invoice.id:06d}" if by_card else None,
        reference=None if by_card else f"SEPA transfer quoting {invoice.number}",
        actor_user_id=seeded.user_id(OLIVIA if by_card else FINANCE),
        created_at=at, settled_at=at,
    )
    session.add(payment)
    invoice.amount_paid = invoice.total
    invoice.status = InvoiceStatus.PAID
    invoice.paid_at = at
    await session.flush()
    seeded.audit_event(payer, OLIVIA if by_card else FINANCE, "payment.succeeded", at,
                       target=("invoice", invoice.id), before={"status": "UNPAID"},
                       after={"status": "PAID", "payment": payment.id, "amount": payment.amount,
                              "kind": payment.kind.value})
    seeded.notify(payer, [invoice.bill_to_email], EmailPreference.INVOICE,
                  f"Payment received for invoice {invoice.number}",
                  f"Hello {invoice.bill_to_name},\n\nWe received "
                  f"{money(payment.amount, payment.currency)} for invoice {invoice.number} on "
                  f"{at:%Y-%m-%d}. It is now paid in full.\n", ("invoice", invoice.id), at)


async def _seed_tickets(session: AsyncSession, seeded: _Seeded) -> None:
    for spec in _TICKETS:
        account = seeded.accounts[spec.account]
        opener_user = seeded.users.get(spec.opener)
        opener_contact = None if opener_user else seeded.contacts[(spec.account, spec.opener)]
        opener_name = seeded.person_name(spec.account, spec.opener)
        ticket = Ticket(
            account_id=account.id, number=spec.number, subject=spec.subject,
            department=spec.department, status=spec.status,
            opened_by_user_id=opener_user.id if opener_user else None,
            opened_by_contact_id=opener_contact.id if opener_contact else None,
            opened_by_name=opener_name, opened_by_email=spec.opener.lower(),
            cc_emails=list(spec.cc_emails), created_at=_at(spec.messages[0].at),
            updated_at=_at(spec.messages[-1].at),
        )
        session.add(ticket)
        await session.flush()
        for index, message in enumerate(spec.messages):
            author = seeded.users.get(message.author)
            is_staff = bool(author and author.staff_role)
            row = TicketMessage(
                ticket_id=ticket.id, author_user_id=author.id if author else None,
                author_name=seeded.person_name(spec.account, message.author),
                author_kind=AuthorKind.STAFF if is_staff else AuthorKind.CUSTOMER,
                body=message.body, created_at=_at(message.at),
                via="EMAIL" if message.by_email else "PORTAL",
            )
            session.add(row)
            if message.by_email:
                await _seed_inbound(session, spec, ticket, row, index, message)
            if is_staff:
                seeded.notify(account, _reply_recipients(seeded, account, spec),
                              EmailPreference.SUPPORT, f"[{spec.number}] {spec.subject}",
                              message.body, ("ticket", ticket.id), _at(message.at))
    await session.flush()


async def _seed_inbound(session: AsyncSession, spec: _Ticket, ticket: Ticket, row: TicketMessage,
                        index: int, message: _Message) -> None:
    """What ``linkgate receive-mail`` records of a message it took: the inbound row, and the
    file that came with it."""
    session.add(InboundMessage(
        message_id=f"<demo-{spec.number.lower()}-{index + 1}@mail.northwind.example>",
        sender=message.author, recipient=_INBOUND_ADDRESS[spec.department],
        subject=spec.subject if index == 0 else f"Re: [{spec.number}] {spec.subject}",
        outcome="opened" if index == 0 else "replied", ticket_id=ticket.id,
        received_at=_at(message.at),
    ))
    if message.attachment is not None:
        await session.flush()
        filename, content_type, data = message.attachment
        session.add(TicketAttachment(ticket_message_id=row.id, filename=filename,
                                     content_type=content_type, size=len(data), data=data,
                                     created_at=_at(message.at)))


def _reply_recipients(seeded: _Seeded, account: Account, spec: _Ticket) -> list[str]:
    """DESIGN §1 Tickets: who is emailed when staff replies (and the SUPPORT copies of what
    goes to the owner, DESIGN §1 Contacts)."""
    owner = seeded.owner_of(account).email
    contacts = seeded.contacts_of(account)
    copies = [c.email for c in contacts if EmailPreference.SUPPORT.value in c.email_preferences]
    if spec.opener == owner:
        support = [c.email for c in contacts if c.is_support_contact]
        return [owner, *support, *copies, *spec.cc_emails]
    return [spec.opener, owner, *copies, *spec.cc_emails]
