"""The ``stripe`` payment gateway, end to end: GraphQL over HTTP to the real app, configured
with ``LINKGATE_PAYMENT_GATEWAY=stripe`` against a local stub of Stripe's API
(``tests/stripe_stub.py``), and Stripe's signed webhook on ``POST /payments/webhook``.

Cards are added and charged through the official ``stripe`` package; a decline, a timeout, an
outage and a webhook each leave the invoice, its payments and the processor in agreement, and
no retry or repeated click is ever a second charge. The attacker's side: forged and replayed
webhooks, other people's invoices and cards, a sub-account without ``INVOICES_PAY``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from linkgate.app import create_app
from linkgate.settings import Settings
from linkgate.stripe_gateway import StripeGateway
from models import Invoice
from models.audit import AuditEvent
from models.database import create_session_factory
from models.payments import GatewayEvent, Payment, PaymentMethod, PaymentStatus
from resolvers.payment_gateway import CardRejected, GatewayUnavailable
from resolvers.payments import processor_key
from schema.relay import decode_global_id, encode_global_id
from tests.billing_world import SeededCustomer, grant, issue_invoice, new_user, seeded_customer
from tests.conftest import TEST_SECRET, GraphQLClient, client_for
from tests.stripe_stub import StripeStub, running_stub

TIMEOUT = 0.5  # LINKGATE_PAYMENT_TIMEOUT_SECONDS here: the stub's slow answers outlast it
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


async def event_recorded(engine: AsyncEngine, event_id: str) -> bool:
    async with create_session_factory(engine)() as session:
        return await session.get(GatewayEvent, event_id) is not None


async def until_answered(stub: StripeStub, timeout: float = 10) -> None:
    """Until the stub has sent every slow answer it was holding."""
    deadline = time.monotonic() + timeout
    while stub.in_flight:
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
    stub.slow_charges, stub.outage, stub.charge_status = 0.0, None, "succeeded"


def stripe_settings(database_url: str, stub: StripeStub, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url, "secret_key": TEST_SECRET, "answer_floor_seconds": 0,
        "payment_gateway": "stripe", "stripe_api_key": stub.api_key,
        "stripe_webhook_secret": stub.webhook_secret, "stripe_api_base": stub.url,
        "payment_timeout_seconds": TIMEOUT, "login_client_max_failures": 1_000_000,
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
    """Stripe charged the card but its answer came after the timeout: the payment is pending,
    the invoice unpaid and held; the retry with the same key gets the same PaymentIntent."""
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
    assert payment.status is PaymentStatus.PENDING and stub.charges[key] == 1
    state = await invoice_state(shop, who)
    assert state["status"] == "UNPAID" and [p["status"] for p in state["payments"]] == ["PENDING"]

    # A second click (another key) while the first is pending does not reach Stripe.
    requests = len(stub.requests)
    assert codes(await pay(shop, who, method, "click-2")) == ["PAYMENT_IN_PROGRESS"]
    assert len(stub.requests) == requests
    # The retry while Stripe is still answering the first request: Stripe's 409, still pending.
    assert stub.in_flight == {key}
    assert codes(await pay(shop, who, method, "click-1")) == ["PAYMENT_PENDING"]
    await until_answered(stub)

    stub.slow_charges = 0
    retried = await pay(shop, who, method, "click-1")
    assert retried["userErrors"] == [] and retried["invoice"]["status"] == "PAID"
    assert stub.attempts[key] == 3 and stub.charges[key] == 1 and stub.total_charges == before + 1
    assert retried["payment"]["reference"] == stub.intent_for(key)["id"]
    assert await amount_paid(engine, who.invoice_id) == TOTAL
    assert [p.status for p in await payments_of(engine, who.invoice_id)] == [PaymentStatus.SUCCEEDED]


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


async def test_an_event_that_disagrees_with_the_payment_it_names_settles_nothing(
    shop: GraphQLClient, engine: AsyncEngine, stub: StripeStub
) -> None:
    """Another deployment on the same Stripe account sends events naming its own payment ids:
    one whose invoice or charge reference is not ours is acknowledged and changes nothing."""
    who, _method, payment = await pending_payment(shop, engine, stub)
    intent = stub.finished(stub.intent_for(processor_key(payment.id)), "succeeded")
    for changed in ({"metadata": {**intent["metadata"], "invoice": "INV-ELSEWHERE-000001"}},
                    {"id": "pi_from_another_deployment"}):
        response = await deliver(shop, *stub.signed_event("payment_intent.succeeded", {**intent, **changed}))
        assert response.status_code == 200 and response.json() == {"received": True, "applied": True}
        assert (await invoice_state(shop, who))["status"] == "UNPAID"
        assert [p.status for p in await payments_of(engine, who.invoice_id)] == [PaymentStatus.PENDING]
    # The genuine event still settles it.
    response = await deliver(shop, *stub.signed_event("payment_intent.succeeded", intent))
    assert (await invoice_state(shop, who))["status"] == "PAID"


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
        stub.charge_status = "processing"
        assert (await gateway.charge(card=card, idempotency_key="adapter-1", **charge)).status == "pending"
        stub.charge_status = "succeeded"
        # The same key with other parameters is Stripe's idempotency_error: outcome unknown.
        with pytest.raises(GatewayUnavailable):
            await gateway.charge(card=card, idempotency_key="adapter-1", **{**charge, "amount": 1000})
        # A card detached at Stripe cannot be charged: a known outcome, nothing charged.
        await gateway.remove_card(card)
        await gateway.remove_card(card)  # already detached: nothing to do
        gone = await gateway.charge(card=card, idempotency_key="adapter-2", **charge)
        assert (gone.status, gone.decline_code) == ("declined", "payment_method_unexpected_state")
    finally:
        await gateway.aclose()
