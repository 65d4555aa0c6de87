"""The monthly invoice run, and the billing contact invoices are addressed to.

``run_invoicing(period)`` (staff, or ``linkgate invoice-run``), in one transaction:

1. charges the monthly fee of every service that is ACTIVE now and existed on the first day
   of the period (full months only), once per service and period (a unique constraint too);
   the payer is the head of the account's BILLING group when the month began (00:00 UTC on
   its first day), read from the link periods, never from the links at the run: a link made
   mid-month pays from the next full month on, and a month an unlink happened in stays with
   the old head (DESIGN §1 "The payer of a charge");
2. turns every uninvoiced charge of the period into invoices: one per payer (a BILLING group's
   head, with lines from every member, each naming its source account; or an account outside
   any group) and currency. Each charge is invoiced exactly once, so a second run of the same
   period creates nothing;
3. numbers them ``INV-YYYY-MM-NNNNNN``, sequential per period after the highest number that
   period already has; totals = Σ lines + tax, tax = subtotal × rate rounded half up to a whole
   minor unit; bill-to is a snapshot of the payer's billing contact, else of its owner;
4. queues the invoice email to the bill-to address and the payer's contacts with the INVOICE
   preference, in the same transaction.

Runs are serialized (an advisory lock on PostgreSQL, the write lock on SQLite), so two runs of
the same period at once still invoice each charge once and never reuse a number.
"""

from __future__ import annotations

import calendar
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from auth.permissions import Permission
from auth.policy import AccessMap
from auth.principals import Principal
from models.accounts import Account
from models.billing import Charge, ChargeKind, Invoice, InvoiceLine, InvoiceStatus
from models.contacts import Contact, EmailPreference
from models.services import Service, ServiceStatus
from models.users import User
from resolvers.accounts import require_account
from resolvers.audit_log import record_event
from resolvers.charges import billing_payers_at
from resolvers.database import begin_write
from resolvers.invoice_emails import queue_invoice_issued_email
from resolvers.ledger import lock_accounts
from resolvers.live_events import LiveEvent, Topic, publish
from resolvers.tunables import Tunables
from resolvers.user_errors import UserError

# Amounts are 32-bit integer columns.
MAX_AMOUNT = 2**31 - 1
PERIOD = re.compile(r"^([0-9]{4})-([0-9]{2})$")  # ASCII digits: \d takes any script's
# Any constant: the key of the advisory lock that serializes invoice runs on PostgreSQL.
_INVOICE_RUN_LOCK = 4_151_001


@dataclass(frozen=True)
class Period:
    name: str  # "YYYY-MM"
    start: date
    end: date

    @property
    def begins(self) -> datetime:
        """00:00 UTC on the first day: the moment whose payer owes the month's fees."""
        return datetime.combine(self.start, time.min, timezone.utc)


@dataclass(frozen=True)
class InvoiceRun:
    period: Period
    invoices: list[Invoice]
    fees_charged: int


def parse_period(value: str, *, today: date | None = None) -> Period | UserError:
    """A calendar month that has ended: ``2026-13`` and the current or a future month are refused."""
    today = today or datetime.now(timezone.utc).date()
    match = PERIOD.match(value.strip())
    if match is None or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 2000:
        return UserError(message="The period is a month written YYYY-MM, e.g. 2026-10.",
                         code="INVALID_PERIOD", field=["period"])
    year, month = int(match.group(1)), int(match.group(2))
    start = date(year, month, 1)
    end = date(year, month, calendar.monthrange(year, month)[1])
    if end >= today:
        return UserError(message="Only a month that has ended can be invoiced.",
                         code="PERIOD_NOT_ENDED", field=["period"])
    return Period(f"{year:04d}-{month:02d}", start, end)


def tax_on(subtotal: int, basis_points: int) -> int:
    """Tax in whole minor units, rounded half up (amounts are never negative)."""
    return (subtotal * basis_points + 5_000) // 10_000


async def _serialize_runs(session: AsyncSession) -> None:
    await begin_write(session)
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _INVOICE_RUN_LOCK})


async def _charge_service_fees(session: AsyncSession, period: Period) -> int:
    already = set((await session.scalars(
        select(Charge.service_id).where(Charge.period == period.name, Charge.service_id.is_not(None))
    )).all())
    services = (await session.scalars(
        select(Service).where(Service.status == ServiceStatus.ACTIVE).order_by(Service.id)
    )).all()
    # Every account's payer when the month began: one query, whatever the number of services.
    payers = await billing_payers_at(session, period.begins)
    charged = 0
    now = datetime.now(timezone.utc)
    for service in services:
        if service.id in already or service.created_at.date() > period.start:
            continue
        payer, group = payers.get(service.account_id, (service.account_id, None))
        session.add(Charge(
            account_id=service.account_id, payer_account_id=payer, billing_group_id=group,
            kind=ChargeKind.SERVICE_FEE, period=period.name,
            description=f"{service.name} ({period.name})", quantity=1,
            unit_price=service.monthly_price, amount=service.monthly_price,
            currency=service.currency, service_id=service.id, created_at=now,
        ))
        charged += 1
    await session.flush()
    return charged


async def _next_sequence(session: AsyncSession, period: Period) -> int:
    prefix = f"INV-{period.name}-"
    numbers = (await session.scalars(
        select(Invoice.number).where(Invoice.number.startswith(prefix, autoescape=True))
    )).all()
    suffixes = [int(number[len(prefix):]) for number in numbers if number[len(prefix):].isdigit()]
    return max(suffixes, default=0) + 1


@dataclass(frozen=True)
class BillTo:
    name: str
    email: str
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    postal_code: str | None = None
    country: str | None = None
    tax_id: str | None = None


async def bill_to_of(session: AsyncSession, account: Account) -> tuple[BillTo, list[Contact]]:
    """The billing contact's name and address, else the owner's name; and all the contacts."""
    contacts = list((await session.scalars(
        select(Contact).where(Contact.account_id == account.id).order_by(Contact.id)
    )).all())
    contact = next((c for c in contacts if c.is_billing_contact), None)
    if contact is not None:
        return BillTo(contact.name, contact.email, contact.address_line1, contact.address_line2,
                      contact.city, contact.postal_code, contact.country, contact.tax_id), contacts
    owner = await session.get(User, account.owner_id)
    assert owner is not None
    return BillTo(owner.name, owner.email), contacts


async def write_invoice(
    session: AsyncSession, *, payer: Account, charges: list[Charge], number: str,
    period: Period, bill_to: BillTo, issued_at: datetime, tunables: Tunables,
    status: InvoiceStatus = InvoiceStatus.UNPAID,
) -> Invoice:
    """The invoice for ``charges`` with a line each, the charges pointing at it. The one way
    an invoice is made: by the invoice run, and by the demo seed for its past months.

    Everything the invoice prints is copied onto it now (DESIGN: an issued invoice never
    changes): the payer's and each line's account number and name, the seller, the tax rate,
    the bill-to, and which enrollment token it prints."""
    subtotal = sum(charge.amount for charge in charges)
    tax = tax_on(subtotal, tunables.tax_rate_basis_points)
    sources = {row.id: row for row in (await session.scalars(
        select(Account).where(Account.id.in_({charge.account_id for charge in charges}))
    )).all()}
    seller = tunables.seller
    invoice = Invoice(
        number=number, payer_account_id=payer.id,
        link_group_id=next((c.billing_group_id for c in charges if c.billing_group_id), None),
        period_start=period.start, period_end=period.end, issued_at=issued_at,
        due_at=issued_at + timedelta(days=tunables.invoice_due_days), status=status,
        currency=charges[0].currency, subtotal=subtotal, tax=tax, total=subtotal + tax,
        bill_to_name=bill_to.name[:100], bill_to_email=bill_to.email,
        bill_to_line1=bill_to.line1, bill_to_line2=bill_to.line2, bill_to_city=bill_to.city,
        bill_to_postal_code=bill_to.postal_code, bill_to_country=bill_to.country,
        bill_to_tax_id=bill_to.tax_id, payer_number=payer.number, payer_name=payer.name,
        seller_name=seller.name, seller_address=seller.address, seller_tax_id=seller.tax_id,
        payment_instructions=seller.payment_instructions,
        tax_rate_basis_points=tunables.tax_rate_basis_points,
        enrollment_token_version=payer.enrollment_token_version,
        amount_paid=0, created_at=issued_at,
    )
    session.add(invoice)
    await session.flush()
    for charge in charges:
        charge.invoice_id = invoice.id
        session.add(InvoiceLine(
            invoice_id=invoice.id, account_id=charge.account_id, charge_id=charge.id,
            description=charge.description, quantity=charge.quantity,
            unit_price=charge.unit_price, amount=charge.amount,
            account_number=sources[charge.account_id].number,
            account_name=sources[charge.account_id].name,
        ))
    publish(session, LiveEvent(Topic.INVOICE_ISSUED, invoice.payer_account_id, invoice.id))
    return invoice


async def _issue(
    session: AsyncSession, *, payer: Account, charges: list[Charge], period: Period,
    sequence: int, tunables: Tunables, now: datetime,
) -> Invoice:
    bill_to, contacts = await bill_to_of(session, payer)
    invoice = await write_invoice(
        session, payer=payer, charges=charges, number=f"INV-{period.name}-{sequence:06d}",
        period=period, bill_to=bill_to, issued_at=now, tunables=tunables,
    )
    readers = [c.email for c in contacts if EmailPreference.INVOICE.value in c.email_preferences]
    await queue_invoice_issued_email(
        session, invoice=invoice, recipients=[bill_to.email, *readers], tunables=tunables)
    return invoice


async def run_invoicing(
    session: AsyncSession, *, period: str, tunables: Tunables, actor: Principal | None,
) -> InvoiceRun | list[UserError]:
    """The run for one ended month; the caller checked who may run it (staff or the CLI)."""
    parsed = parse_period(period)
    if isinstance(parsed, UserError):
        return [parsed]
    await _serialize_runs(session)
    fees = await _charge_service_fees(session, parsed)
    charges = (await session.scalars(
        select(Charge).where(Charge.period == parsed.name, Charge.invoice_id.is_(None))
        .order_by(Charge.payer_account_id, Charge.account_id, Charge.created_at, Charge.id)
        .with_for_update()
    )).all()
    groups: dict[tuple[int, str], list[Charge]] = defaultdict(list)
    for charge in charges:
        groups[(charge.payer_account_id, charge.currency)].append(charge)
    payers = {row.id: row for row in (await session.scalars(
        select(Account).where(Account.id.in_({payer for payer, _ in groups}))
    )).all()}
    sequence = await _next_sequence(session, parsed)
    now = datetime.now(timezone.utc)
    invoices: list[Invoice] = []
    for (payer_id, _currency), payer_charges in sorted(groups.items()):
        subtotal = sum(charge.amount for charge in payer_charges)
        if subtotal + tax_on(subtotal, tunables.tax_rate_basis_points) > MAX_AMOUNT:
            error = UserError(
                message=f"An invoice of {payers[payer_id].number} would exceed the largest amount "
                        "an invoice can hold; nothing was invoiced.",
                code="INVOICE_TOO_LARGE", field=["period"])
            await session.rollback()
            return [error]
        invoice = await _issue(session, payer=payers[payer_id], charges=payer_charges,
                               period=parsed, sequence=sequence, tunables=tunables, now=now)
        sequence += 1
        invoices.append(invoice)
        record_event(session, actor=actor, action="invoice.issued", account_id=payer_id,
                     target=("invoice", invoice.id),
                     after={"number": invoice.number, "period": parsed.name,
                            "total": invoice.total, "currency": invoice.currency,
                            "lines": len(payer_charges)})
    await session.commit()
    return InvoiceRun(period=parsed, invoices=invoices, fees_charged=fees)


async def set_billing_contact(
    session: AsyncSession, access: AccessMap, principal: Principal | None, *,
    account_id: int, contact_id: int | None,
) -> Account | list[UserError]:
    """BILLING_MANAGE. The contact must belong to the account; ``None`` clears it (then invoices
    go to the owner). Future invoices only: issued ones keep their bill-to snapshot."""
    await require_account(session, access, account_id, Permission.BILLING_MANAGE)
    account = (await lock_accounts(session, [account_id]))[account_id]
    contact = None
    if contact_id is not None:
        contact = await session.get(Contact, contact_id, populate_existing=True)
        if contact is None or contact.account_id != account_id:
            await session.rollback()
            return [UserError(message="That contact is not a contact of this account.",
                              code="CONTACT_NOT_ON_ACCOUNT", field=["contactId"])]
    previous = await session.scalar(select(Contact.id).where(
        Contact.account_id == account_id, Contact.is_billing_contact))
    await session.execute(
        update(Contact).where(Contact.account_id == account_id, Contact.is_billing_contact)
        .values(is_billing_contact=False).execution_options(synchronize_session="fetch")
    )
    await session.flush()
    if contact is not None:
        contact.is_billing_contact = True
    if principal is not None and principal.is_staff:
        record_event(session, actor=principal, action="billing_contact.set", account_id=account_id,
                     target=("contact", contact_id) if contact_id else None,
                     before={"contact_id": previous}, after={"contact_id": contact_id})
    await session.commit()
    return account
