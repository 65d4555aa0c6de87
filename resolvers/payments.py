"""Paying invoices: card payments, offline payments, voiding (DESIGN §1 Payments).

A card payment is short steps, so no database transaction waits on the processor and no retry,
however late, can charge twice:

1. **claim** — with the invoice row locked, insert a ``PENDING`` payment of the amount due and
   commit. A partial unique index allows one pending payment per invoice, so of any number of
   clicks (on any replicas) exactly one claims it; the others are told ``PAYMENT_IN_PROGRESS``;
2. **open** — ask the processor to create the charge, without taking money, under a key unique
   to the payment row (``processor_key``), and store its reference on the row;
3. **confirm** — ask the processor to take the money of that stored charge. Confirming a charge
   that was confirmed before answers its outcome and charges nothing, so a retry after a
   timeout, a crash or a week is safe;
4. **settle** — with the invoice locked again, mark the payment ``SUCCEEDED`` (adding it to the
   invoice, ``PAID`` once covered) or ``FAILED``, audit it and queue the email. ``_settle`` is
   also what a webhook calls; it only moves a payment out of ``PENDING``, so a late or repeated
   answer changes nothing twice.

The client's ``idempotencyKey`` names its attempt (per invoice and user): the same key returns
that attempt's result, or drives it on while it is pending. An attempt nobody drove for
``payment_pending_retry_seconds`` is **abandoned**: the next click, or a staff action, asks the
processor what became of it without ever charging it — settles it if it was paid, cancels it
if it was never confirmed — and then goes on with its own card and key. So a card is only ever
charged by the click that chose it, and never once it is removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from auth.errors import NotFound
from auth.permissions import BILLING_STAFF_ROLES, Permission
from auth.policy import AccessMap, require_staff_role
from auth.principals import Principal
from models.billing import Invoice, InvoiceStatus
from models.contacts import EmailPreference
from models.payments import GatewayEvent, Payment, PaymentKind, PaymentMethod, PaymentStatus
from resolvers.audit_log import record_event
from resolvers.database import begin_write
from resolvers.idempotency import clean_key
from resolvers.invoice_documents import money
from resolvers.live_events import LiveEvent, Topic, publish
from resolvers.outbox import contacts_receiving, queue_email
from resolvers.payment_gateway import (
    ABANDONED_MESSAGE, ChargeOutcome, GatewayUnavailable, PaymentEvent, PaymentGateway,
)
from resolvers.payment_methods import PAYMENTS_UNAVAILABLE, card_of
from resolvers.tunables import Tunables
from resolvers.user_errors import UserError
from resolvers.validation import clean_optional_text

MAX_REFERENCE = 200


@dataclass(frozen=True)
class Paid:
    invoice: Invoice
    payment: Payment
    replayed: bool = False


def _error(code: str, message: str, field: str | None = None) -> UserError:
    return UserError(message=message, code=code, field=[field] if field else None)


IN_PROGRESS = _error("PAYMENT_IN_PROGRESS",
                     "A payment of this invoice is already in progress; wait for its result.", "invoiceId")
KEY_REUSED = _error("IDEMPOTENCY_KEY_REUSED",
                    "This idempotency key was already used with different input.", "idempotencyKey")


async def _locked_invoice(session: AsyncSession, invoice_id: int) -> Invoice | None:
    await begin_write(session)
    return await session.get(Invoice, invoice_id, with_for_update=True, populate_existing=True)


async def _readable_invoice(
    session: AsyncSession, access: AccessMap, invoice_id: int, permission: Permission
) -> Invoice:
    """The invoice, locked, if ``access`` may see its payer and holds ``permission`` there.
    The checks come first: an invoice the caller may not touch costs it no lock."""
    invoice = await session.get(Invoice, invoice_id)
    if invoice is None or not access.can_see(invoice.payer_account_id):
        raise NotFound("No such invoice.")
    access.require(invoice.payer_account_id, permission)
    locked = await _locked_invoice(session, invoice_id)
    assert locked is not None  # invoices are never deleted
    return locked


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
    if payment.failure_code == ABANDONED_CODE:
        return _error("PAYMENT_ABANDONED", payment.failure_message or ABANDONED_MESSAGE)
    return _error("CARD_DECLINED", payment.failure_message or "The card was declined.",
                  "paymentMethodId")


ABANDONED_CODE = "abandoned"


def _is_stale(payment: Payment, tunables: Tunables) -> bool:
    age = datetime.now(timezone.utc) - payment.created_at
    return age > timedelta(seconds=tunables.payment_pending_retry_seconds)


async def pay_invoice(
    session: AsyncSession, access: AccessMap, principal: Principal, *,
    invoice_id: int, payment_method_id: int, idempotency_key: str, gateway: PaymentGateway,
    tunables: Tunables,
) -> Paid | list[UserError]:
    """INVOICES_PAY on the paying account: the amount due, charged to a card on file."""
    invoice = await _readable_invoice(session, access, invoice_id, Permission.INVOICES_PAY)
    key = clean_key(idempotency_key)
    if isinstance(key, UserError) or key is None:
        await session.rollback()
        return [key or _error("INVALID_IDEMPOTENCY_KEY", "An idempotency key is required.",
                              "idempotencyKey")]
    mine = await session.scalar(select(Payment).where(
        Payment.invoice_id == invoice_id, Payment.idempotency_key == key)
        .execution_options(populate_existing=True))
    if mine is not None:
        if mine.payment_method_id != payment_method_id or mine.actor_user_id != principal.user_id:
            await session.rollback()
            return [KEY_REUSED]
        if mine.status is not PaymentStatus.PENDING:
            await session.commit()  # nothing written; keeps ``invoice`` and ``mine`` readable
            if mine.status is PaymentStatus.SUCCEEDED:
                return Paid(invoice=invoice, payment=mine, replayed=True)
            return [_outcome_error(mine)]
        await session.commit()
        return await _drive(session, gateway, mine.id, tunables=tunables, actor=principal)
    refusal = _refusal(invoice)
    if refusal is not None:
        await session.rollback()
        return [refusal]
    if gateway.name == "none":
        await session.rollback()
        return [PAYMENTS_UNAVAILABLE]
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
        if not _is_stale(pending, tunables):
            await session.rollback()
            return [IN_PROGRESS]
        await session.commit()
        settled = await _resolve_abandoned(session, gateway, pending.id, tunables=tunables, actor=principal)
        if settled is not None:
            return [settled]
        return await pay_invoice(session, access, principal, invoice_id=invoice_id,
                                 payment_method_id=payment_method_id, idempotency_key=key,
                                 gateway=gateway, tunables=tunables)
    payment = Payment(
        invoice_id=invoice_id, kind=PaymentKind.CARD, status=PaymentStatus.PENDING,
        amount=invoice.amount_due, currency=invoice.currency, payment_method_id=method.id,
        idempotency_key=key, actor_user_id=principal.user_id,
    )
    session.add(payment)
    try:
        await session.commit()
    except IntegrityError:
        # Another click (on any replica) claimed the invoice first.
        await session.rollback()
        return [IN_PROGRESS]
    return await _drive(session, gateway, payment.id, tunables=tunables, actor=principal)


def processor_key(payment_id: int) -> str:
    """The idempotency key the processor sees when the charge is opened: one per payment row."""
    return f"linkgate-payment-{payment_id}"


async def _drive(
    session: AsyncSession, gateway: PaymentGateway, payment_id: int, *,
    tunables: Tunables, actor: Principal | None,
) -> Paid | list[UserError]:
    """Open (once) and confirm a pending payment for the click that made it. Nothing is
    confirmed unless the row is still pending and holds this very charge, and never with a
    card removed since (then the attempt is only settled, as an abandoned one is)."""
    payment = await session.get(Payment, payment_id, populate_existing=True)
    assert payment is not None and payment.payment_method_id is not None
    invoice = await session.get(Invoice, payment.invoice_id)
    assert invoice is not None
    await session.commit()  # nothing held while the processor works
    if await _card_removed(session, payment.payment_method_id):
        return await _answer(session, payment.id, await _resolve_abandoned(
            session, gateway, payment.id, tunables=tunables, actor=actor))
    method = await session.get(PaymentMethod, payment.payment_method_id)
    assert method is not None
    card = card_of(method)
    await session.commit()  # no connection held while the processor works
    try:
        reference = payment.processor_ref
        if reference is None:
            reference = await gateway.open_charge(
                card=card, amount=payment.amount, currency=payment.currency,
                idempotency_key=processor_key(payment.id), description=f"Invoice {invoice.number}",
                metadata={"payment_id": str(payment.id), "invoice": invoice.number},
            )
            held, pending = await _remember_reference(session, payment.id, reference)
            if held != reference[:100]:
                # Settled meanwhile (taken over as abandoned, or by a webhook), or holding
                # another charge: this one is not the payment's, so it is cancelled.
                await gateway.cancel_charge(reference=reference)
                return await _answer(session, payment.id, None)
            if not pending:  # a concurrent retry of this click already settled this charge
                return await _answer(session, payment.id, None)
        if await _card_removed(session, payment.payment_method_id):
            return await _answer(session, payment.id, await _resolve_abandoned(
                session, gateway, payment.id, tunables=tunables, actor=actor))
        outcome = await gateway.confirm_charge(reference=reference, card=card)
    except GatewayUnavailable:
        return [_outcome_error(payment)]
    await settle_payment(session, payment.id, outcome, actor=actor, tunables=tunables)
    return await _answer(session, payment.id, None)


async def _card_removed(session: AsyncSession, method_id: int) -> bool:
    removed = await session.scalar(select(PaymentMethod.removed_at).where(PaymentMethod.id == method_id))
    await session.commit()
    return removed is not None


async def _answer(session: AsyncSession, payment_id: int, refusal: UserError | None) -> Paid | list[UserError]:
    """What a click hears about its payment, read back as it now stands."""
    payment = await session.get(Payment, payment_id, populate_existing=True)
    assert payment is not None
    if payment.status is PaymentStatus.SUCCEEDED:
        invoice = await session.get(Invoice, payment.invoice_id, populate_existing=True)
        assert invoice is not None
        await session.commit()
        return Paid(invoice=invoice, payment=payment)
    await session.commit()
    if payment.status is PaymentStatus.PENDING and refusal is not None:
        return [refusal]
    return [_outcome_error(payment)]


async def _remember_reference(
    session: AsyncSession, payment_id: int, reference: str
) -> tuple[str | None, bool]:
    """Stored before any money can move, so every later step names this very charge; only on
    a payment still pending with no charge yet. Returns the charge the payment holds afterwards
    and whether it is still pending. A concurrent retry of the same click may have stored the
    very same charge first (the processor opens one per ``processor_key``): that is still ours,
    and cancelling it would cancel the click's own payment."""
    await begin_write(session)
    await session.execute(
        update(Payment).where(Payment.id == payment_id, Payment.status == PaymentStatus.PENDING,
                              Payment.processor_ref.is_(None))
        .values(processor_ref=reference[:100]))
    held = (await session.execute(select(Payment.processor_ref, Payment.status)
                                  .where(Payment.id == payment_id))).one()
    await session.commit()
    return held.processor_ref, held.status is PaymentStatus.PENDING


async def _resolve_abandoned(
    session: AsyncSession, gateway: PaymentGateway, payment_id: int, *,
    tunables: Tunables, actor: Principal | None,
) -> UserError | None:
    """Settle an abandoned attempt without charging it: paid → recorded as paid; confirmed and
    declined, or never confirmed → cancelled (so nobody can confirm it later); no charge ever
    opened → settled as abandoned under the payment's lock (so a late opening finds it settled
    and cancels its charge). ``None`` when the invoice is free again; otherwise why not (it was
    paid after all, or the charge is still running)."""
    payment, _invoice = await _locked_payment(session, payment_id)
    reference = payment.processor_ref
    if reference is None and payment.status is PaymentStatus.PENDING:
        await _settle(session, _invoice, payment, ChargeOutcome(
            "declined", decline_code=ABANDONED_CODE, message=ABANDONED_MESSAGE), actor=actor, tunables=tunables)
        await session.commit()
        return None
    await session.commit()
    try:
        outcome = ChargeOutcome("declined") if reference is None else await gateway.check_charge(reference=reference)
        if reference is not None and outcome.status in ("unconfirmed", "declined"):
            cancelled = await gateway.cancel_charge(reference=reference)
            # A decline keeps its own code; anything else is what the cancel found.
            if not (outcome.status == "declined" and cancelled.status == "declined"):
                outcome = cancelled
    except GatewayUnavailable:
        return IN_PROGRESS
    if outcome.status == "declined" and outcome.decline_code is None:
        outcome = ChargeOutcome("declined", processor_ref=outcome.processor_ref,
                                decline_code=ABANDONED_CODE, message=ABANDONED_MESSAGE)
    settled = await settle_payment(session, payment_id, outcome, actor=actor, tunables=tunables)
    if settled.status is PaymentStatus.SUCCEEDED:
        return _error("ALREADY_PAID", "The invoice was paid by an earlier attempt.", "invoiceId")
    if settled.status is PaymentStatus.PENDING:
        return IN_PROGRESS
    return None


async def _free_for_staff(
    session: AsyncSession, gateway: PaymentGateway, invoice_id: int, *,
    tunables: Tunables, actor: Principal,
) -> UserError | None:
    """Before staff record or void: an attempt in flight blocks them, an abandoned one is
    resolved first (so nothing is paid twice and no invoice stays blocked for good)."""
    pending = await _pending_payment(session, invoice_id)
    if pending is None:
        return None
    if not _is_stale(pending, tunables):
        return IN_PROGRESS
    await session.commit()
    return await _resolve_abandoned(session, gateway, pending.id, tunables=tunables, actor=actor)


async def settle_payment(
    session: AsyncSession, payment_id: int, outcome: ChargeOutcome, *,
    actor: Principal | None, tunables: Tunables,
) -> Payment:
    """Record what the processor said about a pending payment, once; commits."""
    payment, invoice = await _locked_payment(session, payment_id)
    await _settle(session, invoice, payment, outcome, actor=actor, tunables=tunables)
    await session.commit()
    return payment


async def _locked_payment(session: AsyncSession, payment_id: int) -> tuple[Payment, Invoice]:
    """The payment re-read under its invoice's lock (the one order every writer takes)."""
    payment = await session.get(Payment, payment_id)
    assert payment is not None
    invoice = await _locked_invoice(session, payment.invoice_id)
    payment = await session.get(Payment, payment_id, with_for_update=True, populate_existing=True)
    assert invoice is not None and payment is not None
    return payment, invoice


async def _settle(
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
        await _apply(session, invoice, payment, actor=actor, now=now, tunables=tunables)
    else:
        payment.status = PaymentStatus.FAILED
        payment.failure_code = (outcome.decline_code or "card_declined")[:50]
        payment.failure_message = (outcome.message or "The card was declined.")[:300]
        record_event(session, actor=actor, action="payment.declined",
                     account_id=invoice.payer_account_id, target=("invoice", invoice.id),
                     after={"payment": payment.id, "amount": payment.amount,
                            "decline_code": payment.failure_code})


async def _apply(
    session: AsyncSession, invoice: Invoice, payment: Payment, *,
    actor: Principal | None, now: datetime, tunables: Tunables,
) -> None:
    """A succeeded payment counts toward the invoice: audited, and confirmed by email."""
    before = {"status": invoice.status.value, "amount_due": invoice.amount_due}
    invoice.amount_paid += payment.amount
    if invoice.amount_due <= 0 and invoice.status is InvoiceStatus.UNPAID:
        invoice.status = InvoiceStatus.PAID
        invoice.paid_at = now
    publish(session, LiveEvent(Topic.INVOICE_UPDATED, invoice.payer_account_id, invoice.id))
    record_event(session, actor=actor, action="payment.succeeded",
                 account_id=invoice.payer_account_id, target=("invoice", invoice.id),
                 before=before,
                 after={"status": invoice.status.value, "amount_due": invoice.amount_due,
                        "payment": payment.id, "amount": payment.amount, "kind": payment.kind.value,
                        "reference": payment.reference or payment.processor_ref})
    paid = money(payment.amount, payment.currency)
    state = ("It is now paid in full." if invoice.status is InvoiceStatus.PAID
             else f"Still due: {money(invoice.amount_due, invoice.currency)}.")
    await queue_email(
        session, category=EmailPreference.INVOICE,
        # An invoice email like the invoice itself: to the bill-to, copied to INVOICE contacts.
        recipients=[invoice.bill_to_email, *await contacts_receiving(
            session, invoice.payer_account_id, EmailPreference.INVOICE)],
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
        await _settle(session, invoice, payment, event.outcome, actor=None, tunables=tunables)
    await session.commit()  # the event id is kept even when it names no payment of ours
    return True


def _event_matches(event: PaymentEvent, payment: Payment, invoice: Invoice) -> bool:
    """The charge's reference is stored before it can be confirmed (``_drive``), so an event
    about our payment names exactly that reference, and the amount and currency we asked."""
    if event.metadata.get("invoice", invoice.number) != invoice.number:
        return False
    if payment.processor_ref is None or event.outcome.processor_ref != payment.processor_ref:
        return False
    if event.amount is not None and event.amount != payment.amount:
        return False
    return event.currency is None or event.currency.upper() == payment.currency


# -------------------------------------------------------------------------------- staff

async def record_payment(
    session: AsyncSession, access: AccessMap, principal: Principal | None, *,
    invoice_id: int, amount: int, reference: str, idempotency_key: str | None,
    gateway: PaymentGateway, tunables: Tunables,
) -> Paid | list[UserError]:
    """Staff (BILLING or ADMIN): money received outside the card flow; parts add up. With an
    idempotency key, a double submit records the money once."""
    staff = require_staff_role(principal, BILLING_STAFF_ROLES)
    cleaned = clean_optional_text(reference, field=["reference"], max_length=MAX_REFERENCE)
    if isinstance(cleaned, UserError):
        return [cleaned]
    if not cleaned or not any(character.isalnum() for character in cleaned):
        return [_error("REFERENCE_REQUIRED", "Say where the money came from (e.g. the bank "
                       "transfer's reference).", "reference")]
    key = clean_key(idempotency_key)
    if isinstance(key, UserError):
        return [key]
    invoice = await _readable_invoice(session, access, invoice_id, Permission.INVOICES_READ)
    if key is not None:
        earlier = await session.scalar(select(Payment).where(
            Payment.invoice_id == invoice_id, Payment.idempotency_key == key))
        if earlier is not None:
            same = (earlier.kind is PaymentKind.OFFLINE and earlier.amount == amount
                    and earlier.reference == cleaned and earlier.actor_user_id == staff.user_id)
            await session.commit()
            return Paid(invoice=invoice, payment=earlier, replayed=True) if same else [KEY_REUSED]
    blocked = await _free_for_staff(session, gateway, invoice_id, tunables=tunables, actor=staff)
    if blocked is not None:
        return [blocked]
    invoice = await _readable_invoice(session, access, invoice_id, Permission.INVOICES_READ)
    refusal = _refusal(invoice)
    if refusal is None and not 0 < amount <= invoice.amount_due:
        refusal = _error("INVALID_AMOUNT", f"The amount is above zero and at most what is due "
                         f"({money(invoice.amount_due, invoice.currency)}), in minor units.", "amount")
    if refusal is None and await _pending_payment(session, invoice_id) is not None:
        refusal = IN_PROGRESS
    if refusal is not None:
        await session.rollback()
        return [refusal]
    now = datetime.now(timezone.utc)
    payment = Payment(
        invoice_id=invoice_id, kind=PaymentKind.OFFLINE, status=PaymentStatus.SUCCEEDED,
        amount=amount, currency=invoice.currency, reference=cleaned, idempotency_key=key,
        actor_user_id=staff.user_id, created_at=now, settled_at=now,
    )
    session.add(payment)
    try:
        await session.flush()
    except IntegrityError:  # the same key at the same moment: the other one recorded it
        await session.rollback()
        return [IN_PROGRESS]
    await _apply(session, invoice, payment, actor=staff, now=now, tunables=tunables)
    await session.commit()
    return Paid(invoice=invoice, payment=payment)


async def void_invoice(
    session: AsyncSession, access: AccessMap, principal: Principal | None, *,
    invoice_id: int, reason: str, gateway: PaymentGateway, tunables: Tunables,
) -> Invoice | list[UserError]:
    """Staff (BILLING or ADMIN): an invoice nobody has paid any of. Its charges stay invoiced
    (a voided invoice is not billed again by the next run)."""
    staff = require_staff_role(principal, BILLING_STAFF_ROLES)
    cleaned = clean_optional_text(reason, field=["reason"], max_length=500)
    if isinstance(cleaned, UserError):
        return [cleaned]
    if not cleaned:
        return [_error("REASON_REQUIRED", "Say why the invoice is voided.", "reason")]
    await _readable_invoice(session, access, invoice_id, Permission.INVOICES_READ)
    blocked = await _free_for_staff(session, gateway, invoice_id, tunables=tunables, actor=staff)
    invoice = await _readable_invoice(session, access, invoice_id, Permission.INVOICES_READ)
    refusal = blocked or _void_refusal(invoice)
    if refusal is None and await _pending_payment(session, invoice_id) is not None:
        refusal = IN_PROGRESS
    if refusal is not None:
        # The refusal is audited, nothing else is written.
        record_event(session, actor=staff, action="invoice.void_refused",
                     account_id=invoice.payer_account_id, target=("invoice", invoice.id),
                     after={"code": refusal.code})
        await session.commit()
        return [refusal]
    invoice.status = InvoiceStatus.VOID
    publish(session, LiveEvent(Topic.INVOICE_UPDATED, invoice.payer_account_id, invoice.id))
    invoice.voided_at = datetime.now(timezone.utc)
    invoice.void_reason = cleaned
    record_event(session, actor=staff, action="invoice.voided", account_id=invoice.payer_account_id,
                 target=("invoice", invoice.id), before={"status": "UNPAID"},
                 after={"status": "VOID", "reason": cleaned})
    await session.commit()
    return invoice


def _void_refusal(invoice: Invoice) -> UserError | None:
    if invoice.status is InvoiceStatus.VOID:
        return _error("INVOICE_VOID", f"Invoice {invoice.number} is already void.", "invoiceId")
    if invoice.status is InvoiceStatus.PAID:
        return _error("ALREADY_PAID", "A paid invoice cannot be voided.", "invoiceId")
    if invoice.amount_paid > 0:
        return _error("INVOICE_PARTLY_PAID",
                      "Part of this invoice has been paid, so it cannot be voided.", "invoiceId")
    return None
