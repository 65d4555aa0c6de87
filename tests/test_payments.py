"""Paying invoices over GraphQL with the test gateway (Stripe's test tokens): cards on file,
payInvoice, staff recordPayment and voidInvoice, and what a stranger, a sub-account without
the right and a forged token can do with each (issue 13, part 1)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from linkgate.app import create_app
from linkgate.card_gateways import TestGateway
from linkgate.settings import Settings
from models import AuditEvent, Notification, Payment, PaymentStatus
from models.database import create_session_factory
from schema.relay import encode_global_id
from tests import billing_world
from tests.conftest import GraphQLClient, client_for
from tests.customers import Customer, audit_actions, new_customer, new_sub_account, pk

ADD_CARD = """
mutation($input: AddPaymentMethodInput!) {
  addPaymentMethod(input: $input) {
    paymentMethod { id brand last4 expMonth expYear isExpired }
    userErrors { field message code }
  }
}
"""
REMOVE_CARD = """
mutation($input: RemovePaymentMethodInput!) {
  removePaymentMethod(input: $input) { removedPaymentMethodId userErrors { code } }
}
"""
PAY = """
mutation($input: PayInvoiceInput!) {
  payInvoice(input: $input) {
    invoice { id status paidAt amountDue { amount currency } total { amount } }
    payment { kind status amount { amount } card { brand last4 } reference }
    replayed
    userErrors { field message code }
  }
}
"""
RECORD = """
mutation($input: RecordPaymentInput!) {
  recordPayment(input: $input) {
    invoice { status amountDue { amount } payments { kind status amount { amount } reference } }
    payment { kind amount { amount } reference }
    userErrors { field code }
  }
}
"""
VOID = """
mutation($input: VoidInvoiceInput!) {
  voidInvoice(input: $input) {
    invoice { status voidedAt voidReason amountDue { amount } }
    userErrors { field code }
  }
}
"""
INVOICE = """
query($id: ID!) {
  node(id: $id) {
    ... on Invoice {
      status amountDue { amount } paidAt
      payments { kind status amount { amount } failureCode failureMessage card { last4 } }
    }
  }
}
"""
CARDS = """
query($n: String!) { viewer { account(number: $n) { paymentMethods { id brand last4 } } } }
"""


async def issue_invoice(engine: AsyncEngine, account_id: int, amount: int = 10_000) -> str:
    """An unpaid invoice of ``amount`` + 21 % tax for the account; its global ID."""
    invoice = await billing_world.issue_invoice(engine, account_id, subtotal=amount)
    return encode_global_id("Invoice", invoice.id)


async def add_card(gql: GraphQLClient, token: str, account_id: str, card: str = "tok_visa") -> dict[str, Any]:
    result = await gql.execute(ADD_CARD, {"input": {"accountId": account_id, "token": card}}, token=token)
    return result["data"]["addPaymentMethod"]


async def pay(gql: GraphQLClient, token: str, invoice: str, card: str, key: str | None = None) -> dict[str, Any]:
    result = await gql.execute(PAY, {"input": {
        "invoiceId": invoice, "paymentMethodId": card, "idempotencyKey": key or uuid.uuid4().hex,
    }}, token=token)
    assert "errors" not in result, result
    return result["data"]["payInvoice"]


def error_code(result: dict[str, Any]) -> str:
    return result["errors"][0]["extensions"]["code"]


async def payments_of(engine: AsyncEngine, invoice: str) -> list[Payment]:
    async with create_session_factory(engine)() as session:
        return list((await session.scalars(
            select(Payment).where(Payment.invoice_id == pk(invoice)).order_by(Payment.id))).all())


@pytest.fixture
async def customer(gql: GraphQLClient) -> Customer:
    return await new_customer(gql, "Paying Customer")


async def test_a_card_on_file_pays_the_amount_due_once(
    gql: GraphQLClient, engine: AsyncEngine, customer: Customer
) -> None:
    card = await add_card(gql, customer.token, customer.account.id)
    assert card["userErrors"] == []
    method = card["paymentMethod"]
    assert (method["brand"], method["last4"], method["isExpired"]) == ("visa", "4242", False)
    listed = await gql.execute(CARDS, {"n": customer.account.number}, token=customer.token)
    assert listed["data"]["viewer"]["account"]["paymentMethods"] == [
        {"id": method["id"], "brand": "visa", "last4": "4242"}]

    invoice = await issue_invoice(engine, pk(customer.account.id), 10_000)
    paid = await pay(gql, customer.token, invoice, method["id"], key="click-1")
    assert paid["userErrors"] == [] and paid["replayed"] is False
    assert paid["invoice"]["status"] == "PAID" and paid["invoice"]["paidAt"]
    assert paid["invoice"]["amountDue"] == {"amount": 0, "currency": "EUR"}
    assert paid["payment"]["status"] == "SUCCEEDED" and paid["payment"]["kind"] == "CARD"
    assert paid["payment"]["amount"]["amount"] == paid["invoice"]["total"]["amount"] == 12_100
    assert paid["payment"]["card"] == {"brand": "visa", "last4": "4242"}
    assert paid["payment"]["reference"].startswith("pi_test_")

    # The same click again (a retry after a lost answer): the first result, nothing new.
    again = await pay(gql, customer.token, invoice, method["id"], key="click-1")
    assert again["replayed"] is True and again["invoice"]["status"] == "PAID"
    # A new click on a paid invoice.
    late = await pay(gql, customer.token, invoice, method["id"])
    assert [e["code"] for e in late["userErrors"]] == ["ALREADY_PAID"]
    assert [p.status for p in await payments_of(engine, invoice)] == [PaymentStatus.SUCCEEDED]

    actions = await audit_actions(engine, customer.account.number)
    assert "payment_method.added" in actions and "payment.succeeded" in actions
    async with create_session_factory(engine)() as session:
        mail = (await session.scalars(select(Notification).where(
            Notification.related_type == "invoice", Notification.related_id == pk(invoice)))).all()
    assert [(m.recipient, m.subject.startswith("Payment received")) for m in mail] == [
        ("ap-payments@example.com", True)]
    assert "121.00 EUR" in mail[0].body


async def test_a_declined_card_leaves_the_invoice_unpaid(
    gql: GraphQLClient, engine: AsyncEngine, customer: Customer
) -> None:
    declining = (await add_card(gql, customer.token, customer.account.id, "tok_chargeDeclined"))["paymentMethod"]
    invoice = await issue_invoice(engine, pk(customer.account.id))
    refused = await pay(gql, customer.token, invoice, declining["id"], key="k1")
    assert [(e["code"], e["field"]) for e in refused["userErrors"]] == [("CARD_DECLINED", ["paymentMethodId"])]
    assert refused["invoice"] is None
    state = (await gql.execute(INVOICE, {"id": invoice}, token=customer.token))["data"]["node"]
    assert state["status"] == "UNPAID" and state["amountDue"]["amount"] == 12_100
    assert state["payments"] == [{"kind": "CARD", "status": "FAILED", "amount": {"amount": 12_100},
                                  "failureCode": "generic_decline",
                                  "failureMessage": "Your card was declined.", "card": {"last4": "0002"}}]
    # Retrying the declined attempt's key answers the same; a good card then pays.
    assert [e["code"] for e in (await pay(gql, customer.token, invoice, declining["id"], key="k1"))["userErrors"]] == ["CARD_DECLINED"]
    visa = (await add_card(gql, customer.token, customer.account.id))["paymentMethod"]
    assert (await pay(gql, customer.token, invoice, visa["id"], key="k2"))["invoice"]["status"] == "PAID"
    assert "payment.declined" in await audit_actions(engine, customer.account.number)


async def test_bad_tokens_cards_and_keys_are_user_errors(
    gql: GraphQLClient, engine: AsyncEngine, customer: Customer
) -> None:
    for token, code in (("4242424242424242", "INVALID_CARD_TOKEN"), ("", "INVALID_CARD_TOKEN"),
                        ("tok_\u0007", "INVALID_CARD_TOKEN"), ("x" * 500, "INVALID_CARD_TOKEN")):
        result = await add_card(gql, customer.token, customer.account.id, token)
        assert [e["code"] for e in result["userErrors"]] == [code], token
    visa = (await add_card(gql, customer.token, customer.account.id))["paymentMethod"]
    invoice = await issue_invoice(engine, pk(customer.account.id))
    for key in ("", " ", "k" * 101):
        result = await gql.execute(PAY, {"input": {"invoiceId": invoice, "paymentMethodId": visa["id"],
                                                   "idempotencyKey": key}}, token=customer.token)
        assert [e["code"] for e in result["data"]["payInvoice"]["userErrors"]] == ["INVALID_IDEMPOTENCY_KEY"]
    # The key names one attempt: the same key with another card is refused.
    other = (await add_card(gql, customer.token, customer.account.id, "tok_mastercard"))["paymentMethod"]
    await pay(gql, customer.token, invoice, visa["id"], key="same")
    reused = await pay(gql, customer.token, invoice, other["id"], key="same")
    assert [e["code"] for e in reused["userErrors"]] == ["IDEMPOTENCY_KEY_REUSED"]
    # An ID of another type where a card's is expected.
    wrong = await gql.execute(PAY, {"input": {"invoiceId": invoice, "paymentMethodId": invoice,
                                              "idempotencyKey": "x"}}, token=customer.token)
    assert error_code(wrong) == "BAD_USER_INPUT"


async def test_an_account_keeps_at_most_ten_cards(gql: GraphQLClient, customer: Customer) -> None:
    for _ in range(10):
        assert (await add_card(gql, customer.token, customer.account.id))["userErrors"] == []
    eleventh = await add_card(gql, customer.token, customer.account.id)
    assert [e["code"] for e in eleventh["userErrors"]] == ["TOO_MANY_PAYMENT_METHODS"]


async def test_a_removed_card_is_gone_and_cannot_pay(
    gql: GraphQLClient, engine: AsyncEngine, customer: Customer
) -> None:
    visa = (await add_card(gql, customer.token, customer.account.id))["paymentMethod"]
    removed = await gql.execute(REMOVE_CARD, {"input": {"paymentMethodId": visa["id"]}}, token=customer.token)
    assert removed["data"]["removePaymentMethod"]["removedPaymentMethodId"] == visa["id"]
    listed = await gql.execute(CARDS, {"n": customer.account.number}, token=customer.token)
    assert listed["data"]["viewer"]["account"]["paymentMethods"] == []
    node = await gql.execute("query($id: ID!) { node(id: $id) { id } }", {"id": visa["id"]}, token=customer.token)
    assert node["data"]["node"] is None and error_code(node) == "NOT_FOUND"
    invoice = await issue_invoice(engine, pk(customer.account.id))
    refused = await pay(gql, customer.token, invoice, visa["id"])
    assert [e["code"] for e in refused["userErrors"]] == ["PAYMENT_METHOD_NOT_FOUND"]
    again = await gql.execute(REMOVE_CARD, {"input": {"paymentMethodId": visa["id"]}}, token=customer.token)
    assert error_code(again) == "NOT_FOUND"
    assert "payment_method.removed" in await audit_actions(engine, customer.account.number)


async def test_what_a_stranger_and_a_sub_account_can_do(
    gql: GraphQLClient, engine: AsyncEngine, customer: Customer
) -> None:
    visa = (await add_card(gql, customer.token, customer.account.id))["paymentMethod"]
    invoice = await issue_invoice(engine, pk(customer.account.id))
    stranger = await new_customer(gql, "Stranger Ltd")
    theirs = (await add_card(gql, stranger.token, stranger.account.id))["paymentMethod"]

    # A stranger: the invoice, the account and the card look absent.
    for query, variables in (
        (PAY, {"input": {"invoiceId": invoice, "paymentMethodId": theirs["id"], "idempotencyKey": "s"}}),
        (ADD_CARD, {"input": {"accountId": customer.account.id, "token": "tok_visa"}}),
        (REMOVE_CARD, {"input": {"paymentMethodId": visa["id"]}}),
    ):
        assert error_code(await gql.execute(query, variables, token=stranger.token)) == "NOT_FOUND"
    # The owner cannot pay with a card of another account.
    foreign = await pay(gql, customer.token, invoice, theirs["id"])
    assert [e["code"] for e in foreign["userErrors"]] == ["PAYMENT_METHOD_NOT_FOUND"]

    # A sub-account that may read invoices but not pay them, nor manage cards.
    reader = await new_sub_account(gql, customer.token, customer.account.id, ["INVOICES_READ"])
    refused = await gql.execute(PAY, {"input": {"invoiceId": invoice, "paymentMethodId": visa["id"],
                                                "idempotencyKey": "r"}}, token=reader.token)
    assert error_code(refused) == "FORBIDDEN"
    assert refused["errors"][0]["extensions"]["permission"] == "INVOICES_PAY"
    assert error_code(await gql.execute(ADD_CARD, {"input": {"accountId": customer.account.id, "token": "tok_visa"}},
                                        token=reader.token)) == "FORBIDDEN"
    cards = await gql.execute(CARDS, {"n": customer.account.number}, token=reader.token)
    assert cards["data"]["viewer"]["account"]["paymentMethods"] is None and error_code(cards) == "FORBIDDEN"
    # With INVOICES_PAY it pays with the account's card; it still cannot add one.
    payer = await new_sub_account(gql, customer.token, customer.account.id, ["INVOICES_READ", "INVOICES_PAY"])
    assert error_code(await gql.execute(ADD_CARD, {"input": {"accountId": customer.account.id, "token": "tok_visa"}},
                                        token=payer.token)) == "FORBIDDEN"
    assert (await pay(gql, payer.token, invoice, visa["id"]))["invoice"]["status"] == "PAID"

    # A forged token and no token at all.
    forged = customer.token[:-4] + ("AAAA" if not customer.token.endswith("AAAA") else "BBBB")
    response = await gql.post(PAY, {"input": {"invoiceId": invoice, "paymentMethodId": visa["id"],
                                              "idempotencyKey": "f"}}, token=forged)
    assert response.status_code == 401 or response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    anonymous = await gql.execute(PAY, {"input": {"invoiceId": invoice, "paymentMethodId": visa["id"],
                                                  "idempotencyKey": "a"}})
    assert error_code(anonymous) == "UNAUTHENTICATED"
    assert len(await payments_of(engine, invoice)) == 1


async def test_staff_record_partial_payments_that_add_up(
    gql: GraphQLClient, engine: AsyncEngine, customer: Customer, tokens: dict[str, str]
) -> None:
    invoice = await issue_invoice(engine, pk(customer.account.id), 10_000)  # 121.00 with tax
    finance = tokens["finance"]

    async def record(amount: int, reference: str = "SEPA 2026-12-01 NW", token: str = finance) -> dict[str, Any]:
        return await gql.execute(RECORD, {"input": {"invoiceId": invoice, "amount": amount,
                                                    "reference": reference}}, token=token)

    for amount in (0, -5, 12_101, 2**40):
        result = await record(amount)
        if "errors" in result:  # 2**40 is no Int: refused before the resolver
            assert error_code(result) == "BAD_USER_INPUT"
            continue
        assert [(e["code"], e["field"]) for e in result["data"]["recordPayment"]["userErrors"]] == [
            ("INVALID_AMOUNT", ["amount"])], amount
    assert [e["code"] for e in (await record(100, "   "))["data"]["recordPayment"]["userErrors"]] == ["REFERENCE_REQUIRED"]
    assert [e["code"] for e in (await record(100, "bad\u0007ref"))["data"]["recordPayment"]["userErrors"]] == [
        "TEXT_INVALID"]
    # Customers and support staff may not record payments.
    assert error_code(await record(100, token=customer.token)) == "FORBIDDEN"
    assert error_code(await record(100, token=tokens["agent"])) == "FORBIDDEN"

    first = (await record(5_000))["data"]["recordPayment"]
    assert first["invoice"]["status"] == "UNPAID" and first["invoice"]["amountDue"]["amount"] == 7_100
    # Voiding a partly paid invoice is refused.
    voided = await gql.execute(VOID, {"input": {"invoiceId": invoice, "reason": "mistake"}}, token=finance)
    assert [e["code"] for e in voided["data"]["voidInvoice"]["userErrors"]] == ["INVOICE_PARTLY_PAID"]
    second = (await record(7_100, "SEPA 2026-12-02 NW"))["data"]["recordPayment"]
    assert second["invoice"]["status"] == "PAID" and second["invoice"]["amountDue"]["amount"] == 0
    assert [(p["kind"], p["amount"]["amount"], p["reference"]) for p in second["invoice"]["payments"]] == [
        ("OFFLINE", 5_000, "SEPA 2026-12-01 NW"), ("OFFLINE", 7_100, "SEPA 2026-12-02 NW")]
    assert [e["code"] for e in (await record(1))["data"]["recordPayment"]["userErrors"]] == ["ALREADY_PAID"]
    paid_void = await gql.execute(VOID, {"input": {"invoiceId": invoice, "reason": "x"}}, token=finance)
    assert [e["code"] for e in paid_void["data"]["voidInvoice"]["userErrors"]] == ["ALREADY_PAID"]
    async with create_session_factory(engine)() as session:
        events = (await session.scalars(select(AuditEvent).where(
            AuditEvent.target_type == "invoice", AuditEvent.target_id == pk(invoice)).order_by(AuditEvent.id))).all()
    assert [e.action for e in events] == ["payment.succeeded", "invoice.void_refused", "payment.succeeded",
                                          "invoice.void_refused"]
    assert all(e.actor_is_staff for e in events)


async def test_staff_void_an_unpaid_invoice_and_nobody_can_pay_it(
    gql: GraphQLClient, engine: AsyncEngine, customer: Customer, tokens: dict[str, str]
) -> None:
    visa = (await add_card(gql, customer.token, customer.account.id))["paymentMethod"]
    invoice = await issue_invoice(engine, pk(customer.account.id))
    no_reason = await gql.execute(VOID, {"input": {"invoiceId": invoice, "reason": " "}}, token=tokens["finance"])
    assert [e["code"] for e in no_reason["data"]["voidInvoice"]["userErrors"]] == ["REASON_REQUIRED"]
    assert error_code(await gql.execute(VOID, {"input": {"invoiceId": invoice, "reason": "x"}},
                                        token=customer.token)) == "FORBIDDEN"
    voided = (await gql.execute(VOID, {"input": {"invoiceId": invoice, "reason": "Issued twice"}},
                                token=tokens["finance"]))["data"]["voidInvoice"]
    assert voided["invoice"]["status"] == "VOID" and voided["invoice"]["voidReason"] == "Issued twice"
    assert voided["invoice"]["amountDue"]["amount"] == 0 and voided["invoice"]["voidedAt"]
    refused = await pay(gql, customer.token, invoice, visa["id"])
    assert [e["code"] for e in refused["userErrors"]] == ["INVOICE_VOID"]
    again = await gql.execute(VOID, {"input": {"invoiceId": invoice, "reason": "x"}}, token=tokens["finance"])
    assert [e["code"] for e in again["data"]["voidInvoice"]["userErrors"]] == ["INVOICE_VOID"]
    assert await payments_of(engine, invoice) == []
    assert "invoice.voided" in await audit_actions(engine, customer.account.number)


async def abandon(engine: AsyncEngine, customer: Customer, invoice: str, card: str, key: str = "lost-click", *,
                  age: timedelta = timedelta(hours=1)) -> None:
    """A click whose server died after claiming the invoice (and opening the charge)."""
    async with create_session_factory(engine)() as session:
        session.add(Payment(invoice_id=pk(invoice), kind="CARD", status=PaymentStatus.PENDING, amount=12_100,
                            currency="EUR", payment_method_id=pk(card), idempotency_key=key,
                            processor_ref="pi_test_lost", actor_user_id=pk(customer.user_id),
                            created_at=datetime.now(timezone.utc) - age))
        await session.commit()


async def test_an_abandoned_payment_is_cancelled_never_charged_and_the_next_click_pays(
    gql: GraphQLClient, engine: AsyncEngine, customer: Customer
) -> None:
    """While the claim is fresh, other clicks wait; once it is stale, the next click settles it
    without charging it (the test gateway cannot know it was confirmed, so it is cancelled)
    and pays with its own card and key."""
    visa = (await add_card(gql, customer.token, customer.account.id))["paymentMethod"]
    invoice = await issue_invoice(engine, pk(customer.account.id))
    await abandon(engine, customer, invoice, visa["id"], age=timedelta(seconds=1))
    busy = await pay(gql, customer.token, invoice, visa["id"], key="second")
    assert [e["code"] for e in busy["userErrors"]] == ["PAYMENT_IN_PROGRESS"]
    async with create_session_factory(engine)() as session:
        await session.execute(update(Payment).where(Payment.invoice_id == pk(invoice))
                              .values(created_at=datetime.now(timezone.utc) - timedelta(hours=1)))
        await session.commit()
    mastercard = (await add_card(gql, customer.token, customer.account.id, "tok_mastercard"))["paymentMethod"]
    paid = await pay(gql, customer.token, invoice, mastercard["id"], key="third")
    assert paid["userErrors"] == [] and paid["invoice"]["status"] == "PAID"
    assert paid["payment"]["card"] == {"brand": "mastercard", "last4": "4444"}  # the card this click chose
    payments = await payments_of(engine, invoice)
    assert [(p.idempotency_key, p.status, p.failure_code) for p in payments] == [
        ("lost-click", PaymentStatus.FAILED, "abandoned"), ("third", PaymentStatus.SUCCEEDED, None)]
    # The lost click's own retry learns what became of it.
    assert [e["code"] for e in (await pay(gql, customer.token, invoice, visa["id"], key="lost-click"))["userErrors"]] \
        == ["PAYMENT_ABANDONED"]


async def test_a_removed_card_is_never_charged_even_by_its_own_pending_attempt(
    gql: GraphQLClient, engine: AsyncEngine, customer: Customer
) -> None:
    visa = (await add_card(gql, customer.token, customer.account.id))["paymentMethod"]
    invoice = await issue_invoice(engine, pk(customer.account.id))
    await abandon(engine, customer, invoice, visa["id"], key="mine", age=timedelta(seconds=0))
    await gql.execute(REMOVE_CARD, {"input": {"paymentMethodId": visa["id"]}}, token=customer.token)
    retried = await pay(gql, customer.token, invoice, visa["id"], key="mine")
    assert [e["code"] for e in retried["userErrors"]] == ["PAYMENT_ABANDONED"]
    assert [p.status for p in await payments_of(engine, invoice)] == [PaymentStatus.FAILED]
    state = (await gql.execute(INVOICE, {"id": invoice}, token=customer.token))["data"]["node"]
    assert state["status"] == "UNPAID"


async def test_staff_are_not_blocked_for_good_by_an_abandoned_payment(
    gql: GraphQLClient, engine: AsyncEngine, customer: Customer, tokens: dict[str, str]
) -> None:
    visa = (await add_card(gql, customer.token, customer.account.id))["paymentMethod"]
    invoice = await issue_invoice(engine, pk(customer.account.id))
    await abandon(engine, customer, invoice, visa["id"], age=timedelta(seconds=1))
    fresh = await gql.execute(VOID, {"input": {"invoiceId": invoice, "reason": "Duplicate"}}, token=tokens["finance"])
    assert [e["code"] for e in fresh["data"]["voidInvoice"]["userErrors"]] == ["PAYMENT_IN_PROGRESS"]
    async with create_session_factory(engine)() as session:
        await session.execute(update(Payment).where(Payment.invoice_id == pk(invoice))
                              .values(created_at=datetime.now(timezone.utc) - timedelta(hours=1)))
        await session.commit()
    voided = await gql.execute(VOID, {"input": {"invoiceId": invoice, "reason": "Duplicate"}}, token=tokens["finance"])
    assert voided["data"]["voidInvoice"]["invoice"]["status"] == "VOID"
    assert [p.status for p in await payments_of(engine, invoice)] == [PaymentStatus.FAILED]


async def test_a_key_is_one_users_and_checks_come_before_it(
    gql: GraphQLClient, engine: AsyncEngine, customer: Customer
) -> None:
    visa = (await add_card(gql, customer.token, customer.account.id))["paymentMethod"]
    invoice = await issue_invoice(engine, pk(customer.account.id))
    declined_card = (await add_card(gql, customer.token, customer.account.id, "tok_chargeDeclined"))["paymentMethod"]
    await pay(gql, customer.token, invoice, declined_card["id"], key="owner-key")
    colleague = await new_sub_account(gql, customer.token, customer.account.id, ["INVOICES_READ", "INVOICES_PAY"])
    borrowed = await pay(gql, colleague.token, invoice, declined_card["id"], key="owner-key")
    assert [e["code"] for e in borrowed["userErrors"]] == ["IDEMPOTENCY_KEY_REUSED"]
    # Without the right, a bad key is not what the caller hears about.
    reader = await new_sub_account(gql, customer.token, customer.account.id, ["INVOICES_READ"])
    refused = await gql.execute(PAY, {"input": {"invoiceId": invoice, "paymentMethodId": visa["id"],
                                                "idempotencyKey": " "}}, token=reader.token)
    assert error_code(refused) == "FORBIDDEN"


async def test_recording_twice_with_one_key_records_once(
    gql: GraphQLClient, engine: AsyncEngine, customer: Customer, tokens: dict[str, str]
) -> None:
    invoice = await issue_invoice(engine, pk(customer.account.id))
    variables = {"input": {"invoiceId": invoice, "amount": 1_000, "reference": "SEPA 777",
                           "idempotencyKey": "bank-line-777"}}
    first, second = [(await gql.execute(RECORD, variables, token=tokens["finance"]))["data"]["recordPayment"]
                     for _ in range(2)]
    assert first["invoice"]["amountDue"]["amount"] == second["invoice"]["amountDue"]["amount"] == 11_100
    assert len(await payments_of(engine, invoice)) == 1
    other = await gql.execute(RECORD, {"input": {**variables["input"], "amount": 2_000}}, token=tokens["finance"])
    assert [e["code"] for e in other["data"]["recordPayment"]["userErrors"]] == ["IDEMPOTENCY_KEY_REUSED"]
    blank = await gql.execute(RECORD, {"input": {"invoiceId": invoice, "amount": 1, "reference": "\u200b"}},
                              token=tokens["finance"])
    assert [e["code"] for e in blank["data"]["recordPayment"]["userErrors"]] == ["REFERENCE_REQUIRED"]


async def test_refused_cards_are_throttled_and_the_limit_holds_under_concurrency(
    gql: GraphQLClient, engine: AsyncEngine, customer: Customer
) -> None:
    expired = await add_card(gql, customer.token, customer.account.id, "tok_chargeDeclinedExpiredCard")
    assert [(e["code"], e["message"]) for e in expired["userErrors"]] == [("CARD_DECLINED", "Your card has expired.")]
    for _ in range(4):
        assert (await add_card(gql, customer.token, customer.account.id, "tok_unknown"))["userErrors"]
    throttled = await gql.execute(ADD_CARD, {"input": {"accountId": customer.account.id, "token": "tok_visa"}},
                                  token=customer.token)
    assert error_code(throttled) == "RATE_LIMITED"
    # Another customer's budget is its own. With eight cards on file, five adds at once (each
    # counted while in flight, so a flood is throttled too) keep ten cards at most.
    other = await new_customer(gql, "Many Cards Ltd")
    for _ in range(8):
        assert (await add_card(gql, other.token, other.account.id))["paymentMethod"]
    results = await asyncio.gather(*(add_card(gql, other.token, other.account.id) for _ in range(5)))
    added = [r for r in results if r["paymentMethod"]]
    assert len(added) == 2
    assert {e["code"] for r in results if not r["paymentMethod"] for e in r["userErrors"]} == {
        "TOO_MANY_PAYMENT_METHODS"}
    listed = await gql.execute(CARDS, {"n": other.account.number}, token=other.token)
    assert len(listed["data"]["viewer"]["account"]["paymentMethods"]) == 10


async def test_without_a_gateway_cards_are_switched_off_but_staff_can_record(
    settings: Settings, engine: AsyncEngine, tokens: dict[str, str]
) -> None:
    app = create_app(settings.model_copy(update={"payment_gateway": None}), engine=engine)
    async with client_for(app) as http:
        gql = GraphQLClient(http)
        customer = await new_customer(gql, "No Cards Ltd")
        refused = await add_card(gql, customer.token, customer.account.id)
        assert [e["code"] for e in refused["userErrors"]] == ["PAYMENTS_UNAVAILABLE"]
        invoice = await issue_invoice(engine, pk(customer.account.id))
        fake_card = encode_global_id("PaymentMethod", 1)
        assert [e["code"] for e in (await pay(gql, customer.token, invoice, fake_card))["userErrors"]] == [
            "PAYMENTS_UNAVAILABLE"]
        recorded = await gql.execute(RECORD, {"input": {"invoiceId": invoice, "amount": 12_100,
                                                        "reference": "cheque 0042"}}, token=tokens["finance"])
        assert recorded["data"]["recordPayment"]["invoice"]["status"] == "PAID"


async def test_the_demo_shows_paid_unpaid_and_void_invoices_and_a_card(
    gql: GraphQLClient, tokens: dict[str, str]
) -> None:
    result = await gql.execute("""{ viewer { accounts(first: 10) { edges { node { number
        paymentMethods { brand last4 }
        invoices(first: 10) { edges { node { number status amountDue { amount }
          payments { kind status card { last4 } } } } } } } } } }""", token=tokens["olivia"])
    accounts = {edge["node"]["number"]: edge["node"] for edge in result["data"]["viewer"]["accounts"]["edges"]}
    assert accounts["ACC-100001"]["paymentMethods"] == [{"brand": "visa", "last4": "4242"}]
    statuses = {invoice["node"]["status"] for account in accounts.values()
                for invoice in account["invoices"]["edges"]}
    assert statuses == {"PAID", "UNPAID", "VOID"}
    card_paid = [invoice["node"] for invoice in accounts["ACC-100001"]["invoices"]["edges"]
                 if invoice["node"]["status"] == "PAID"]
    assert card_paid and all(i["payments"] == [{"kind": "CARD", "status": "SUCCEEDED", "card": {"last4": "4242"}}]
                             for i in card_paid)


async def test_without_stripe_the_webhook_is_absent(gql: GraphQLClient) -> None:
    response = await gql.http.post("/payments/webhook", content=b'{"id": "evt_1"}',
                                   headers={"stripe-signature": "t=1,v1=00"})
    assert response.status_code == 404 and response.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_a_retry_racing_its_own_click_never_cancels_the_charge_they_share(
    gql: GraphQLClient, engine: AsyncEngine, customer: Customer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same click sent twice at once: both open the charge under one processor key (the
    processor answers both with the same charge) and the retry stores it first. The click that
    finds its charge already stored must not take it for a stranger's and cancel it; it answers
    with the payment as it stands. (Found by CI: two servers, a slow processor, PAYMENT_ABANDONED.)"""
    visa = (await add_card(gql, customer.token, customer.account.id))["paymentMethod"]
    invoice = await issue_invoice(engine, pk(customer.account.id))
    opened, cancel_for_real = TestGateway.open_charge, TestGateway.cancel_charge
    cancelled: list[str] = []
    retried: list[dict[str, Any]] = []
    overtaken: list[str] = []

    async def open_while_the_retry_runs(self: TestGateway, **charge: Any) -> str:
        reference = await opened(self, **charge)
        if not overtaken:  # the first click's charge is open; its retry overtakes it
            overtaken.append(reference)
            retried.append(await pay(gql, customer.token, invoice, visa["id"], key="twice"))
        return reference

    async def cancel(self: TestGateway, *, reference: str) -> Any:
        cancelled.append(reference)
        return await cancel_for_real(self, reference=reference)

    monkeypatch.setattr(TestGateway, "open_charge", open_while_the_retry_runs)
    monkeypatch.setattr(TestGateway, "cancel_charge", cancel)
    first = await pay(gql, customer.token, invoice, visa["id"], key="twice")
    assert retried[0]["userErrors"] == [] and retried[0]["invoice"]["status"] == "PAID"
    assert first["userErrors"] == [] and first["invoice"]["status"] == "PAID"
    assert cancelled == []
    assert [p.status for p in await payments_of(engine, invoice)] == [PaymentStatus.SUCCEEDED]
