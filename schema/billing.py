"""Billing mutations: credits (purchase, transfer, staff usage), low-credit reminders, the
billing contact and the invoice run; and signed links to download several invoices at once."""

from __future__ import annotations

import strawberry

from auth.download_tokens import MAX_INVOICES_PER_LINK
from auth.errors import BadInput
from auth.permissions import BILLING_STAFF_ROLES
from auth.policy import require_staff_role
from resolvers import invoicing, ledger, reminders
from resolvers.invoice_documents import check_invoices_readable
from resolvers.ledger import CreditsPosted
from resolvers.user_errors import UserError as UserErrorValue
from schema.accounts import Account
from schema.credits import CreditLedgerEntry
from schema.invoices import Invoice, download_url
from schema.payloads import UserError
from schema.relay import decode_id_of

REPLAYED = "True when an earlier request with the same idempotency key made this change: " \
    "its result is returned and nothing new was written."


def _errors(values: list[UserErrorValue]) -> list[UserError]:
    return [UserError.from_value(value) for value in values]


@strawberry.input
class PurchaseCreditsInput:
    account_id: strawberry.ID
    credits: int = strawberry.field(description="Whole credits, above zero.")
    idempotency_key: str | None = strawberry.field(
        default=None, description="Repeat a request with the same key to get its first result.")


@strawberry.type
class PurchaseCreditsPayload:
    account: Account | None = None
    ledger_entry: CreditLedgerEntry | None = None
    replayed: bool = strawberry.field(default=False, description=REPLAYED)
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class TransferCreditsInput:
    from_account_id: strawberry.ID
    to_account_id: strawberry.ID
    credits: int = strawberry.field(description="Whole credits, above zero, at most the balance.")
    note: str | None = strawberry.field(default=None, description="Up to 200 characters.")
    idempotency_key: str | None = None


@strawberry.type
class TransferCreditsPayload:
    from_account: Account | None = None
    to_account: Account | None = None
    from_entry: CreditLedgerEntry | None = None
    to_entry: CreditLedgerEntry | None = None
    transfer_id: str | None = None
    replayed: bool = strawberry.field(default=False, description=REPLAYED)
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class RecordUsageInput:
    account_id: strawberry.ID
    credits: int
    description: str = strawberry.field(description="What consumed the credits (1–200 characters).")
    idempotency_key: str | None = None


@strawberry.type
class RecordUsagePayload:
    account: Account | None = None
    ledger_entry: CreditLedgerEntry | None = None
    replayed: bool = strawberry.field(default=False, description=REPLAYED)
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class SetLowCreditReminderInput:
    account_id: strawberry.ID
    enabled: bool
    threshold: int = strawberry.field(description="Credits, zero or more.")
    recipients: list[str] = strawberry.field(
        default_factory=list, description="Up to 10 emails; none means the account's owner.")


@strawberry.type
class SetLowCreditReminderPayload:
    account: Account | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class SetBillingContactInput:
    account_id: strawberry.ID
    contact_id: strawberry.ID | None = strawberry.field(
        default=None, description="A contact of the same account; null: invoices go to the owner.")


@strawberry.type
class SetBillingContactPayload:
    account: Account | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class RunInvoicingInput:
    period: str = strawberry.field(description="A month that has ended, as YYYY-MM.")


@strawberry.type
class RunInvoicingPayload:
    period: str | None = None
    invoices: list[Invoice] = strawberry.field(
        default_factory=list, description="The invoices this run issued (none on a re-run).")
    user_errors: list[UserError] = strawberry.field(default_factory=list)


def _posted(result: CreditsPosted) -> dict[str, object]:
    """The fields a purchase and a usage payload share."""
    return {"account": Account.from_model(result.account),
            "ledger_entry": CreditLedgerEntry.from_model(result.entry), "replayed": result.replayed}


async def purchase_credits(info: strawberry.Info, input: PurchaseCreditsInput) -> PurchaseCreditsPayload:
    context = info.context
    result = await ledger.purchase_credits(
        context.session, context.access, context.principal,
        account_id=decode_id_of(input.account_id, "Account", field="accountId"),
        credits=input.credits, idempotency_key=input.idempotency_key, tunables=context.tunables,
    )
    if isinstance(result, list):
        return PurchaseCreditsPayload(user_errors=_errors(result))
    return PurchaseCreditsPayload(**_posted(result))  # type: ignore[arg-type]


async def transfer_credits(info: strawberry.Info, input: TransferCreditsInput) -> TransferCreditsPayload:
    context = info.context
    result = await ledger.transfer_credits(
        context.session, context.access, context.principal,
        from_account_id=decode_id_of(input.from_account_id, "Account", field="fromAccountId"),
        to_account_id=decode_id_of(input.to_account_id, "Account", field="toAccountId"),
        credits=input.credits, note=input.note, idempotency_key=input.idempotency_key,
    )
    if isinstance(result, list):
        return TransferCreditsPayload(user_errors=_errors(result))
    return TransferCreditsPayload(
        from_account=Account.from_model(result.from_account),
        to_account=Account.from_model(result.to_account),
        from_entry=CreditLedgerEntry.from_model(result.from_entry),
        to_entry=CreditLedgerEntry.from_model(result.to_entry),
        transfer_id=result.transfer_id, replayed=result.replayed,
    )


async def record_usage(info: strawberry.Info, input: RecordUsageInput) -> RecordUsagePayload:
    context = info.context
    result = await ledger.record_usage(
        context.session, context.access, context.principal,
        account_id=decode_id_of(input.account_id, "Account", field="accountId"),
        credits=input.credits, description=input.description,
        idempotency_key=input.idempotency_key,
    )
    if isinstance(result, list):
        return RecordUsagePayload(user_errors=_errors(result))
    return RecordUsagePayload(**_posted(result))  # type: ignore[arg-type]


async def set_low_credit_reminder(
    info: strawberry.Info, input: SetLowCreditReminderInput
) -> SetLowCreditReminderPayload:
    context = info.context
    result = await reminders.set_low_credit_reminder(
        context.session, context.access, context.principal,
        account_id=decode_id_of(input.account_id, "Account", field="accountId"),
        enabled=input.enabled, threshold=input.threshold, recipients=list(input.recipients),
    )
    if isinstance(result, list):
        return SetLowCreditReminderPayload(user_errors=_errors(result))
    return SetLowCreditReminderPayload(account=Account.from_model(result))


async def set_billing_contact(
    info: strawberry.Info, input: SetBillingContactInput
) -> SetBillingContactPayload:
    context = info.context
    account_id = decode_id_of(input.account_id, "Account", field="accountId")
    contact_id = None
    if input.contact_id is not None:
        contact_id = decode_id_of(input.contact_id, "Contact", field="contactId")
    result = await invoicing.set_billing_contact(
        context.session, context.access, context.principal,
        account_id=account_id, contact_id=contact_id,
    )
    if isinstance(result, list):
        return SetBillingContactPayload(user_errors=_errors(result))
    return SetBillingContactPayload(account=Account.from_model(result))


async def run_invoicing(info: strawberry.Info, input: RunInvoicingInput) -> RunInvoicingPayload:
    context = info.context
    staff = require_staff_role(context.principal, BILLING_STAFF_ROLES)
    result = await invoicing.run_invoicing(
        context.session, period=input.period, tunables=context.tunables, actor=staff,
    )
    if isinstance(result, list):
        return RunInvoicingPayload(user_errors=_errors(result))
    return RunInvoicingPayload(
        period=result.period.name, invoices=[Invoice.from_model(row) for row in result.invoices],
    )


async def invoice_download_url(info: strawberry.Info, ids: list[strawberry.ID]) -> str:
    """One signed link for several invoices (a ZIP); each needs INVOICES_READ, like `Invoice`."""
    if not 1 <= len(ids) <= MAX_INVOICES_PER_LINK:
        raise BadInput(f"Ask for 1 to {MAX_INVOICES_PER_LINK} invoices at once.", field="ids")
    pks = tuple(dict.fromkeys(decode_id_of(global_id, "Invoice", field="ids") for global_id in ids))
    await check_invoices_readable(info.context.session, info.context.access, pks)
    return await download_url(info, list(pks))


@strawberry.type
class BillingMutations:
    purchase_credits: PurchaseCreditsPayload = strawberry.mutation(
        resolver=purchase_credits,
        description="CREDITS_PURCHASE. Adds credits and a charge (credits × unit price) for the next invoice.")
    transfer_credits: TransferCreditsPayload = strawberry.mutation(
        resolver=transfer_credits,
        description="CREDITS_TRANSFER on the source, CREDITS_READ on the destination; both entries or none.")
    record_usage: RecordUsagePayload = strawberry.mutation(
        resolver=record_usage, description="Staff (BILLING or ADMIN): debit credits consumed.")
    set_low_credit_reminder: SetLowCreditReminderPayload = strawberry.mutation(
        resolver=set_low_credit_reminder,
        description="BILLING_MANAGE. Email when a debit takes the balance below the threshold.")
    set_billing_contact: SetBillingContactPayload = strawberry.mutation(
        resolver=set_billing_contact,
        description="BILLING_MANAGE. The contact future invoices are addressed to.")
    run_invoicing: RunInvoicingPayload = strawberry.mutation(
        resolver=run_invoicing,
        description="Staff (BILLING or ADMIN): invoice every uninvoiced charge of an ended month.")


# Payloads handing out guarded objects: listed in ``schema.GUARDED_TYPES``.
PAYLOAD_TYPES: list[type] = [
    PurchaseCreditsPayload, TransferCreditsPayload, RecordUsagePayload,
    SetLowCreditReminderPayload, SetBillingContactPayload, RunInvoicingPayload,
]
