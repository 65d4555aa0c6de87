"""Cards on file, payments, and the mutations that pay, record and void invoices."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from auth.permissions import Permission
from models.payments import PaymentKind, PaymentStatus
from resolvers import payment_methods, payments
from schema.directives import Requires
from schema.invoices import Invoice
from schema.money import Money
from schema.payloads import UserError
from schema.relay import Node, decode_id_of

PaymentKindType = strawberry.enum(PaymentKind, name="PaymentKind", description="How money arrived.")
PaymentStatusType = strawberry.enum(
    PaymentStatus, name="PaymentStatus",
    description="`PENDING`: sent to the card processor, no answer yet; it holds the invoice, so "
    "no second card payment can start until it is settled.")


@strawberry.type(
    directives=[Requires(permission=Permission.INVOICES_PAY)],
    description="A card on file: only what the card processor returns, never a card number.",
)
class PaymentMethod(Node):
    brand: str = strawberry.field(description="visa, mastercard, amex…")
    last4: str
    exp_month: int
    exp_year: int
    created_at: datetime

    @strawberry.field(description="True once the card's expiry month has passed.")
    def is_expired(self) -> bool:
        now = datetime.now()
        return (self.exp_year, self.exp_month) < (now.year, now.month)

    @classmethod
    def from_model(cls, row: Any) -> PaymentMethod:
        return cls(pk=row.id, account_id=row.account_id, brand=row.brand, last4=row.last4,
                   exp_month=row.exp_month, exp_year=row.exp_year, created_at=row.created_at)


@strawberry.type(
    directives=[Requires(permission=Permission.INVOICES_READ)],
    description="Money applied to an invoice: a card payment, or one staff recorded offline.",
)
class Payment:
    kind: PaymentKindType  # type: ignore[valid-type]
    status: PaymentStatusType  # type: ignore[valid-type]
    amount: Money
    created_at: datetime
    settled_at: datetime | None
    reference: str | None = strawberry.field(
        description="The bank transfer's reference (offline) or the processor's (card).")
    failure_code: str | None = strawberry.field(description="The processor's decline code, if it failed.")
    failure_message: str | None
    account_id: strawberry.Private[int]
    method_pk: strawberry.Private[int | None]

    @strawberry.field(description="The card used (a card payment), even if removed since.")
    async def card(self, info: strawberry.Info) -> CardSummary | None:
        if self.method_pk is None:
            return None
        row = await info.context.loaders.payment_method_by_id.load(self.method_pk)
        return None if row is None else CardSummary(brand=row.brand, last4=row.last4)

    @classmethod
    def from_model(cls, row: Any, account_id: int) -> Payment:
        return cls(
            kind=row.kind, status=row.status, amount=Money(amount=row.amount, currency=row.currency),
            created_at=row.created_at, settled_at=row.settled_at,
            reference=row.reference or row.processor_ref, failure_code=row.failure_code,
            failure_message=row.failure_message, account_id=account_id,
            method_pk=row.payment_method_id,
        )


@strawberry.type(description="Which card paid: brand and last four digits.")
class CardSummary:
    brand: str
    last4: str


@strawberry.input
class AddPaymentMethodInput:
    account_id: strawberry.ID
    token: str = strawberry.field(
        description="The token the processor's card form returned (Stripe: `tok_…` or `pm_…`; "
        "the test gateway takes Stripe's test tokens, e.g. `tok_visa`, `tok_chargeDeclined`).")


@strawberry.type
class AddPaymentMethodPayload:
    payment_method: PaymentMethod | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class RemovePaymentMethodInput:
    payment_method_id: strawberry.ID


@strawberry.type
class RemovePaymentMethodPayload:
    removed_payment_method_id: strawberry.ID | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class PayInvoiceInput:
    invoice_id: strawberry.ID
    payment_method_id: strawberry.ID
    idempotency_key: str = strawberry.field(
        description="One per attempt (e.g. a UUID made when the Pay button is shown). The same "
        "key returns that attempt's result, or asks the processor again while it is pending: "
        "the card is never charged twice.")


@strawberry.type
class PayInvoicePayload:
    invoice: Invoice | None = None
    payment: Payment | None = None
    replayed: bool = strawberry.field(
        default=False, description="True when this key had already paid: nothing new was charged.")
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class RecordPaymentInput:
    invoice_id: strawberry.ID
    amount: int = strawberry.field(description="Minor units, above zero, at most the amount due.")
    reference: str = strawberry.field(description="Where the money came from, e.g. the bank "
                                      "transfer's reference (1–200 characters).")
    idempotency_key: str | None = strawberry.field(
        default=None, description="Send the same key again (a double submit, a retry) and the "
        "money is recorded once.")


@strawberry.input
class VoidInvoiceInput:
    invoice_id: strawberry.ID
    reason: str = strawberry.field(description="Why (1–500 characters); shown to the customer as "
                                   "`Invoice.voidReason` and kept in the audit log.")


@strawberry.type
class InvoicePayload:
    invoice: Invoice | None = None
    payment: Payment | None = None
    replayed: bool = strawberry.field(
        default=False, description="True when this key had already recorded it: nothing new was written.")
    user_errors: list[UserError] = strawberry.field(default_factory=list)


def _paid(result: payments.Paid) -> dict[str, Any]:
    return {"invoice": Invoice.from_model(result.invoice),
            "payment": Payment.from_model(result.payment, result.invoice.payer_account_id)}


async def add_payment_method(info: strawberry.Info, input: AddPaymentMethodInput) -> AddPaymentMethodPayload:
    context = info.context
    result = await payment_methods.add_payment_method(
        context.session, context.access, context.signed_in(),
        account_id=decode_id_of(input.account_id, "Account", field="accountId"),
        token=input.token, gateway=context.payments, throttle=context.throttle,
    )
    if isinstance(result, list):
        return AddPaymentMethodPayload(user_errors=UserError.list_from(result))
    return AddPaymentMethodPayload(payment_method=PaymentMethod.from_model(result))


async def remove_payment_method(
    info: strawberry.Info, input: RemovePaymentMethodInput
) -> RemovePaymentMethodPayload:
    context = info.context
    method = await payment_methods.remove_payment_method(
        context.session, context.access, context.signed_in(),
        payment_method_id=decode_id_of(input.payment_method_id, "PaymentMethod", field="paymentMethodId"),
        gateway=context.payments,
    )
    return RemovePaymentMethodPayload(removed_payment_method_id=PaymentMethod.from_model(method).id)


async def pay_invoice(info: strawberry.Info, input: PayInvoiceInput) -> PayInvoicePayload:
    context = info.context
    result = await payments.pay_invoice(
        context.session, context.access, context.signed_in(),
        invoice_id=decode_id_of(input.invoice_id, "Invoice", field="invoiceId"),
        payment_method_id=decode_id_of(input.payment_method_id, "PaymentMethod", field="paymentMethodId"),
        idempotency_key=input.idempotency_key, gateway=context.payments, tunables=context.tunables,
    )
    if isinstance(result, list):
        return PayInvoicePayload(user_errors=UserError.list_from(result))
    return PayInvoicePayload(**_paid(result), replayed=result.replayed)


async def record_payment(info: strawberry.Info, input: RecordPaymentInput) -> InvoicePayload:
    context = info.context
    result = await payments.record_payment(
        context.session, context.access, context.principal,
        invoice_id=decode_id_of(input.invoice_id, "Invoice", field="invoiceId"),
        amount=input.amount, reference=input.reference, idempotency_key=input.idempotency_key,
        gateway=context.payments, tunables=context.tunables,
    )
    if isinstance(result, list):
        return InvoicePayload(user_errors=UserError.list_from(result))
    return InvoicePayload(**_paid(result), replayed=result.replayed)


async def void_invoice(info: strawberry.Info, input: VoidInvoiceInput) -> InvoicePayload:
    context = info.context
    result = await payments.void_invoice(
        context.session, context.access, context.principal,
        invoice_id=decode_id_of(input.invoice_id, "Invoice", field="invoiceId"), reason=input.reason,
        gateway=context.payments, tunables=context.tunables,
    )
    if isinstance(result, list):
        return InvoicePayload(user_errors=UserError.list_from(result))
    return InvoicePayload(invoice=Invoice.from_model(result))


@strawberry.type
class PaymentMutations:
    add_payment_method: AddPaymentMethodPayload = strawberry.mutation(
        resolver=add_payment_method,
        description="BILLING_MANAGE. Keep a card on file from the processor's token. userErrors: "
        "INVALID_CARD_TOKEN, CARD_DECLINED (the processor refused the card), "
        "TOO_MANY_PAYMENT_METHODS, GATEWAY_UNAVAILABLE, PAYMENTS_UNAVAILABLE; refused cards are "
        "throttled (RATE_LIMITED).")
    remove_payment_method: RemovePaymentMethodPayload = strawberry.mutation(
        resolver=remove_payment_method,
        description="BILLING_MANAGE on the card's account. It can no longer be used to pay.")
    pay_invoice: PayInvoicePayload = strawberry.mutation(
        resolver=pay_invoice,
        description="INVOICES_PAY on the paying account: charge the amount due to a card on file. "
        "userErrors: CARD_DECLINED, ALREADY_PAID, INVOICE_VOID, PAYMENT_IN_PROGRESS, "
        "PAYMENT_PENDING, PAYMENT_ABANDONED, PAYMENT_METHOD_NOT_FOUND, INVALID_IDEMPOTENCY_KEY, "
        "IDEMPOTENCY_KEY_REUSED, PAYMENTS_UNAVAILABLE.")
    record_payment: InvoicePayload = strawberry.mutation(
        resolver=record_payment,
        description="Staff (BILLING or ADMIN): money received offline; partial payments add up.")
    void_invoice: InvoicePayload = strawberry.mutation(
        resolver=void_invoice,
        description="Staff (BILLING or ADMIN): void an invoice nothing has been paid on.")


# Payloads handing out guarded objects: listed in ``schema.GUARDED_TYPES``.
PAYLOAD_TYPES: list[type] = [
    AddPaymentMethodPayload, PayInvoicePayload, InvoicePayload, PaymentMethod, Payment,
]
