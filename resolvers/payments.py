"""Paying invoices: cards on file, card payments, offline payments, voiding (DESIGN §1 Payments).

A card payment is three short steps, so no database transaction waits on the processor:

1. **claim** — with the invoice row locked, insert a ``PENDING`` payment of the amount due and
   commit. A partial unique index allows one pending payment per invoice, so of two clicks
   (on any replicas) exactly one claims it; the other is told ``PAYMENT_IN_PROGRESS``;
2. **charge** — call the gateway with a key unique to that payment row, so a retry (after a
   timeout, a crash, a second click later) is the same charge to the processor, never a new one;
3. **settle** — with the invoice locked again, mark the payment ``SUCCEEDED`` (adding it to
   the invoice, which is ``PAID`` once covered) or ``FAILED``, audit it and queue the email.
   ``settle_payment`` is also what a processor's webhook calls; it only moves a payment out of
   ``PENDING``, so a late or repeated confirmation changes nothing twice.

The client's ``idempotencyKey`` names its attempt: the same key returns that attempt's result,
or drives it again while it is still pending. A payment left pending (no answer and no
retry) may be driven again by any click after ``payment_pending_retry_seconds``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from auth.errors import NotFound
from auth.permissions import BILLING_STAFF_ROLES, Permission
from auth.policy import AccessMap, require_staff_role
from auth.principals import Principal
from models.billing import Invoice, InvoiceStatus
from models.contacts import EmailPreference
from models.payments import GatewayEvent, Payment, PaymentKind, PaymentMethod, PaymentStatus
from resolvers.accounts import require_account
from resolvers.audit_log import record_event
from resolvers.database import begin_write
from resolvers.idempotency import clean_key
from resolvers.invoice_documents import money
from resolvers.outbox import queue_email
from resolvers.payment_gateway import (
    CardOnFile, CardRejected, ChargeOutcome, GatewayUnavailable, PaymentEvent, PaymentGateway,
)
from resolvers.tunables import Tunables
from resolvers.user_errors import UserError
from resolvers.validation import clean_optional_text

MAX_PAYMENT_METHODS = 10
MAX_REFERENCE = 200


@dataclass(frozen=True)
class Paid:
    invoice: Invoice
    payment: Payment
    replayed: bool = False


def card_of(method: PaymentMethod) -> CardOnFile:
    return CardOnFile(processor_ref=method.processor_ref, brand=method.brand, last4=method.last4,
                      exp_month=method.exp_month, exp_year=method.exp_year,
                      customer_ref=method.processor_customer_ref)


def _error(code: str, message: str, field: str | None = None) -> UserError:
    return UserError(message=message, code=code, field=[field] if field else None)


UNAVAILABLE = _error("PAYMENTS_UNAVAILABLE", "Card payments are not available on this server.")


# ---------------------------------------------------------------------------------- cards

async def add_payment_method(
    session: AsyncSession, access: AccessMap, principal: Principal | None, *,
    account_id: int, token: str, gateway: PaymentGateway,
) -> PaymentMethod | list[UserError]:
    """BILLING_MANAGE. ``token`` comes from the processor's card form: no card number ever
    reaches the gateway server."""
    account = await require_account(session, access, account_id, Permission.BILLING_MANAGE)
    token = token.strip()
    if not 1 <= len(token) <= 200 or not token.isprintable():
        return [_error("INVALID_CARD_TOKEN", "The card token is 1 to 200 printable characters.", "token")]
    methods = (await session.scalars(select(PaymentMethod).where(
        PaymentMethod.account_id == account_id, PaymentMethod.removed_at.is_(None)))).all()
    if len(methods) >= MAX_PAYMENT_METHODS:
        return [_error("TOO_MANY_PAYMENT_METHODS",
                       f"An account keeps at most {MAX_PAYMENT_METHODS} cards; remove one first.")]
    customer = next((m.processor_customer_ref for m in methods if m.gateway == gateway.name), None)
    # No transaction stays open while the processor is asked (commit ends this read-only one
    # and, unlike a rollback, keeps the loaded rows readable).
    await session.commit()
    try:
        card = await gateway.add_card(token=token, customer_ref=customer, account_number=account.number)
    except CardRejected as refused:
        return [_error(refused.code, refused.message, "token")]
    except GatewayUnavailable:
        if gateway.name == "none":
            return [UNAVAILABLE]
        return [_error("GATEWAY_UNAVAILABLE", "The card processor did not answer; try again.")]
    await begin_write(session)
    method = PaymentMethod(
        account_id=account_id, gateway=gateway.name, brand=card.brand[:20], last4=card.last4[:4],
        exp_month=card.exp_month, exp_year=card.exp_year, processor_ref=card.processor_ref,
        processor_customer_ref=card.customer_ref,
        added_by_user_id=principal.user_id if principal else None,
    )
    session.add(method)
    await session.flush()
    record_event(session, actor=principal, action="payment_method.added", account_id=account_id,
                 target=("payment_method", method.id),
                 after={"brand": method.brand, "last4": method.last4,
                        "expires": f"{method.exp_month:02d}/{method.exp_year}"})
    await session.commit()
    return method


async def remove_payment_method(
    session: AsyncSession, access: AccessMap, principal: Principal | None, *,
    payment_method_id: int, gateway: PaymentGateway,
) -> PaymentMethod:
    """BILLING_MANAGE on the card's account. Kept as a row (payments point at it), unusable."""
    await begin_write(session)
    method = await session.get(PaymentMethod, payment_method_id, with_for_update=True,
                               populate_existing=True)
    if method is None or method.removed_at is not None or not access.can_see(method.account_id):
        raise NotFound("No such payment method.")
    access.require(method.account_id, Permission.BILLING_MANAGE)
    method.removed_at = datetime.now(timezone.utc)
    record_event(session, actor=principal, action="payment_method.removed",
                 account_id=method.account_id, target=("payment_method", method.id),
                 before={"brand": method.brand, "last4": method.last4})
    await session.commit()
    try:
        await gateway.remove_card(card_of(method))
    except GatewayUnavailable:
        pass  # removed here whatever the processor says: it can no longer be charged from here
    return method


# ------------------------------------------------------------------------------- invoices

async def _locked_invoice(session: AsyncSession, invoice_id: int) -> Invoice | None:
    await begin_write(session)
    return await session.get(Invoice, invoice_id, with_for_update=True, populate_existing=True)


async def _readable_invoice(
    session: AsyncSession, access: AccessMap, invoice_id: int, permission: Permission
) -> Invoice:
    """The locked invoice, if ``access`` may see its payer and holds ``permission`` there."""
    invoice = await _locked_invoice(session, invoice_id)
    if invoice is None or not access.can_see(invoice.payer_account_id):
        await session.rollback()
        raise NotFound("No such invoice.")
    try:
        access.require(invoice.payer_account_id, permission)
    except Exception:
        await session.rollback()
        raise
    return invoice


async def _pending_payment(session: AsyncSession, invoice_id: int) -> Payment | None:
    return await session.scalar(select(Payment).where(
        Payment.invoice_id == invoice_id, Payment.status == PaymentStatus.PENDING)
        .execution_options(populate_existing=True))


def _refusal(invoice: Invoice) -> UserError | None:
    """Why no payment can be taken for ``invoice`` now, if there is a reason."""
    if invoice.status is InvoiceStatus.VOID:
        return _error("INVOICE_VOID", f"Invoice {invoice.number} was voided; there is nothing to pay.",
                      "invoiceId")
    if invoice.status is InvoiceStatus.PAID or invoice.amount_due <= 0:
        return _error("ALREADY_PAID", f"Invoice {invoice.number} is already paid.", "invoiceId")
    return None


def _outcome_error(payment: Payment) -> UserError:
    if payment.status is PaymentStatus.PENDING:
        return _error("PAYMENT_PENDING",
                      "The card processor has not confirmed the payment yet. Retry with the same "
                      "idempotency key to ask again; the card is never charged twice.")
    return _error("CARD_DECLINED", payment.failure_message or "The card was declined.",
                  "paymentMethodId")


async def pay_invoice(
    session: AsyncSession, access: AccessMap, principal: Principal | None, *,
    invoice_id: int, payment_method_id: int, idempotency_key: str, gateway: PaymentGateway,
    tunables: Tunables,
) -> Paid | list[UserError]:
    """INVOICES_PAY on the paying account: the amount due, charged to a card on file."""
    key = clean_key(idempotency_key)
    if isinstance(key, UserError) or key is None:
        return [key or _error("INVALID_IDEMPOTENCY_KEY", "An idempotency key is required.",
                              "idempotencyKey")]
    invoice = await _readable_invoice(session, access, invoice_id, Permission.INVOICES_PAY)
    mine = await session.scalar(select(Payment).where(
        Payment.invoice_id == invoice_id, Payment.idempotency_key == key)
        .execution_options(populate_existing=True))
    if mine is not None:
        if mine.payment_method_id != payment_method_id:
            await session.rollback()
            return [_error("IDEMPOTENCY_KEY_REUSED",
                           "This idempotency key was already used with different input.",
                           "idempotencyKey")]
        if mine.status is not PaymentStatus.PENDING:
            await session.commit()  # nothing written; keeps ``invoice`` and ``mine`` readable
            if mine.status is PaymentStatus.SUCCEEDED:
                return Paid(invoice=invoice, payment=mine, replayed=True)
            return [_outcome_error(mine)]
        return await _drive(session, gateway, mine.id, tunables=tunables, actor=principal)
    refusal = _refusal(invoice)
    if refusal is not None:
        await session.rollback()
        return [refusal]
    if gateway.name == "none":
        await session.rollback()
        return [UNAVAILABLE]
    method = await session.get(PaymentMethod, payment_method_id)
    if method is None or method.removed_at is not None or method.account_id != invoice.payer_account_id:
        await session.rollback()
        return [_error("PAYMENT_METHOD_NOT_FOUND",
                       "No such card on the paying account; add one or pick another.",
                       "paymentMethodId")]
    if method.gateway != gateway.name:
        await session.rollback()
        return [_error("PAYMENT_METHOD_NOT_FOUND",
                       "That card belongs to another payment processor; add it again.",
                       "paymentMethodId")]
    pending = await _pending_payment(session, invoice_id)
    if pending is not None:
        stale = pending.created_at < datetime.now(timezone.utc) - timedelta(
            seconds=tunables.payment_pending_retry_seconds)
        if not stale:
            await session.rollback()
            return [_error("PAYMENT_IN_PROGRESS",
                           "A payment of this invoice is already in progress; wait for its result.",
                           "invoiceId")]
        return await _drive(session, gateway, pending.id, tunables=tunables, actor=principal)
    payment = Payment(
        invoice_id=invoice_id, kind=PaymentKind.CARD, status=PaymentStatus.PENDING,
        amount=invoice.amount_due, currency=invoice.currency, payment_method_id=method.id,
        idempotency_key=key, actor_user_id=principal.user_id if principal else None,
    )
    session.add(payment)
    try:
        await session.commit()
    except IntegrityError:
        # Another click (on any replica) claimed the invoice first.
        await session.rollback()
        return [_error("PAYMENT_IN_PROGRESS",
                       "A payment of this invoice is already in progress; wait for its result.",
                       "invoiceId")]
    return await _drive(session, gateway, payment.id, tunables=tunables, actor=principal)


def processor_key(payment_id: int) -> str:
    """The idempotency key the processor sees: one per payment row, for every retry of it."""
    return f"linkgate-payment-{payment_id}"


async def _drive(
    session: AsyncSession, gateway: PaymentGateway, payment_id: int, *,
    tunables: Tunables, actor: Principal | None,
) -> Paid | list[UserError]:
    """Charge a pending payment (again: the processor key makes a repeat the same charge)."""
    payment = await session.get(Payment, payment_id, populate_existing=True)
    assert payment is not None and payment.payment_method_id is not None
    method = await session.get(PaymentMethod, payment.payment_method_id)
    invoice = await session.get(Invoice, payment.invoice_id)
    assert method is not None and invoice is not None
    await session.commit()  # nothing held while the processor works
    try:
        outcome = await gateway.charge(
            card=card_of(method), amount=payment.amount, currency=payment.currency,
            idempotency_key=processor_key(payment.id),
            description=f"Invoice {invoice.number}",
            metadata={"payment_id": str(payment.id), "invoice": invoice.number},
        )
    except GatewayUnavailable:
        return [_outcome_error(payment)]
    settled = await settle_payment(session, payment.id, outcome, actor=actor, tunables=tunables)
    if settled.status is PaymentStatus.SUCCEEDED:
        invoice = await session.get(Invoice, settled.invoice_id, populate_existing=True)
        assert invoice is not None
        return Paid(invoice=invoice, payment=settled)
    return [_outcome_error(settled)]


async def settle_payment(
    session: AsyncSession, payment_id: int, outcome: ChargeOutcome, *,
    actor: Principal | None, tunables: Tunables,
) -> Payment:
    """Record what the processor said about a pending payment, once; commits."""
    payment, invoice = await _locked_payment(session, payment_id)
    _settle(session, invoice, payment, outcome, actor=actor, tunables=tunables)
    await session.commit()
    return payment


async def _locked_payment(session: AsyncSession, payment_id: int) -> tuple[Payment, Invoice]:
    """The payment re-read under its invoice's lock (the one order every writer takes)."""
    payment = await session.get(Payment, payment_id)
    assert payment is not None
    invoice = await _locked_invoice(session, payment.invoice_id)
    payment = await session.get(Payment, payment_id, populate_existing=True)
    assert invoice is not None and payment is not None
    return payment, invoice


def _settle(
    session: AsyncSession, invoice: Invoice, payment: Payment, outcome: ChargeOutcome, *,
    actor: Principal | None, tunables: Tunables,
) -> None:
    """Only a PENDING payment moves, so a late or repeated answer changes nothing twice."""
    if payment.status is not PaymentStatus.PENDING:
        return
    # Kept even while pending: a webhook finds the payment by it.
    payment.processor_ref = outcome.processor_ref or payment.processor_ref
    if outcome.status == "pending":
        return
    now = datetime.now(timezone.utc)
    payment.settled_at = now
    if outcome.succeeded:
        payment.status = PaymentStatus.SUCCEEDED
        _apply(session, invoice, payment, actor=actor, now=now, tunables=tunables)
    else:
        payment.status = PaymentStatus.FAILED
        payment.failure_code = (outcome.decline_code or "card_declined")[:50]
        payment.failure_message = (outcome.message or "The card was declined.")[:300]
        record_event(session, actor=actor, action="payment.declined",
                     account_id=invoice.payer_account_id, target=("invoice", invoice.id),
                     after={"payment": payment.id, "amount": payment.amount,
                            "decline_code": payment.failure_code})


def _apply(
    session: AsyncSession, invoice: Invoice, payment: Payment, *,
    actor: Principal | None, now: datetime, tunables: Tunables,
) -> None:
    """A succeeded payment counts toward the invoice: audited, and confirmed by email."""
    before = {"status": invoice.status.value, "amount_due": invoice.amount_due}
    invoice.amount_paid += payment.amount
    if invoice.amount_due <= 0 and invoice.status is InvoiceStatus.UNPAID:
        invoice.status = InvoiceStatus.PAID
        invoice.paid_at = now
    record_event(session, actor=actor, action="payment.succeeded",
                 account_id=invoice.payer_account_id, target=("invoice", invoice.id),
                 before=before,
                 after={"status": invoice.status.value, "amount_due": invoice.amount_due,
                        "payment": payment.id, "amount": payment.amount, "kind": payment.kind.value,
                        "reference": payment.reference or payment.processor_ref})
    paid = money(payment.amount, payment.currency)
    state = ("It is now paid in full." if invoice.status is InvoiceStatus.PAID
             else f"Still due: {money(invoice.amount_due, invoice.currency)}.")
    queue_email(
        session, recipients=[invoice.bill_to_email], category=EmailPreference.INVOICE,
        subject=f"Payment received for invoice {invoice.number}",
        body=(f"Hello {invoice.bill_to_name},\n\nWe received {paid} for invoice {invoice.number} "
              f"on {now:%Y-%m-%d}. {state}\n\n{tunables.public_url}/invoices\n"),
        account_id=invoice.payer_account_id, related=("invoice", invoice.id),
    )


async def apply_gateway_event(
    session: AsyncSession, event: PaymentEvent, *, gateway: str, tunables: Tunables,
) -> bool:
    """A verified webhook event: settles its payment, once per event id. False if it was
    seen before (processors deliver an event again until they get a 2xx).

    The event id and the settlement commit together, so a crash between them cannot leave
    the event marked as seen and the payment unsettled. The event must agree with the payment
    it names (its invoice number, and its charge reference once known): another deployment
    sharing the processor account cannot settle our payments."""
    await begin_write(session)
    payment = None
    if event.payment_id is not None:
        payment = await session.get(Payment, event.payment_id)
    if payment is None and event.outcome.processor_ref:
        payment = await session.scalar(select(Payment).where(
            Payment.processor_ref == event.outcome.processor_ref))
    invoice = None
    if payment is not None and payment.kind is PaymentKind.CARD:
        payment, invoice = await _locked_payment(session, payment.id)
        if not _event_matches(event, payment, invoice):
            payment = invoice = None
    session.add(GatewayEvent(id=event.event_id[:100], gateway=gateway, type=event.type[:100]))
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        return False
    if payment is not None and invoice is not None:
        _settle(session, invoice, payment, event.outcome, actor=None, tunables=tunables)
    await session.commit()  # the event id is kept even when it names no payment of ours
    return True


def _event_matches(event: PaymentEvent, payment: Payment, invoice: Invoice) -> bool:
    named = event.metadata.get("invoice")
    if named is not None and named != invoice.number:
        return False
    reference = event.outcome.processor_ref
    return payment.processor_ref is None or reference is None or payment.processor_ref == reference


# -------------------------------------------------------------------------------- staff

async def record_payment(
    session: AsyncSession, access: AccessMap, principal: Principal | None, *,
    invoice_id: int, amount: int, reference: str, tunables: Tunables,
) -> Paid | list[UserError]:
    """Staff (BILLING or ADMIN): money received outside the card flow; parts add up."""
    staff = require_staff_role(principal, BILLING_STAFF_ROLES)
    cleaned = clean_optional_text(reference, field=["reference"], max_length=MAX_REFERENCE)
    if isinstance(cleaned, UserError):
        return [cleaned]
    if not cleaned:
        return [_error("REFERENCE_REQUIRED", "Say where the money came from (e.g. the bank "
                       "transfer's reference).", "reference")]
    invoice = await _readable_invoice(session, access, invoice_id, Permission.INVOICES_READ)
    refusal = _refusal(invoice)
    if refusal is None and not 0 < amount <= invoice.amount_due:
        refusal = _error("INVALID_AMOUNT", f"The amount is above zero and at most what is due "
                         f"({money(invoice.amount_due, invoice.currency)}), in minor units.", "amount")
    if refusal is None and await _pending_payment(session, invoice_id) is not None:
        refusal = _error("PAYMENT_IN_PROGRESS",
                         "A card payment of this invoice is in progress; wait for its result.")
    if refusal is not None:
        await session.rollback()
        return [refusal]
    now = datetime.now(timezone.utc)
    payment = Payment(
        invoice_id=invoice_id, kind=PaymentKind.OFFLINE, status=PaymentStatus.SUCCEEDED,
        amount=amount, currency=invoice.currency, reference=cleaned,
        actor_user_id=staff.user_id, settled_at=now,
    )
    session.add(payment)
    await session.flush()
    _apply(session, invoice, payment, actor=staff, now=now, tunables=tunables)
    await session.commit()
    return Paid(invoice=invoice, payment=payment)


async def void_invoice(
    session: AsyncSession, access: AccessMap, principal: Principal | None, *,
    invoice_id: int, reason: str,
) -> Invoice | list[UserError]:
    """Staff (BILLING or ADMIN): an invoice nobody has paid any of. Its charges stay invoiced
    (a voided invoice is not billed again by the next run)."""
    staff = require_staff_role(principal, BILLING_STAFF_ROLES)
    cleaned = clean_optional_text(reason, field=["reason"], max_length=500)
    if isinstance(cleaned, UserError):
        return [cleaned]
    if not cleaned:
        return [_error("REASON_REQUIRED", "Say why the invoice is voided.", "reason")]
    invoice = await _readable_invoice(session, access, invoice_id, Permission.INVOICES_READ)
    refusal = None
    if invoice.status is InvoiceStatus.VOID:
        refusal = _error("INVOICE_VOID", f"Invoice {invoice.number} is already void.", "invoiceId")
    elif invoice.status is InvoiceStatus.PAID:
        refusal = _error("ALREADY_PAID", "A paid invoice cannot be voided.", "invoiceId")
    elif invoice.amount_paid > 0:
        refusal = _error("INVOICE_PARTLY_PAID",
                         "Part of this invoice has been paid, so it cannot be voided.", "invoiceId")
    elif await _pending_payment(session, invoice_id) is not None:
        refusal = _error("PAYMENT_IN_PROGRESS",
                         "A card payment of this invoice is in progress; wait for its result.")
    if refusal is not None:
        # The refusal is audited, nothing else is written.
        record_event(session, actor=staff, action="invoice.void_refused",
                     account_id=invoice.payer_account_id, target=("invoice", invoice.id),
                     after={"code": refusal.code})
        await session.commit()
        return [refusal]
    invoice.status = InvoiceStatus.VOID
    invoice.voided_at = datetime.now(timezone.utc)
    invoice.void_reason = cleaned
    record_event(session, actor=staff, action="invoice.voided", account_id=invoice.payer_account_id,
                 target=("invoice", invoice.id), before={"status": "UNPAID"},
                 after={"status": "VOID", "reason": cleaned})
    await session.commit()
    return invoice

