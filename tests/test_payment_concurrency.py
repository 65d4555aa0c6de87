"""Concurrent Pay clicks on one invoice, through two server processes (DESIGN §1 Payments).

Two ``uvicorn`` processes on one PostgreSQL database, each with its own connection pool and
its own connection to the card processor, take many payInvoice clicks on the same invoice at
once. The partial unique index on pending payments lets exactly one of them claim the
invoice: the card is charged once, the invoice is paid once, and every other click is told
``ALREADY_PAID`` or ``PAYMENT_IN_PROGRESS`` (never a 500). Once with the ``stripe`` gateway
against the local Stripe stub (which counts the charges it made), once with ``test``.

With the stripe gateway, also the attempts left behind: clicks from both servers on an invoice
whose attempt was abandoned cancel its PaymentIntent (never confirming it) and charge once
with their own card, or record it as paid if Stripe charged it; many retries of a pending
attempt after Stripe forgot its idempotency key confirm its one stored PaymentIntent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from models.payments import Payment, PaymentStatus
from resolvers.payments import processor_key
from tests.conftest import TEST_SECRET, GraphQLClient
from tests.customers import count_rows
from tests.servers import UVICORN, clean_environment, clients_of, running_server
from tests.stripe_stub import StripeStub, running_stub
from tests.test_credit_concurrency import ON_POSTGRESQL
from tests.test_stripe_gateway import (
    PAY, TOTAL, Billed, abandoned, amount_paid, billed, card_on, codes, payments_of, pm_of,
)

pytestmark = pytest.mark.skipif(
    not ON_POSTGRESQL,
    reason="two server processes racing on one database: PostgreSQL (SQLite's single writer "
    "is tested in process, tests/test_stripe_gateway.py)",
)
CLICKS = 20
LOSERS = {"ALREADY_PAID", "PAYMENT_IN_PROGRESS"}


@pytest.fixture(scope="module")
def stub() -> Iterator[StripeStub]:
    yield from running_stub()


@contextlib.contextmanager
def two_servers(database_url: str, **settings: str) -> Iterator[list[str]]:
    """Two separate uvicorn processes (two ports, two pools, two gateways) on one database."""
    environment = clean_environment(LINKGATE_DATABASE_URL=database_url, LINKGATE_SECRET_KEY=TEST_SECRET,
                                    LINKGATE_MAIL_LINKS_PER_CLIENT="1000000", **settings)
    with running_server(UVICORN, environment=environment) as first, \
            running_server(UVICORN, environment=environment) as second:
        yield [first.base, second.base]
    for server in (first, second):
        assert "Traceback" not in server.output and "ERROR" not in server.output, server.output[-3000:]


@pytest.fixture(scope="module")
def stripe_servers(database_url: str, stub: StripeStub) -> Iterator[list[str]]:
    with two_servers(
        database_url, LINKGATE_PAYMENT_GATEWAY="stripe", LINKGATE_STRIPE_API_KEY=stub.api_key,
        LINKGATE_STRIPE_WEBHOOK_SECRET=stub.webhook_secret, LINKGATE_STRIPE_API_BASE=stub.url,
        LINKGATE_PAYMENT_TIMEOUT_SECONDS="20",
    ) as bases:
        yield bases


@pytest.fixture(scope="module")
def test_gateway_servers(database_url: str) -> Iterator[list[str]]:
    with two_servers(database_url, LINKGATE_PAYMENT_GATEWAY="test") as bases:
        yield bases


@pytest.fixture(autouse=True)
def calm_stub(stub: StripeStub) -> Iterator[None]:
    yield
    stub.slow_charges, stub.confirm_outage = 0.0, None


async def clicks(clients: list[GraphQLClient], who: Billed, method: str, keys: list[str]) -> list[dict[str, Any]]:
    """Every key clicked at once, alternating servers; each answer's payInvoice payload."""

    async def click(index: int, key: str) -> httpx.Response:
        variables = {"input": {"invoiceId": who.invoice, "paymentMethodId": method, "idempotencyKey": key}}
        return await clients[index % len(clients)].post(PAY, variables, token=who.token)

    responses = await asyncio.gather(*(click(index, key) for index, key in enumerate(keys)))
    assert [r.status_code for r in responses if r.status_code != 200] == [], [r.text for r in responses]
    bodies = [r.json() for r in responses]
    assert [b for b in bodies if "errors" in b] == []
    return [b["data"]["payInvoice"] for b in bodies]


async def storm(clients: list[GraphQLClient], engine: AsyncEngine, card: str) -> tuple[Payment, list[str]]:
    """CLICKS clicks with different keys on one invoice: one pays, the rest are refused; then
    the same again on the paid invoice, the winner's key among them (replayed)."""
    who = await billed(engine)
    method = await card_on(clients[0], who, card)
    results = await clicks(clients, who, method, [f"click-{n}" for n in range(CLICKS)])
    winners = [r for r in results if not r["userErrors"]]
    assert len(winners) == 1, results
    assert winners[0]["invoice"] == {"status": "PAID", "amountDue": {"amount": 0}}
    assert winners[0]["payment"]["status"] == "SUCCEEDED"
    refused = [codes(r) for r in results if r["userErrors"]]
    assert all(len(c) == 1 and c[0] in LOSERS for c in refused), refused

    [payment] = await payments_of(engine, who.invoice_id)  # the losers left no row behind
    assert payment.status is PaymentStatus.SUCCEEDED and payment.amount == TOTAL
    assert await amount_paid(engine, who.invoice_id) == TOTAL
    assert await count_rows(engine, Payment, Payment.invoice_id == who.invoice_id,
                            Payment.status == PaymentStatus.SUCCEEDED) == 1

    # Later clicks, the winner's retries among them: answered from the database.
    late = await clicks(clients, who, method, [payment.idempotency_key or ""] * 4 + [f"late-{n}" for n in range(6)])
    assert [r["replayed"] for r in late[:4]] == [True] * 4
    assert all(codes(r) == ["ALREADY_PAID"] for r in late[4:]), late
    assert len(await payments_of(engine, who.invoice_id)) == 1
    return payment, [c[0] for c in refused]


async def test_concurrent_clicks_through_two_servers_charge_stripe_once(
    stripe_servers: list[str], engine: AsyncEngine, stub: StripeStub
) -> None:
    before = stub.total_charges
    stub.slow_charges = 0.3  # the winner's charge is still in flight while the others click
    try:
        async with clients_of(stripe_servers, engine) as clients:
            payment, refused = await storm(clients, engine, "tok_visa")
    finally:
        stub.slow_charges = 0
    # The race was real: clicks met the winner's payment while it was still at Stripe.
    assert "PAYMENT_IN_PROGRESS" in refused
    key = processor_key(payment.id)
    assert stub.total_charges == before + 1 and stub.charges[key] == 1
    # No loser, and no replay, reached Stripe: one PaymentIntent opened, confirmed once.
    assert stub.attempts[key] == 1 and len(stub.intents_for(key)) == 1
    assert payment.processor_ref == stub.intent_for(key)["id"]
    assert stub.confirms[payment.processor_ref] == 1


async def test_concurrent_retries_of_one_key_through_two_servers_charge_once(
    stripe_servers: list[str], engine: AsyncEngine, stub: StripeStub
) -> None:
    """The same click retried many times at once (a double-clicked button, a retrying client):
    one payment row, one PaymentIntent, one charge. A retry that meets the first request still
    in flight at Stripe (409) is told the payment is pending."""
    who = await billed(engine)
    before = stub.total_charges
    stub.slow_charges = 0.3
    try:
        async with clients_of(stripe_servers, engine) as clients:
            method = await card_on(clients[0], who)
            results = await clicks(clients, who, method, ["the-one-click"] * CLICKS)
    finally:
        stub.slow_charges = 0
    for result in results:
        assert (not result["userErrors"] and result["invoice"]["status"] == "PAID") \
            or codes(result) == ["PAYMENT_PENDING"], result
    [payment] = await payments_of(engine, who.invoice_id)
    assert payment.status is PaymentStatus.SUCCEEDED
    assert stub.total_charges == before + 1 and stub.charges[processor_key(payment.id)] == 1
    assert await amount_paid(engine, who.invoice_id) == TOTAL


async def lost_attempt(clients: list[GraphQLClient], engine: AsyncEngine, stub: StripeStub, who: Billed,
                       method: str, key: str) -> Payment:
    """A click whose charge was opened and never confirmed (its confirmation got no answer)."""
    stub.confirm_outage = 503
    [lost] = await clicks(clients, who, method, [key])
    stub.confirm_outage = None
    assert codes(lost) == ["PAYMENT_PENDING"]
    [payment] = await payments_of(engine, who.invoice_id)
    assert payment.processor_ref is not None
    assert stub.intent(payment.processor_ref)["status"] == "requires_confirmation"
    return payment


async def test_clicks_through_two_servers_take_over_an_abandoned_attempt_and_charge_once(
    stripe_servers: list[str], engine: AsyncEngine, stub: StripeStub
) -> None:
    """Clicks with another card, from both servers at once, on an invoice whose attempt was
    abandoned: its PaymentIntent is cancelled, never confirmed; one click pays with its own
    card, the others are told the invoice is being paid or is paid."""
    who = await billed(engine)
    before = stub.total_charges
    async with clients_of(stripe_servers, engine) as clients:
        visa = await card_on(clients[0], who, "tok_visa")
        mastercard = await card_on(clients[1], who, "tok_mastercard")
        lost = await lost_attempt(clients, engine, stub, who, visa, "lost-click")
        await abandoned(engine, who)
        stub.slow_charges = 0.3
        results = await clicks(clients, who, mastercard, [f"take-over-{n}" for n in range(CLICKS)])
    winners = [r for r in results if not r["userErrors"]]
    assert len(winners) == 1, results
    assert winners[0]["invoice"]["status"] == "PAID"
    assert winners[0]["payment"]["card"] == {"brand": "mastercard", "last4": "4444"}
    assert all(len(codes(r)) == 1 and codes(r)[0] in LOSERS for r in results if r["userErrors"]), results
    assert lost.processor_ref is not None
    old = stub.intent(lost.processor_ref)
    assert (old["status"], old["amount_received"], stub.confirms[old["id"]]) == ("canceled", 0, 0)
    assert stub.charged_cards[await pm_of(engine, visa)] == 0
    assert stub.charged_cards[await pm_of(engine, mastercard)] == 1 and stub.total_charges == before + 1
    payments = await payments_of(engine, who.invoice_id)
    assert [(p.id, p.status, p.failure_code) for p in payments] == [
        (lost.id, PaymentStatus.FAILED, "abandoned"), (payments[1].id, PaymentStatus.SUCCEEDED, None)]
    assert await amount_paid(engine, who.invoice_id) == TOTAL


async def test_clicks_through_two_servers_on_an_abandoned_attempt_stripe_charged_charge_nothing(
    stripe_servers: list[str], engine: AsyncEngine, stub: StripeStub
) -> None:
    who = await billed(engine)
    before = stub.total_charges
    async with clients_of(stripe_servers, engine) as clients:
        visa = await card_on(clients[0], who, "tok_visa")
        mastercard = await card_on(clients[1], who, "tok_mastercard")
        lost = await lost_attempt(clients, engine, stub, who, visa, "lost-click")
        assert lost.processor_ref is not None
        stub.finished(stub.intent(lost.processor_ref), "succeeded")  # Stripe charged it after all
        await abandoned(engine, who)
        opened = len(stub.intents)
        results = await clicks(clients, who, mastercard, [f"take-over-{n}" for n in range(CLICKS)])
    assert all(len(codes(r)) == 1 and codes(r)[0] in LOSERS for r in results), results
    assert "ALREADY_PAID" in {codes(r)[0] for r in results}
    assert len(stub.intents) == opened and stub.total_charges == before + 1
    assert stub.charged_cards[await pm_of(engine, mastercard)] == 0
    [payment] = await payments_of(engine, who.invoice_id)
    assert (payment.id, payment.status) == (lost.id, PaymentStatus.SUCCEEDED)
    assert await amount_paid(engine, who.invoice_id) == TOTAL


async def test_retries_through_two_servers_after_stripe_forgot_the_key_charge_once(
    stripe_servers: list[str], engine: AsyncEngine, stub: StripeStub
) -> None:
    """A pending attempt (opened, its confirmation unanswered) retried many times at once from
    both servers after Stripe forgot its idempotency key: every retry confirms the one stored
    PaymentIntent; one charge, no second PaymentIntent."""
    who = await billed(engine)
    before = stub.total_charges
    async with clients_of(stripe_servers, engine) as clients:
        visa = await card_on(clients[0], who, "tok_visa")
        lost = await lost_attempt(clients, engine, stub, who, visa, "the-click")
        stub.forget_idempotency_keys()
        stub.slow_charges = 0.3
        results = await clicks(clients, who, visa, ["the-click"] * CLICKS)
        stub.slow_charges = 0
        for result in results:
            assert (not result["userErrors"] and result["invoice"]["status"] == "PAID") \
                or codes(result) == ["PAYMENT_PENDING"], result
        if any(codes(r) for r in results):  # those that met the confirmation in flight
            [again] = await clicks(clients, who, visa, ["the-click"])
            assert again["invoice"]["status"] == "PAID"
    key = processor_key(lost.id)
    assert stub.total_charges == before + 1 and stub.charges[key] == 1
    assert [i["id"] for i in stub.intents_for(key)] == [lost.processor_ref]
    [payment] = await payments_of(engine, who.invoice_id)
    assert payment.status is PaymentStatus.SUCCEEDED and await amount_paid(engine, who.invoice_id) == TOTAL


async def test_concurrent_clicks_through_two_servers_with_the_test_gateway_pay_once(
    test_gateway_servers: list[str], engine: AsyncEngine
) -> None:
    async with clients_of(test_gateway_servers, engine) as clients:
        payment, _ = await storm(clients, engine, "tok_visa")
    assert payment.processor_ref == f"pi_test_{payment.id}"
