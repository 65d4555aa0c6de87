"""The ``stripe`` payment gateway, end to end: GraphQL over HTTP to the real app, configured
with ``LINKGATE_PAYMENT_GATEWAY=stripe`` against a local stub of Stripe's API
(``tests/stripe_stub.py``), and Stripe's signed webhook on ``POST /payments/webhook``.

Cards are added and charged through the official ``stripe`` package: a charge is a
PaymentIntent opened unconfirmed, its id stored on the payment row, then confirmed. A decline,
a timeout, an outage and a webhook each leave the invoice, its payments and the processor in
agreement, and no retry or repeated click is ever a second charge: not after Stripe forgot the
idempotency key (24 hours), not when an abandoned attempt is taken over by another click or by
staff (its PaymentIntent is read and cancelled, never confirmed), not once its card is removed.
The attacker's side: forged and replayed webhooks, events about another charge, other
people's invoices and cards, a sub-account without ``INVOICES_PAY``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from linkgate.app import create_app
from linkgate.settings import Settings
from linkgate.stripe_gateway import StripeGateway
from models import Invoice, StaffRole
from models.audit import AuditEvent
from models.database import create_session_factory
from models.payments import GatewayEvent, Payment, PaymentMethod, PaymentStatus
from resolvers.payment_gateway import (
    ABANDONED_MESSAGE, CardRejected, ChargeOutcome, GatewayUnavailable, InvalidWebhook,
)
from resolvers.payments import processor_key
from schema.relay import decode_global_id, encode_global_id
from tests.billing_world import SeededCustomer, grant, issue_invoice, new_user, seeded_customer
from tests.conftest import TEST_SECRET, GraphQLClient, client_for
from tests.stripe_stub import StripeStub, running_stub

TIMEOUT = 0.5  # LINKGATE_PAYMENT_TIMEOUT_SECONDS here: the stub's slow answers outlast it
RETRY = 60  # LINKGATE_PAYMENT_PENDING_RETRY_SECONDS here: a pending payment older is abandoned
TOTAL = 12_100

ADD_CARD = """
mutation($input: AddPaymentMethodInput!) {
  addPaymentMethod(input: $input) {
    paymentMethod { id brand last4 expMonth expYear }
    userErrors { code message field }
  }
}"""
REMOVE_CARD = """
mutation($input: RemovePaymentMethodInput!) {
  removePaymentMethod(input: $input) { removedPaymentMethodId userErrors { code message } }
}"""
PAY = """
mutation($input: PayInvoiceInput!) {
  payInvoice(input: $input) {
    invoice { status amountDue { amount } }
    payment { status reference amount { amount currency } card { brand last4 } }
    replayed
    userErrors { code message field }
  }
}"""
INVOICE = """
query($id: ID!) {
  node(id: $id) { ... on Invoice {
    status amountDue { amount } paidAt
    payments { kind status reference failureCode failureMessage card { brand last4 } }
  } }
}"""
CARDS = """
query($id: ID!) { node(id: $id) { ... on Account { paymentMethods { id brand last4 expMonth expYear } } } }
"""
RECORD = """
mutation($input: RecordPaymentInput!) {
  recordPayment(input: $input) {
    invoice { status amountDue { amount } }
    payment { kind status amount { amount } reference }
    replayed
    userErrors { code message field }
  }
}"""
VOID = """
mutation($input: VoidInvoiceInput!) {
  voidInvoice(input: $input) { invoice { status } userErrors { code message field } }
}"""


# ------------------------------------------------------------------------------ the world

@dataclass
class Billed:
    """A customer of its own, with an unpaid invoice on its first account."""

    customer: SeededCustomer
    invoice_id: int
    number: str
    account_number: str

    @property
    def token(self) -> str:
        return self.customer.token

    @property
    def account(self) -> str:
        return self.customer.gid(0)

    @property
    def invoice(self) -> str:
        return encode_global_id("Invoice", self.invoice_id)


async def billed(engine: AsyncEngine, *, accounts: int = 1, total: int = TOTAL) -> Billed:
    customer = await seeded_customer(engine, accounts=accounts)
    invoice = await issue_invoice(engine, customer.account_ids[0], subtotal=round(total / 1.21),
                                  bill_to_email=customer.email)
    assert invoice.total == total
    return Billed(customer, invoice.id, invoice.number, invoice.payer_number)


async def add_card(shop: GraphQLClient, token: str, account: str, card: str) -> dict[str, Any]:
    result = await shop.execute(ADD_CARD, {"input": {"accountId": account, "token": card}}, token=token)
    assert "errors" not in result, result
    return result["data"]["addPaymentMethod"]


async def card_on(shop: GraphQLClient, who: Billed, card: str = "tok_visa", account: str | None = None) -> str:
    added = await add_card(shop, who.token, account or who.account, card)
    assert added["userErrors"] == [], added
    return added["paymentMethod"]["id"]


async def pay(shop: GraphQLClient, who: Billed, method: str, key: str, *, token: str | None = None) -> dict[str, Any]:
    result = await shop.execute(PAY, {"input": {"invoiceId": who.invoice, "paymentMethodId": method,
                                                "idempotencyKey": key}}, token=token or who.token)
    assert "errors" not in result, result
    return result["data"]["payInvoice"]


async def invoice_state(shop: GraphQLClient, who: Billed) -> dict[str, Any]:
    result = await shop.execute(INVOICE, {"id": who.invoice}, token=who.token)
    assert "errors" not in result, result
    return result["data"]["node"]


def codes(payload: dict[str, Any]) -> list[str]:
    return [error["code"] for error in payload["userErrors"]]


async def payments_of(engine: AsyncEngine, invoice_id: int) -> list[Payment]:
    async with create_session_factory(engine)() as session:
        return list((await session.scalars(
            select(Payment).where(Payment.invoice_id == invoice_id).order_by(Payment.id))).all())


async def amount_paid(engine: AsyncEngine, invoice_id: int) -> int:
    async with create_session_factory(engine)() as session:
        return int(await session.scalar(select(Invoice.amount_paid).where(Invoice.id == invoice_id)) or 0)


async def audited(engine: AsyncEngine, account_id: int, action: str) -> int:
    async with create_session_factory(engine)() as session:
        return int(await session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.account_id == account_id, AuditEvent.action == action)) or 0)


async def card_row(engine: AsyncEngine, method_gid: str) -> PaymentMethod:
    async with create_session_factory(engine)() as session:
        row = await session.get(PaymentMethod, decode_global_id(method_gid)[1])
        assert row is not None
        return row


async def abandoned(engine: AsyncEngine, who: Billed) -> None:
    """Nobody drove the invoice's pending payment for longer than the retry window (its
    server died, its customer went away): claimed an hour ago, as far as the database knows."""
    async with create_session_factory(engine)() as session:
        changed = await session.execute(update(Payment).where(
            Payment.invoice_id == who.invoice_id, Payment.status == PaymentStatus.PENDING,
        ).values(created_at=datetime.now(timezone.utc) - timedelta(seconds=RETRY + 3600)))
        await session.commit()
    assert changed.rowcount == 1  # type: ignore[attr-defined]


async def pm_of(engine: AsyncEngine, method_gid: str) -> str:
    """The card's PaymentMethod at Stripe (``pm_…``)."""
    return (await card_row(engine, method_gid)).processor_ref


async def event_recorded(engine: AsyncEngine, event_id: str) -> bool:
    async with create_session_factory(engine)() as session:
        return await session.get(GatewayEvent, event_id) is not None


async def until_answered(stub: StripeStub, timeout: float = 10) -> None:
    """Until the stub has sent every slow answer it was holding."""
    deadline = time.monotonic() + timeout
    while stub.in_flight or stub.locked:
        assert time.monotonic() < deadline, "the stub is still holding an answer"
        await asyncio.sleep(0.05)


# ------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def stub() -> Iterator[StripeStub]:
    yield from running_stub()


@pytest.fixture(autouse=True)
def calm_stub(stub: StripeStub) -> Iterator[None]:
    """Each test sets the stub's moods it needs; none outlives the test."""
    yield
    stub.slow_charges, stub.slow_opens, stub.outage, stub.confirm_outage = 0.0, 0.0, None, None
    stub.charge_status = "succeeded"


def stripe_settings(database_url: str, stub: StripeStub, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url, "secret_key": TEST_SECRET, "answer_floor_seconds": 0,
        "payment_gateway": "stripe", "stripe_api_key": stub.api_key,
        "stripe_webhook_secret": stub.webhook_secret, "stripe_api_base": stub.url,
        "payment_timeout_seconds": TIMEOUT, "payment_pending_retry_seconds": RETRY,
        "login_client_max_failures": 1_000_000,
        "mail_links_per_client": 1_000_000, **overrides,
    }
    return Settings(**values)


@pytest.fixture(scope="module")
async def shop(database_url: str, stub: StripeStub, engine: AsyncEngine) -> AsyncIterator[GraphQLClient]:
    """The real app with the stripe gateway, over HTTP (in process)."""
    app = create_app(stripe_settings(database_url, stub), engine=engine)
    async with client_for(app) as http:
        yield GraphQLClient(http)


async def deliver(shop: GraphQLClient, body: bytes, headers: dict[str, str]) -> Any:
    return await shop.http.post("/payments/webhook", content=body, headers=headers)


# ---------------------------------------------------------------------------------- cards

async def test_a_card_is_a_payment_method_attached_to_one_customer_per_account(
    shop: GraphQLClient, engine: AsyncEngine, stub: StripeStub
) -> None:
    who = await billed(engine)
    customers = len(stub.customers)
    added = await add_card(shop, who.token, who.account, "tok_visa")
    assert added["userErrors"] == []
    assert {k: v for k, v in added["paymentMethod"].items() if k != "id"} == {
        "brand": "visa", "last4": "4242", "expMonth": 12, "expYear": 2034}
    # Stripe.js may have made the PaymentMethod itself: its pm_… is accepted as the token.
    made = stub.payment_method("tok_mastercard")
    second = await add_card(shop, who.token, who.account, made)
    assert second["userErrors"] == [] and second["paymentMethod"]["last4"] == "4444"

    listed = (await shop.execute(CARDS, {"id": who.account}, token=who.token))["data"]["node"]
    assert [(m["brand"], m["last4"]) for m in listed["paymentMethods"]] == [("visa", "4242"), ("mastercard", "4444")]
    # One Stripe customer for the account, made with the first card; both cards attached to it.
    first, second_row = [await card_row(engine, m["id"]) for m in listed["paymentMethods"]]
    assert len(stub.customers) == customers + 1 and second_row.processor_ref == made
    customer = first.processor_customer_ref
    assert customer is not None and second_row.processor_customer_ref == customer
    assert stub.customers[customer]["metadata"] == {"account": who.account_number}
    assert {stub.method(row.processor_ref)["customer"] for row in (first, second_row)} == {customer}
    assert await audited(engine, who.customer.account_ids[0], "payment_method.added") == 2


async def test_a_token_stripe_refuses_adds_no_card(shop: GraphQLClient, engine: AsyncEngine) -> None:
    who = await billed(engine)
    unknown = await add_card(shop, who.token, who.account, "tok_neverIssued")
    assert unknown == {"paymentMethod": None, "userErrors": [{
        "code": "INVALID_CARD_TOKEN", "field": ["token"],
        "message": "The card processor did not accept the card token; enter the card again."}]}
    expired = await add_card(shop, who.token, who.account, "tok_chargeDeclinedExpiredCard")
    assert expired["userErrors"] == [{"code": "CARD_DECLINED", "field": ["token"], "message": "Your card has expired."}]
    listed = (await shop.execute(CARDS, {"id": who.account}, token=who.token))["data"]["node"]
    assert listed["paymentMethods"] == []


async def test_removing_a_card_detaches_it_at_stripe(shop: GraphQLClient, engine: AsyncEngine, stub: StripeStub) -> None:
    who = await billed(engine)
    method = await card_on(shop, who)
    pm = (await card_row(engine, method)).processor_ref
    assert stub.method(pm)["customer"] is not None
    result = await shop.execute(REMOVE_CARD, {"input": {"paymentMethodId": method}}, token=who.token)
    assert result["data"]["removePaymentMethod"] == {"removedPaymentMethodId": method, "userErrors": []}
    assert stub.method(pm)["customer"] is None
    refused = await pay(shop, who, method, "after-removal")
    assert codes(refused) == ["PAYMENT_METHOD_NOT_FOUND"]


# -------------------------------------------------------------------------------- charges

async def test_paying_charges_the_card_once_with_the_payment_rows_key(
    shop: GraphQLClient, engine: AsyncEngine, stub: StripeStub
) -> None:
    who = await billed(engine)
    method = await card_on(shop, who)
    before = stub.total_charges
    paid = await pay(shop, who, method, "first-click")
    assert paid["userErrors"] == [] and paid["replayed"] is False
    assert paid["invoice"] == {"status": "PAID", "amountDue": {"amount": 0}}
    assert paid["payment"]["status"] == "SUCCEEDED" and paid["payment"]["card"] == {"brand": "visa", "last4": "4242"}
    assert paid["payment"]["amount"] == {"amount": TOTAL, "currency": "EUR"}
    [payment] = await payments_of(engine, who.invoice_id)
    key = processor_key(payment.id)
    assert stub.total_charges == before + 1 and stub.charges[key] == 1
    intent = stub.intent_for(key)
    assert paid["payment"]["reference"] == intent["id"] == payment.processor_ref
    assert (intent["amount"], intent["currency"], intent["status"]) == (TOTAL, "eur", "succeeded")
    assert intent["metadata"] == {"payment_id": str(payment.id), "invoice": who.number}
    assert intent["description"] == f"Invoice {who.number}"
    assert await amount_paid(engine, who.invoice_id) == TOTAL
    assert await audited(engine, who.customer.account_ids[0], "payment.succeeded") == 1

    # The same click again is answered from the database: Stripe is not asked again.
    requests = len(stub.requests)
    again = await pay(shop, who, method, "first-click")
    assert again["replayed"] is True and again["invoice"]["status"] == "PAID"
    assert len(stub.requests) == requests
    later = await pay(shop, who, method, "another-click")
    assert codes(later) == ["ALREADY_PAID"] and len(stub.requests) == requests
    assert stub.total_charges == before + 1


@pytest.mark.parametrize(("card", "last4", "decline", "message"), [
    ("tok_chargeDeclined", "0002", "generic_decline", "Your card was declined."),
    ("tok_chargeCustomerFail", "0341", "generic_decline", "Your card was declined."),
    ("tok_chargeDeclinedInsufficientFunds", "9995", "insufficient_funds", "Your card has insufficient funds."),
])
async def test_a_declined_card_leaves_the_invoice_unpaid(
    shop: GraphQLClient, engine: AsyncEngine, stub: StripeStub, card: str, last4: str, decline: str, message: str
) -> None:
    who = await billed(engine)
    declining = await card_on(shop, who, card)
    before = stub.total_charges
    declined = await pay(shop, who, declining, "declined-click")
    assert declined == {"invoice": None, "payment": None, "replayed": False, "userErrors": [
        {"code": "CARD_DECLINED", "message": message, "field": ["paymentMethodId"]}]}
    state = await invoice_state(shop, who)
    assert state["status"] == "UNPAID" and state["amountDue"] == {"amount": TOTAL}
    [failed] = state["payments"]
    [row] = await payments_of(engine, who.invoice_id)
    assert failed == {"kind": "CARD", "status": "FAILED", "reference": stub.intent_for(processor_key(row.id))["id"],
                      "failureCode": decline, "failureMessage": message, "card": {"brand": "visa", "last4": last4}}
    assert stub.total_charges == before
    assert await audited(engine, who.customer.account_ids[0], "payment.declined") == 1

    # The same key is the same (failed) attempt: told again, Stripe not asked again.
    requests = len(stub.requests)
    assert codes(await pay(shop, who, declining, "declined-click")) == ["CARD_DECLINED"]
    assert len(stub.requests) == requests
    # Another card, another attempt: paid.
    paying = await card_on(shop, who, "tok_visa")
    paid = await pay(shop, who, paying, "second-attempt")
    assert paid["invoice"]["status"] == "PAID" and stub.total_charges == before + 1


async def test_a_timeout_leaves_the_invoice_unpaid_and_the_retry_charges_once(
    shop: GraphQLClient, engine: AsyncEngine, stub: StripeStub
) -> None:
    """Stripe charged the card but its answer to the confirmation came after the timeout: the
    payment is pending, the invoice unpaid and held; the retry with the same key confirms the
    same stored PaymentIntent, which Stripe answers with its outcome, charging nothing new."""
    who = await billed(engine)
    method = await card_on(shop, who)
    before = stub.total_charges
    stub.slow_charges = TIMEOUT * 4
    started = time.monotonic()
    pending = await pay(shop, who, method, "click-1")
    assert time.monotonic() - started < TIMEOUT * 3, "the click waited past the timeout"
    assert codes(pending) == ["PAYMENT_PENDING"]
    [payment] = await payments_of(engine, who.invoice_id)
    key = processor_key(payment.id)
    intent = stub.intent_for(key)
    # The PaymentIntent's id was stored before it was confirmed.
    assert payment.status is PaymentStatus.PENDING and payment.processor_ref == intent["id"]
    assert stub.charges[key] == 1 and intent["status"] == "succeeded"
    state = await invoice_state(shop, who)
    assert state["status"] == "UNPAID" and [p["status"] for p in state["payments"]] == ["PENDING"]

    # A second click (another key) while the first is pending does not reach Stripe.
    requests = len(stub.requests)
    assert codes(await pay(shop, who, method, "click-2")) == ["PAYMENT_IN_PROGRESS"]
    assert len(stub.requests) == requests
    # The retry while Stripe is still answering the confirmation: the PaymentIntent is locked
    # (Stripe's 429 lock_timeout), still pending.
    assert stub.locked == {intent["id"]}
    assert codes(await pay(shop, who, method, "click-1")) == ["PAYMENT_PENDING"]
    await until_answered(stub)

    stub.slow_charges = 0
    retried = await pay(shop, who, method, "click-1")
    assert retried["userErrors"] == [] and retried["invoice"]["status"] == "PAID"
    # Opened once (the retries used the stored reference), confirmed three times, charged once.
    assert stub.attempts[key] == 1 and stub.confirms[intent["id"]] == 3
    assert stub.charges[key] == 1 and stub.total_charges == before + 1
    assert retried["payment"]["reference"] == intent["id"]
    assert await amount_paid(engine, who.invoice_id) == TOTAL
    assert [p.status for p in await payments_of(engine, who.invoice_id)] == [PaymentStatus.SUCCEEDED]


@pytest.mark.parametrize("lost", ["confirmation answered late", "confirmation not answered", "open answered late"])
async def test_a_retry_after_stripe_forgot_the_key_still_charges_once(
    shop: GraphQLClient, engine: AsyncEngine, stub: StripeStub, lost: str
) -> None:
    """The review's case: a payment left pending by a timeout is retried after Stripe has
    forgotten its idempotency key (24 hours), so Stripe would make a new PaymentIntent for the
    key. The retry confirms the stored one instead: one charge, however late."""
    who = await billed(engine)
    method = await card_on(shop, who)
    before = stub.total_charges
    if lost == "confirmation answered late":
        stub.slow_charges = TIMEOUT * 4  # charged at Stripe, the answer lost
    elif lost == "confirmation not answered":
        stub.confirm_outage = 503  # opened, never confirmed
    else:
        stub.slow_opens = TIMEOUT * 4  # opened at Stripe, its id never stored
    assert codes(await pay(shop, who, method, "late-click")) == ["PAYMENT_PENDING"]
    await until_answered(stub)
    stub.slow_charges, stub.slow_opens, stub.confirm_outage = 0.0, 0.0, None
    [payment] = await payments_of(engine, who.invoice_id)
    key = processor_key(payment.id)
    [first] = stub.intents_for(key)
    assert payment.status is PaymentStatus.PENDING
    assert payment.processor_ref == (None if lost == "open answered late" else first["id"])
    assert stub.total_charges == before + (lost == "confirmation answered late")

    stub.forget_idempotency_keys()
    retried = await pay(shop, who, method, "late-click")
    assert retried["userErrors"] == [] and retried["invoice"] == {"status": "PAID", "amountDue": {"amount": 0}}
    assert stub.total_charges == before + 1 and stub.charges[key] == 1
    [row] = await payments_of(engine, who.invoice_id)
    assert row.status is PaymentStatus.SUCCEEDED and retried["payment"]["reference"] == row.processor_ref
    intents = stub.intents_for(key)
    if lost == "open answered late":
        # Stripe made a second PaymentIntent for the forgotten key; the first one, whose id
        # never reached us, was never confirmed and took nothing.
        assert [i["id"] for i in intents] == [first["id"], row.processor_ref]
        assert (intents[0]["status"], intents[0]["amount_received"], stub.confirms[first["id"]]) == (
            "requires_confirmation", 0, 0)
    else:
        assert [i["id"] for i in intents] == [first["id"]] == [row.processor_ref]  # no new PaymentIntent
    assert await amount_paid(engine, who.invoice_id) == TOTAL
    assert await audited(engine, who.customer.account_ids[0], "payment.succeeded") == 1
    # And once more, the key forgotten again: answered from the database.
    stub.forget_idempotency_keys()
    requests = len(stub.requests)
    assert (await pay(shop, who, method, "late-click"))["replayed"] is True
    assert len(stub.requests) == requests and stub.total_charges == before + 1


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_an_outage_charges_nothing_and_the_retry_pays(
    shop: GraphQLClient, engine: AsyncEngine, stub: StripeStub, status: int
) -> None:
    who = await billed(engine)
    method = await card_on(shop, who)
    before = stub.total_charges
    stub.outage = status
    refused = await add_card(shop, who.token, who.account, "tok_mastercard")
    assert codes(refused) == ["GATEWAY_UNAVAILABLE"]
    assert codes(await pay(shop, who, method, "during-outage")) == ["PAYMENT_PENDING"]
    assert (await invoice_state(shop, who))["status"] == "UNPAID" and stub.total_charges == before
    stub.outage = None
    paid = await pay(shop, who, method, "during-outage")
    assert paid["invoice"]["status"] == "PAID" and stub.total_charges == before + 1


async def test_concurrent_clicks_in_one_process_charge_once(
    shop: GraphQLClient, engine: AsyncEngine, stub: StripeStub
) -> None:
    """Ten clicks at once (each its own key), one server: one charge; the rest are told the
    invoice is being paid or is paid. (Two processes on PostgreSQL: test_payment_concurrency.)"""
    who = await billed(engine)
    method = await card_on(shop, who)
    before = stub.total_charges
    stub.slow_charges = 0.2
    results = await asyncio.gather(*(pay(shop, who, method, f"storm-{n}") for n in range(10)))
    paid = [r for r in results if not r["userErrors"]]
    assert len(paid) == 1 and paid[0]["invoice"]["status"] == "PAID"
    assert {c for r in results for c in codes(r)} <= {"PAYMENT_IN_PROGRESS", "ALREADY_PAID"}
    assert stub.total_charges == before + 1
    assert [p.status for p in await payments_of(engine, who.invoice_id)] == [PaymentStatus.SUCCEEDED]


# ------------------------------------------------------------------------------- webhooks

async def pending_payment(shop: GraphQLClient, engine: AsyncEngine, stub: StripeStub) -> tuple[Billed, str, Payment]:
    """An invoice whose card payment Stripe is still processing (pending, held)."""
    who = await billed(engine)
    method = await card_on(shop, who)
    stub.charge_status = "processing"
    assert codes(await pay(shop, who, method, "processing-click")) == ["PAYMENT_PENDING"]
    stub.charge_status = "succeeded"
    [payment] = await payments_of(engine, who.invoice_id)
    assert payment.status is PaymentStatus.PENDING
    return who, method, payment


async def test_a_signed_success_event_pays_the_pending_payment_once(
    shop: GraphQLClient, engine: AsyncEngine, stub: StripeStub
) -> None:
    who, method, payment = await pending_payment(shop, engine, stub)
    intent = stub.finished(stub.intent_for(processor_key(payment.id)), "succeeded")
    body, headers = stub.signed_event("payment_intent.succeeded", intent)
    response = await deliver(shop, body, headers)
    assert response.status_code == 200 and response.json() == {"received": True, "applied": True}
    state = await invoice_state(shop, who)
    assert state["status"] == "PAID" and state["paidAt"] is not None
    assert [(p["status"], p["reference"]) for p in state["payments"]] == [("SUCCEEDED", intent["id"])]
    assert await audited(engine, who.customer.account_ids[0], "payment.succeeded") == 1

    # Stripe delivers an event again until it gets a 2xx: the second delivery changes nothing.
    again = await deliver(shop, body, {**headers, "stripe-signature": stub.sign(body)})
    assert again.status_code == 200 and again.json() == {"received": True, "applied": False}
    assert await amount_paid(engine, who.invoice_id) == TOTAL
    assert await audited(engine, who.customer.account_ids[0], "payment.succeeded") == 1
    # The customer's retry of the click is answered from the database.
    requests = len(stub.requests)
    replay = await pay(shop, who, method, "processing-click")
    assert replay["replayed"] is True and len(stub.requests) == requests


async def test_an_event_about_another_charge_settles_nothing(
    shop: GraphQLClient, engine: AsyncEngine, stub: StripeStub
) -> None:
    """A signed event settles our payment only if it is about the very PaymentIntent stored on
    it, for the amount and currency we asked. Another deployment on the same Stripe account
    (its payment ids are ours too), or another charge made with our metadata, names our
    payment and invoice: acknowledged (Stripe stops sending it), nothing changed."""
    who, method, payment = await pending_payment(shop, engine, stub)
    intent = stub.finished(stub.intent_for(processor_key(payment.id)), "succeeded")
    assert intent["metadata"] == {"payment_id": str(payment.id), "invoice": who.number}
    # A real, other PaymentIntent at Stripe, paid, carrying our payment's metadata.
    other = await billed(engine)
    elsewhere = await pay(shop, other, await card_on(shop, other), "elsewhere")
    assert elsewhere["userErrors"] == []
    other_intent = {**stub.intent(elsewhere["payment"]["reference"]), "metadata": intent["metadata"]}
    for changed in ({"id": other_intent["id"], "amount": other_intent["amount"]},
                    {**other_intent, "amount": TOTAL},
                    {"id": "pi_from_another_deployment"},
                    {"amount": TOTAL - 1, "amount_received": TOTAL - 1},
                    {"amount": TOTAL * 100, "amount_received": TOTAL * 100},
                    {"currency": "usd"},
                    {"metadata": {**intent["metadata"], "invoice": "INV-ELSEWHERE-000001"}}):
        for kind in ("payment_intent.succeeded", "payment_intent.payment_failed"):
            body, headers = stub.signed_event(kind, {**intent, **changed})
            response = await deliver(shop, body, headers)
            assert response.status_code == 200 and response.json() == {"received": True, "applied": True}
            assert await event_recorded(engine, json.loads(body)["id"])
            [row] = await payments_of(engine, who.invoice_id)
            assert row.status is PaymentStatus.PENDING and row.processor_ref == intent["id"], changed
    assert (await invoice_state(shop, who))["status"] == "UNPAID"
    assert await amount_paid(engine, who.invoice_id) == 0
    assert await audited(engine, who.customer.account_ids[0], "payment.succeeded") == 0
    assert await audited(engine, who.customer.account_ids[0], "payment.declined") == 0
    # The genuine event still settles it.
    response = await deliver(shop, *stub.signed_event("payment_intent.succeeded", intent))
    assert response.json() == {"received": True, "applied": True}
    state = await invoice_state(shop, who)
    assert state["status"] == "PAID" and [(p["status"], p["reference"]) for p in state["payments"]] == [
        ("SUCCEEDED", intent["id"])]
    assert (await pay(shop, who, method, "processing-click"))["replayed"] is True


async def test_a_signed_failure_event_frees_the_invoice(
    shop: GraphQLClient, engine: AsyncEngine, stub: StripeStub
) -> None:
    who, method, payment = await pending_payment(shop, engine, stub)
    intent = stub.finished(stub.intent_for(processor_key(payment.id)), "requires_payment_method",
                           decline_code="insufficient_funds")
    response = await deliver(shop, *stub.signed_event("payment_intent.payment_failed", intent))
    assert response.json() == {"received": True, "applied": True}
    state = await invoice_state(shop, who)
    assert state["status"] == "UNPAID"
    assert [(p["status"], p["failureCode"], p["failureMessage"]) for p in state["payments"]] == [
        ("FAILED", "insufficient_funds", "Your card has insufficient funds.")]
    assert await audited(engine, who.customer.account_ids[0], "payment.declined") == 1
    paid = await pay(shop, who, method, "after-the-failure")
    assert paid["invoice"]["status"] == "PAID"


async def test_events_the_payments_do_not_use_are_acknowledged(
    shop: GraphQLClient, engine: AsyncEngine, stub: StripeStub
) -> None:
    other = await deliver(shop, *stub.signed_event("customer.created", {"id": "cus_elsewhere", "object": "customer"}))
    assert other.status_code == 200 and other.json() == {"received": True, "applied": False}
    # A payment Stripe made for someone else on the account: recorded as seen, nothing paid.
    foreign = {"id": "pi_not_ours_" + uuid.uuid4().hex[:8], "object": "payment_intent", "status": "succeeded",
               "amount": 500, "currency": "eur", "metadata": {}}
    body, headers = stub.signed_event("payment_intent.succeeded", foreign)
    response = await deliver(shop, body, headers)
    assert response.json() == {"received": True, "applied": True}
    assert await event_recorded(engine, json.loads(body)["id"])


async def test_forged_replayed_and_malformed_webhooks_are_refused_and_change_nothing(
    shop: GraphQLClient, engine: AsyncEngine, stub: StripeStub
) -> None:
    who, _, payment = await pending_payment(shop, engine, stub)
    intent = stub.finished(stub.intent_for(processor_key(payment.id)), "succeeded")
    body, headers = stub.signed_event("payment_intent.succeeded", intent)
    event_id = json.loads(body)["id"]

    def signed(payload: bytes) -> dict[str, str]:
        return {"content-type": "application/json", "stripe-signature": stub.sign(payload)}

    tampered = body.replace(b'"amount": 12100', b'"amount": 1')
    assert tampered != body
    deliveries = {
        "signed with another secret": (body, {**headers, "stripe-signature": stub.sign(body, secret="whsec_forged")}),
        "no signature": (body, {"content-type": "application/json"}),
        "a signature of garbage": (body, {**headers, "stripe-signature": "t=now,v1=zzz"}),
        "the body altered after signing": (tampered, headers),
        # Captured an hour ago and sent again: a valid signature, outside the tolerance.
        "an old delivery replayed": (body, {**headers, "stripe-signature": stub.sign(body, timestamp=int(time.time()) - 3600)}),
        "not JSON": (b"payment_intent.succeeded", signed(b"payment_intent.succeeded")),
        "not UTF-8": (b"\xff\xfe{}", signed(b"\xff\xfe{}")),
        "a JSON array": (b"[]", signed(b"[]")),
        "an event without data": (b'{"id": "evt_x1", "object": "event", "type": "payment_intent.succeeded"}',
                                  signed(b'{"id": "evt_x1", "object": "event", "type": "payment_intent.succeeded"}')),
        "an event id that is not a string": (b'{"id": 7, "object": "event", "type": "x", "data": {}}',
                                             signed(b'{"id": 7, "object": "event", "type": "x", "data": {}}')),
        "empty": (b"", signed(b"")),
    }
    for what, (payload, sent) in deliveries.items():
        response = await deliver(shop, payload, sent)
        assert response.status_code == 400, (what, response.status_code, response.text)
        assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", what
    assert not await event_recorded(engine, event_id) and not await event_recorded(engine, "evt_x1")
    [still] = await payments_of(engine, who.invoice_id)
    assert still.status is PaymentStatus.PENDING and (await invoice_state(shop, who))["status"] == "UNPAID"
    # The genuine delivery still works afterwards.
    assert (await deliver(shop, body, headers)).json() == {"received": True, "applied": True}
    assert (await invoice_state(shop, who))["status"] == "PAID"


# ------------------------------------------------------------------- abandoned attempts

async def unconfirmed_payment(shop: GraphQLClient, engine: AsyncEngine, stub: StripeStub, who: Billed,
                              method: str, key: str) -> tuple[Payment, dict[str, Any]]:
    """A click whose charge was opened at Stripe but never confirmed (its confirmation got
    no answer: as if its server died between the two): pending, with its PaymentIntent."""
    stub.confirm_outage = 503
    assert codes(await pay(shop, who, method, key)) == ["PAYMENT_PENDING"]
    stub.confirm_outage = None
    [payment] = [p for p in await payments_of(engine, who.invoice_id) if p.idempotency_key == key]
    intent = stub.intent_for(processor_key(payment.id))
    assert payment.status is PaymentStatus.PENDING and payment.processor_ref == intent["id"]
    assert intent["status"] == "requires_confirmation" and stub.confirms[intent["id"]] == 0
    return payment, intent


async def charged_payment(shop: GraphQLClient, engine: AsyncEngine, stub: StripeStub, who: Billed,
                          method: str, key: str) -> tuple[Payment, dict[str, Any]]:
    """A click Stripe charged whose answer never came back: pending here, succeeded there."""
    stub.slow_charges = TIMEOUT * 4
    assert codes(await pay(shop, who, method, key)) == ["PAYMENT_PENDING"]
    await until_answered(stub)
    stub.slow_charges = 0
    [payment] = [p for p in await payments_of(engine, who.invoice_id) if p.idempotency_key == key]
    intent = stub.intent_for(processor_key(payment.id))
    assert payment.status is PaymentStatus.PENDING and payment.processor_ref == intent["id"]
    assert intent["status"] == "succeeded" and stub.charges[processor_key(payment.id)] == 1
    return payment, intent


async def test_an_abandoned_attempt_is_cancelled_at_stripe_and_the_next_click_pays_with_its_own_card(
    shop: GraphQLClient, engine: AsyncEngine, stub: StripeStub
) -> None:
    """A click opened a charge on the visa and was never heard of again. While its claim is
    fresh, other clicks wait; once it is stale, the next click (another card, another key)
    cancels the visa's PaymentIntent at Stripe, never confirming it, and pays with its own
    card: one charge, on the card that click chose."""
    who = await billed(engine)
    visa = await card_on(shop, who, "tok_visa")
    mastercard = await card_on(shop, who, "tok_mastercard")
    before = stub.total_charges
    lost, old = await unconfirmed_payment(shop, engine, stub, who, visa, "lost-click")

    requests = len(stub.requests)
    assert codes(await pay(shop, who, mastercard, "new-click")) == ["PAYMENT_IN_PROGRESS"]
    assert len(stub.requests) == requests
    await abandoned(engine, who)
    paid = await pay(shop, who, mastercard, "new-click")
    assert paid["userErrors"] == [] and paid["invoice"] == {"status": "PAID", "amountDue": {"amount": 0}}
    assert paid["payment"]["card"] == {"brand": "mastercard", "last4": "4444"}

    cancelled = stub.intent(old["id"])
    assert (cancelled["status"], cancelled["cancellation_reason"], cancelled["amount_received"]) == (
        "canceled", "abandoned", 0)
    assert stub.confirms[old["id"]] == 0  # read and cancelled, never confirmed
    assert stub.charged_cards[await pm_of(engine, visa)] == 0
    assert stub.charged_cards[await pm_of(engine, mastercard)] == 1 and stub.total_charges == before + 1
    payments = await payments_of(engine, who.invoice_id)
    assert [(p.idempotency_key, p.status, p.failure_code, p.processor_ref) for p in payments] == [
        ("lost-click", PaymentStatus.FAILED, "abandoned", old["id"]),
        ("new-click", PaymentStatus.SUCCEEDED, None, paid["payment"]["reference"])]
    assert paid["payment"]["reference"] != old["id"]
    assert await audited(engine, who.customer.account_ids[0], "payment.succeeded") == 1
    # The lost click's own retry learns what became of it, and Stripe is not asked again.
    requests = len(stub.requests)
    assert codes(await pay(shop, who, visa, "lost-click")) == ["PAYMENT_ABANDONED"]
    assert len(stub.requests) == requests and lost.id == payments[0].id
    assert stub.total_charges == before + 1


async def test_an_abandoned_attempt_stripe_did_charge_is_recorded_and_nothing_is_charged_again(
    shop: GraphQLClient, engine: AsyncEngine, stub: StripeStub
) -> None:
    """The abandoned attempt had in fact been charged (its answer was lost): the next click
    learns it from Stripe, records the old payment as paid and answers ALREADY_PAID, without
    opening a charge on its own card."""
    who = await billed(engine)
    visa = await card_on(shop, who, "tok_visa")
    mastercard = await card_on(shop, who, "tok_mastercard")
    before = stub.total_charges
    lost, old = await charged_payment(shop, engine, stub, who, visa, "lost-click")
    await abandoned(engine, who)
    opened = len(stub.intents)
    answered = await pay(shop, who, mastercard, "new-click")
    assert codes(answered) == ["ALREADY_PAID"]
    assert len(stub.intents) == opened and stub.intent(old["id"])["status"] == "succeeded"
    assert stub.charged_cards[await pm_of(engine, mastercard)] == 0 and stub.total_charges == before + 1
    [row] = await payments_of(engine, who.invoice_id)
    assert (row.id, row.status, row.processor_ref) == (lost.id, PaymentStatus.SUCCEEDED, old["id"])
    state = await invoice_state(shop, who)
    assert state["status"] == "PAID" and state["paidAt"] is not None
    assert await amount_paid(engine, who.invoice_id) == TOTAL
    assert await audited(engine, who.customer.account_ids[0], "payment.succeeded") == 1
    # The lost click's retry is told it paid.
    replay = await pay(shop, who, visa, "lost-click")
    assert replay["replayed"] is True and replay["invoice"]["status"] == "PAID"
    assert stub.total_charges == before + 1


async def test_an_abandoned_attempt_still_processing_at_stripe_keeps_the_invoice_held(
    shop: GraphQLClient, engine: AsyncEngine, stub: StripeStub
) -> None:
    """Stripe is still processing the old attempt (the bank has not answered): it can be
    neither cancelled nor called failed, so the invoice stays held; its webhook settles it."""
    who, visa, payment = await pending_payment(shop, engine, stub)
    mastercard = await card_on(shop, who, "tok_mastercard")
    before = stub.total_charges
    await abandoned(engine, who)
    assert codes(await pay(shop, who, mastercard, "new-click")) == ["PAYMENT_IN_PROGRESS"]
    intent = stub.intent_for(processor_key(payment.id))
    assert intent["status"] == "processing" and len(await payments_of(engine, who.invoice_id)) == 1
    intent = stub.finished(intent, "succeeded")
    await deliver(shop, *stub.signed_event("payment_intent.succeeded", intent))
    assert codes(await pay(shop, who, mastercard, "new-click")) == ["ALREADY_PAID"]
    assert (await invoice_state(shop, who))["status"] == "PAID" and stub.total_charges == before + 1
    assert stub.charged_cards[await pm_of(engine, mastercard)] == 0


async def test_a_removed_cards_pending_attempt_is_cancelled_never_confirmed(
    shop: GraphQLClient, engine: AsyncEngine, stub: StripeStub
) -> None:
    """The card of a pending attempt is removed; the attempt's own retry (same key) reads its
    PaymentIntent and cancels it, never confirming it: nothing charged, the invoice free."""
    who = await billed(engine)
    visa = await card_on(shop, who, "tok_visa")
    before = stub.total_charges
    payment, intent = await unconfirmed_payment(shop, engine, stub, who, visa, "mine")
    removed = await shop.execute(REMOVE_CARD, {"input": {"paymentMethodId": visa}}, token=who.token)
    assert removed["data"]["removePaymentMethod"]["userErrors"] == []
    retried = await pay(shop, who, visa, "mine")
    assert codes(retried) == ["PAYMENT_ABANDONED"]
    assert stub.confirms[intent["id"]] == 0 and stub.intent(intent["id"])["status"] == "canceled"
    assert stub.total_charges == before
    [row] = await payments_of(engine, who.invoice_id)
    assert (row.id, row.status, row.failure_code) == (payment.id, PaymentStatus.FAILED, "abandoned")
    assert (await invoice_state(shop, who))["status"] == "UNPAID"
    # Retried again (Stripe's keys forgotten too): answered from the database.
    stub.forget_idempotency_keys()
    requests = len(stub.requests)
    assert codes(await pay(shop, who, visa, "mine")) == ["PAYMENT_ABANDONED"]
    assert len(stub.requests) == requests and stub.total_charges == before
    # Another card pays the invoice.
    paid = await pay(shop, who, await card_on(shop, who, "tok_amex"), "with-amex")
    assert paid["invoice"]["status"] == "PAID" and stub.total_charges == before + 1


async def test_a_removed_cards_attempt_stripe_did_charge_is_recorded_by_its_retry(
    shop: GraphQLClient, engine: AsyncEngine, stub: StripeStub
) -> None:
    who = await billed(engine)
    visa = await card_on(shop, who, "tok_visa")
    before = stub.total_charges
    payment, intent = await charged_payment(shop, engine, stub, who, visa, "mine")
    await shop.execute(REMOVE_CARD, {"input": {"paymentMethodId": visa}}, token=who.token)
    confirms = stub.confirms[intent["id"]]
    retried = await pay(shop, who, visa, "mine")
    assert retried["userErrors"] == [] and retried["invoice"]["status"] == "PAID"
    assert stub.confirms[intent["id"]] == confirms and stub.total_charges == before + 1
    assert [p.status for p in await payments_of(engine, who.invoice_id)] == [PaymentStatus.SUCCEEDED]


async def test_staff_resolve_an_abandoned_attempt_before_recording_or_voiding(
    shop: GraphQLClient, engine: AsyncEngine, stub: StripeStub
) -> None:
    """recordPayment and voidInvoice wait for an attempt in flight, and settle an abandoned one
    first (cancelled if never confirmed, recorded if Stripe charged it), so an invoice is never
    blocked for good and never paid twice."""
    _, _, staff = await new_user(engine, role=StaffRole.BILLING)
    before = stub.total_charges

    async def record(who: Billed, key: str) -> dict[str, Any]:
        result = await shop.execute(RECORD, {"input": {"invoiceId": who.invoice, "amount": TOTAL,
                                                       "reference": "SEPA 2026-12-01", "idempotencyKey": key}},
                                    token=staff)
        assert "errors" not in result, result
        return result["data"]["recordPayment"]

    async def void(who: Billed) -> dict[str, Any]:
        result = await shop.execute(VOID, {"input": {"invoiceId": who.invoice, "reason": "Duplicate"}}, token=staff)
        assert "errors" not in result, result
        return result["data"]["voidInvoice"]

    # Never confirmed, then money received by bank transfer: the PaymentIntent is cancelled.
    transfer = await billed(engine)
    _, old = await unconfirmed_payment(shop, engine, stub, transfer, await card_on(shop, transfer), "lost")
    assert codes(await record(transfer, "sepa-1")) == ["PAYMENT_IN_PROGRESS"]
    assert codes(await void(transfer)) == ["PAYMENT_IN_PROGRESS"]
    await abandoned(engine, transfer)
    recorded = await record(transfer, "sepa-1")
    assert recorded["userErrors"] == [] and recorded["invoice"] == {"status": "PAID", "amountDue": {"amount": 0}}
    assert recorded["payment"] == {"kind": "OFFLINE", "status": "SUCCEEDED", "amount": {"amount": TOTAL},
                                   "reference": "SEPA 2026-12-01"}
    assert stub.intent(old["id"])["status"] == "canceled" and stub.confirms[old["id"]] == 0
    assert [(p.kind.value, p.status, p.failure_code) for p in await payments_of(engine, transfer.invoice_id)] == [
        ("CARD", PaymentStatus.FAILED, "abandoned"), ("OFFLINE", PaymentStatus.SUCCEEDED, None)]
    assert (await record(transfer, "sepa-1"))["replayed"] is True

    # Never confirmed, then voided.
    duplicate = await billed(engine)
    _, old = await unconfirmed_payment(shop, engine, stub, duplicate, await card_on(shop, duplicate), "lost")
    await abandoned(engine, duplicate)
    voided = await void(duplicate)
    assert voided == {"invoice": {"status": "VOID"}, "userErrors": []}
    assert stub.intent(old["id"])["status"] == "canceled" and stub.confirms[old["id"]] == 0
    assert [p.status for p in await payments_of(engine, duplicate.invoice_id)] == [PaymentStatus.FAILED]

    # Charged at Stripe after all: recorded as paid, so staff are told it is paid.
    charged = await billed(engine)
    lost, intent = await charged_payment(shop, engine, stub, charged, await card_on(shop, charged), "lost")
    await abandoned(engine, charged)
    assert codes(await record(charged, "sepa-2")) == ["ALREADY_PAID"]
    assert codes(await void(charged)) == ["ALREADY_PAID"]
    [row] = await payments_of(engine, charged.invoice_id)
    assert (row.id, row.status, row.processor_ref) == (lost.id, PaymentStatus.SUCCEEDED, intent["id"])
    assert await amount_paid(engine, charged.invoice_id) == TOTAL
    assert stub.intent(intent["id"])["status"] == "succeeded"
    assert stub.total_charges == before + 1


async def test_an_abandoned_attempt_retried_while_another_click_takes_over_is_charged_once(
    shop: GraphQLClient, engine: AsyncEngine, stub: StripeStub
) -> None:
    """An abandoned attempt whose charge was opened but whose reference never reached the
    database (the open timed out). Its own retry opens it again (Stripe forgot the key; or
    Stripe is merely slow to replay it) while another click takes the invoice over: only one
    of them may charge a card. Today the other click settles the attempt as abandoned (it has
    no reference to ask about) and pays with its own card, and the retry then stores its new
    reference on the abandoned row and confirms it: both cards are charged, and the retry is
    told PAYMENT_ABANDONED ("nothing was charged")."""
    who = await billed(engine)
    visa = await card_on(shop, who, "tok_visa")
    mastercard = await card_on(shop, who, "tok_mastercard")
    before = stub.total_charges
    cards_before = dict(stub.charged_cards)
    stub.slow_opens = TIMEOUT * 4
    assert codes(await pay(shop, who, visa, "lost-click")) == ["PAYMENT_PENDING"]
    await until_answered(stub)
    [lost] = await payments_of(engine, who.invoice_id)
    assert lost.processor_ref is None
    await abandoned(engine, who)
    stub.forget_idempotency_keys()
    stub.slow_opens = TIMEOUT * 0.8  # answered in time, but slowly

    async def new_click() -> dict[str, Any]:
        await asyncio.sleep(TIMEOUT * 0.2)  # while the retry's charge is being opened
        return await pay(shop, who, mastercard, "new-click")

    retried, taken_over = await asyncio.gather(pay(shop, who, visa, "lost-click"), new_click())
    stub.slow_opens = 0
    await until_answered(stub)
    assert stub.total_charges == before + 1, (retried, taken_over, stub.charged_cards)
    assert (await invoice_state(shop, who))["status"] == "PAID"
    assert await amount_paid(engine, who.invoice_id) == TOTAL
    # The card charged is the card of the one payment recorded as paid.
    [paid] = [p for p in await payments_of(engine, who.invoice_id) if p.status is PaymentStatus.SUCCEEDED]
    charged = [pm for pm, n in stub.charged_cards.items() if n > cards_before.get(pm, 0)]
    paid_card = encode_global_id("PaymentMethod", paid.payment_method_id or 0)
    assert charged == [await pm_of(engine, paid_card)]


# ------------------------------------------------------------------------------- attackers

async def test_strangers_cannot_pay_with_or_remove_what_is_not_theirs(
    shop: GraphQLClient, engine: AsyncEngine, stub: StripeStub
) -> None:
    victim = await billed(engine, accounts=2)
    stranger = await billed(engine)
    victims_card = await card_on(shop, victim)
    strangers_card = await card_on(shop, stranger)
    requests = len(stub.requests)

    # Paying someone else's invoice (even with one's own card): no such invoice.
    denied = await shop.execute(PAY, {"input": {"invoiceId": victim.invoice, "paymentMethodId": strangers_card,
                                                "idempotencyKey": "not-mine"}}, token=stranger.token)
    assert denied["data"] is None and denied["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    # Adding a card to someone else's account, or removing theirs: no such account / card.
    planted = await shop.execute(ADD_CARD, {"input": {"accountId": victim.account, "token": "tok_visa"}},
                                 token=stranger.token)
    assert planted["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    removed = await shop.execute(REMOVE_CARD, {"input": {"paymentMethodId": victims_card}}, token=stranger.token)
    assert removed["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert len(stub.requests) == requests, "an attacker's request reached Stripe"

    # The victim's own invoice, paid with a card of another account (the stranger's, or the
    # victim's other account's): the card must be on the paying account.
    assert codes(await pay(shop, victim, strangers_card, "their-card")) == ["PAYMENT_METHOD_NOT_FOUND"]
    other_accounts_card = await card_on(shop, victim, account=victim.customer.gid(1))
    assert codes(await pay(shop, victim, other_accounts_card, "other-account")) == ["PAYMENT_METHOD_NOT_FOUND"]
    # A card id that is not a card at all.
    bogus = encode_global_id("PaymentMethod", 10**12)
    assert codes(await pay(shop, victim, bogus, "bogus-card")) == ["PAYMENT_METHOD_NOT_FOUND"]

    # A sub-account that may read invoices but not pay them.
    reader_id, _, reader_token = await new_user(engine)
    await grant(engine, reader_id, victim.customer.account_ids[0], ["INVOICES_READ"])
    forbidden = await shop.execute(PAY, {"input": {"invoiceId": victim.invoice, "paymentMethodId": victims_card,
                                                   "idempotencyKey": "reader"}}, token=reader_token)
    assert forbidden["errors"][0]["extensions"] == {"code": "FORBIDDEN", "permission": "INVOICES_PAY"}

    # Nothing of that charged anything, and the victim's card still pays the victim's invoice.
    assert (await invoice_state(shop, victim))["payments"] == []
    assert (await pay(shop, victim, victims_card, "the-owner"))["invoice"]["status"] == "PAID"


# ------------------------------------------------------------------------------- the adapter

async def test_a_wrong_api_key_is_unavailable_and_never_logged(
    database_url: str, stub: StripeStub, caplog: pytest.LogCaptureFixture
) -> None:
    """A key Stripe refuses (401) is the operator's problem, not the customer's card: no
    answer for now. Neither key, nor the webhook secret, is in any log line."""
    wrong = StripeStub().api_key  # a fresh random key, remembered by the log secrets check
    gateway = StripeGateway.from_settings(stripe_settings(database_url, stub, stripe_api_key=wrong))
    try:
        with caplog.at_level(logging.DEBUG):
            with pytest.raises(GatewayUnavailable):
                await gateway.add_card(token="tok_visa", customer_ref=None, account_number="ACC-X")
        text = "\n".join(record.getMessage() for record in caplog.records)
        assert "LINKGATE_STRIPE_API_KEY" in text
        assert wrong not in text and stub.api_key not in text and stub.webhook_secret not in text
    finally:
        await gateway.aclose()


async def test_the_adapter_maps_stripe_answers(database_url: str, stub: StripeStub) -> None:
    gateway = StripeGateway.from_settings(stripe_settings(database_url, stub))
    try:
        card = await gateway.add_card(token="tok_visa", customer_ref=None, account_number="ACC-Y")
        assert (card.brand, card.last4, card.processor_ref[:3], card.customer_ref and card.customer_ref[:4]) == (
            "visa", "4242", "pm_", "cus_")
        with pytest.raises(CardRejected) as rejected:
            await gateway.add_card(token="tok_neverIssued", customer_ref=card.customer_ref, account_number="ACC-Y")
        assert rejected.value.code == "INVALID_CARD_TOKEN"
        charge = {"amount": 999, "currency": "EUR", "description": "Invoice T", "metadata": {"payment_id": "1"}}
        before = stub.total_charges

        # Opened: a PaymentIntent of ours, unconfirmed, no money; the same key, the same one.
        key = f"adapter-{uuid.uuid4().hex}"
        reference = await gateway.open_charge(card=card, idempotency_key=key, **charge)
        assert reference == await gateway.open_charge(card=card, idempotency_key=key, **charge)
        intent = stub.intent(reference)
        assert {k: intent[k] for k in ("status", "amount", "currency", "customer", "payment_method",
                                       "description", "metadata", "payment_method_types")} == {
            "status": "requires_confirmation", "amount": 999, "currency": "eur", "customer": card.customer_ref,
            "payment_method": card.processor_ref, "description": "Invoice T", "metadata": {"payment_id": "1"},
            "payment_method_types": ["card"]}
        assert await gateway.check_charge(reference=reference) == ChargeOutcome("unconfirmed", processor_ref=reference)
        assert stub.total_charges == before
        # The same key with other parameters is Stripe's idempotency_error: outcome unknown.
        with pytest.raises(GatewayUnavailable):
            await gateway.open_charge(card=card, idempotency_key=key, **{**charge, "amount": 1000})

        # Confirmed while the bank takes its time: pending, and neither cancellable nor charged
        # again; then succeeded: every later call answers that, charging nothing new.
        stub.charge_status = "processing"
        pending = ChargeOutcome("pending", processor_ref=reference)
        assert await gateway.confirm_charge(reference=reference, card=card) == pending
        stub.charge_status = "succeeded"
        assert (await gateway.check_charge(reference=reference)).status == "pending"
        assert (await gateway.cancel_charge(reference=reference)).status == "pending"
        assert (await gateway.confirm_charge(reference=reference, card=card)).status == "pending"
        stub.finished(intent, "succeeded")
        succeeded = ChargeOutcome("succeeded", processor_ref=reference)
        assert await gateway.confirm_charge(reference=reference, card=card) == succeeded
        assert await gateway.check_charge(reference=reference) == succeeded
        assert await gateway.cancel_charge(reference=reference) == succeeded
        assert stub.confirms[reference] == 3 and stub.total_charges == before + 1
        assert stub.intent(reference)["status"] == "succeeded"

        # Cancelled before anyone confirmed it: abandoned, and it can no longer be confirmed.
        cancelled = await gateway.open_charge(card=card, idempotency_key=f"{key}-2", **charge)
        abandoned_outcome = ChargeOutcome("declined", processor_ref=cancelled, decline_code="abandoned",
                                          message=ABANDONED_MESSAGE)
        assert await gateway.cancel_charge(reference=cancelled) == abandoned_outcome
        assert await gateway.cancel_charge(reference=cancelled) == abandoned_outcome
        assert await gateway.check_charge(reference=cancelled) == abandoned_outcome
        assert await gateway.confirm_charge(reference=cancelled, card=card) == abandoned_outcome
        assert stub.intent(cancelled)["status"] == "canceled" and stub.total_charges == before + 1

        # A declining card: the decline as Stripe words it, also when read back later.
        declining = await gateway.add_card(token="tok_chargeDeclinedInsufficientFunds",
                                           customer_ref=card.customer_ref, account_number="ACC-Y")
        refused = await gateway.open_charge(card=declining, idempotency_key=f"{key}-3", **charge)
        declined = ChargeOutcome("declined", processor_ref=refused, decline_code="insufficient_funds",
                                 message="Your card has insufficient funds.")
        assert await gateway.confirm_charge(reference=refused, card=declining) == declined
        assert await gateway.check_charge(reference=refused) == declined
        assert stub.total_charges == before + 1

        # A card detached at Stripe after the charge was opened cannot be charged: a known
        # outcome, nothing charged. Opening a charge on it is refused: no answer to give.
        detached = await gateway.open_charge(card=card, idempotency_key=f"{key}-4", **charge)
        await gateway.remove_card(card)
        await gateway.remove_card(card)  # already detached: nothing to do
        gone = await gateway.confirm_charge(reference=detached, card=card)
        assert (gone.status, gone.processor_ref, gone.decline_code) == (
            "declined", detached, "payment_method_unexpected_state")
        with pytest.raises(GatewayUnavailable):
            await gateway.open_charge(card=card, idempotency_key=f"{key}-5", **charge)
        assert stub.total_charges == before + 1

        # A PaymentIntent Stripe does not know, an outage, a locked one: the outcome is unknown.
        for call in (gateway.check_charge(reference="pi_unknown"), gateway.cancel_charge(reference="pi_unknown"),
                     gateway.confirm_charge(reference="pi_unknown", card=card)):
            with pytest.raises(GatewayUnavailable):
                await call
        stub.outage = 503
        for call in (gateway.check_charge(reference=reference), gateway.cancel_charge(reference=cancelled),
                     gateway.confirm_charge(reference=refused, card=declining)):
            with pytest.raises(GatewayUnavailable):
                await call
        stub.outage = None
        stub.locked.add(refused)
        try:
            with pytest.raises(GatewayUnavailable):
                await gateway.confirm_charge(reference=refused, card=declining)
        finally:
            stub.locked.discard(refused)
        assert stub.total_charges == before + 1
    finally:
        await gateway.aclose()


async def test_a_webhook_says_which_charge_for_how_much(database_url: str, stub: StripeStub) -> None:
    gateway = StripeGateway.from_settings(stripe_settings(database_url, stub))
    try:
        _read_webhooks(gateway, stub)
    finally:
        await gateway.aclose()


def _read_webhooks(gateway: StripeGateway, stub: StripeStub) -> None:
    intent = {"id": "pi_webhook_1", "object": "payment_intent", "status": "succeeded", "amount": 12_100,
              "amount_received": 12_100, "currency": "eur", "metadata": {"payment_id": "42", "invoice": "INV-1"}}
    event = gateway.read_webhook(*_delivery(stub, "payment_intent.succeeded", intent))
    assert event is not None
    assert (event.type, event.outcome, event.amount, event.currency, event.payment_id, event.metadata) == (
        "payment_intent.succeeded", ChargeOutcome("succeeded", processor_ref="pi_webhook_1"), 12_100, "EUR", 42,
        {"payment_id": "42", "invoice": "INV-1"})
    failed = gateway.read_webhook(*_delivery(stub, "payment_intent.payment_failed", {
        **intent, "status": "requires_payment_method", "amount_received": 0, "last_payment_error": {
            "type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds."}}))
    assert failed is not None and (failed.outcome, failed.amount, failed.currency) == (
        ChargeOutcome("declined", processor_ref="pi_webhook_1", decline_code="insufficient_funds",
                      message="Your card has insufficient funds."), 12_100, "EUR")
    assert gateway.read_webhook(*_delivery(stub, "payment_intent.canceled", intent)) is None
    # A payment_intent event without its amount or currency is not as Stripe sends it.
    for broken in ({"amount": None}, {"amount": "12100"}, {"amount": True}, {"currency": None}):
        with pytest.raises(InvalidWebhook):
            gateway.read_webhook(*_delivery(stub, "payment_intent.succeeded", {**intent, **broken}))


def _delivery(stub: StripeStub, kind: str, intent: dict[str, Any]) -> tuple[bytes, str]:
    body, headers = stub.signed_event(kind, intent)
    return body, headers["stripe-signature"]
