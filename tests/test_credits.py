"""Credits over HTTP: purchases (and their charges), transfers, staff usage, idempotency keys,
bad input, and the balance that never goes negative."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from models import (
    Account, AuditEvent, Charge, ChargeKind, CreditLedgerEntry, IdempotencyRecord,
    Membership, StaffRole,
)
from models.database import create_session_factory
from resolvers.tunables import Tunables
from schema.relay import encode_global_id
from tests.billing_world import (
    balance_and_ledger_sum, grant, link_billing, seeded_customer, new_user, rows, scalar,
    unlink_billing,
)
from tests.conftest import GraphQLClient

PURCHASE = """
mutation($input: PurchaseCreditsInput!) {
  purchaseCredits(input: $input) {
    account { id creditBalance }
    ledgerEntry { id kind delta balanceAfter }
    replayed
    userErrors { field code message }
  }
}"""

TRANSFER = """
mutation($input: TransferCreditsInput!) {
  transferCredits(input: $input) {
    fromAccount { creditBalance }
    toAccount { creditBalance }
    fromEntry { id kind delta balanceAfter transferId note }
    toEntry { id kind delta balanceAfter transferId }
    transferId
    replayed
    userErrors { field code message }
  }
}"""

USAGE = """
mutation($input: RecordUsageInput!) {
  recordUsage(input: $input) {
    account { creditBalance }
    ledgerEntry { kind delta balanceAfter note actor }
    replayed
    userErrors { field code }
  }
}"""

UNIT_PRICE = Tunables().credit_unit_price


async def purchase(gql: GraphQLClient, token: str, account: str, credits: Any, key: str | None = None) -> dict[str, Any]:
    return await gql.execute(PURCHASE, {"input": {"accountId": account, "credits": credits,
                                                  "idempotencyKey": key}}, token=token)


async def transfer(gql: GraphQLClient, token: str, source: str, target: str, credits: Any,
                   key: str | None = None, note: str | None = None) -> dict[str, Any]:
    return await gql.execute(TRANSFER, {"input": {
        "fromAccountId": source, "toAccountId": target, "credits": credits,
        "idempotencyKey": key, "note": note,
    }}, token=token)


async def ledger_count(engine: AsyncEngine, account_id: int) -> int:
    return int(await scalar(engine, select(func.count()).select_from(CreditLedgerEntry)
                            .where(CreditLedgerEntry.account_id == account_id)))


# --- purchases ---------------------------------------------------------------------------


async def test_a_purchase_adds_credits_a_ledger_entry_and_a_charge(gql: GraphQLClient, engine: AsyncEngine) -> None:
    customer = await seeded_customer(engine, balances=[40])
    result = await purchase(gql, customer.token, customer.gid(), 250)
    payload = result["data"]["purchaseCredits"]
    assert "errors" not in result and payload["userErrors"] == []
    assert payload["account"]["creditBalance"] == 290
    assert payload["ledgerEntry"] == {**payload["ledgerEntry"], "kind": "PURCHASE", "delta": 250,
                                      "balanceAfter": 290}
    assert payload["replayed"] is False
    (charge,) = await rows(engine, select(Charge).where(Charge.account_id == customer.account_ids[0]))
    assert (charge.kind, charge.quantity, charge.unit_price, charge.amount) == (
        ChargeKind.CREDIT_PURCHASE, 250, UNIT_PRICE, 250 * UNIT_PRICE)
    assert charge.payer_account_id == customer.account_ids[0] and charge.invoice_id is None
    assert await balance_and_ledger_sum(engine, customer.account_ids[0]) == (290, 290)


async def test_the_payer_of_a_charge_is_fixed_when_it_is_made(gql: GraphQLClient, engine: AsyncEngine) -> None:
    customer = await seeded_customer(engine, accounts=2)
    head, member = customer.account_ids
    group = await link_billing(engine, head, [member])
    await purchase(gql, customer.token, customer.gid(1), 10)
    await unlink_billing(engine, group, member)
    await purchase(gql, customer.token, customer.gid(1), 20)
    charges = await rows(engine, select(Charge).where(Charge.account_id == member).order_by(Charge.id))
    assert [(c.quantity, c.payer_account_id, c.billing_group_id) for c in charges] == [
        (10, head, group), (20, member, None)]


@pytest.mark.parametrize("credits", [0, -5])
async def test_zero_or_negative_credits_are_a_user_error(gql: GraphQLClient, engine: AsyncEngine, credits: int) -> None:
    customer = await seeded_customer(engine, balances=[10])
    result = await purchase(gql, customer.token, customer.gid(), credits)
    assert result["data"]["purchaseCredits"]["userErrors"] == [
        {"field": ["credits"], "code": "INVALID_AMOUNT", "message": "Credits must be a whole number above zero."}]
    assert result["data"]["purchaseCredits"]["account"] is None
    assert await ledger_count(engine, customer.account_ids[0]) == 1


@pytest.mark.parametrize("credits", [2**31, 1.5, "12", 10**20])
async def test_huge_or_non_integer_credits_are_refused_before_anything_runs(
    gql: GraphQLClient, engine: AsyncEngine, credits: Any
) -> None:
    customer = await seeded_customer(engine, balances=[10])
    response = await gql.post(PURCHASE, {"input": {"accountId": customer.gid(), "credits": credits}},
                              token=customer.token)
    assert response.status_code in (200, 400)
    body = response.json()
    assert body.get("data") is None
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert await ledger_count(engine, customer.account_ids[0]) == 1


async def test_a_purchase_over_the_per_operation_limit_is_a_user_error(gql: GraphQLClient, engine: AsyncEngine) -> None:
    customer = await seeded_customer(engine)
    result = await purchase(gql, customer.token, customer.gid(), 2**31 - 1)
    assert [e["code"] for e in result["data"]["purchaseCredits"]["userErrors"]] == ["INVALID_AMOUNT"]
    assert await ledger_count(engine, customer.account_ids[0]) == 0


async def test_purchase_needs_credits_purchase_and_a_visible_account(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await seeded_customer(engine)
    reader_id, _, reader_token = await new_user(engine)
    await grant(engine, reader_id, owner.account_ids[0], ["CREDITS_READ"])
    stranger = await seeded_customer(engine)
    denied = await purchase(gql, reader_token, owner.gid(), 5)
    assert (denied["data"] or {}).get("purchaseCredits") is None
    assert denied["errors"][0]["extensions"] == {"code": "FORBIDDEN", "permission": "CREDITS_PURCHASE"}
    invisible = await purchase(gql, stranger.token, owner.gid(), 5)
    assert invisible["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    anonymous = await gql.execute(PURCHASE, {"input": {"accountId": owner.gid(), "credits": 5}})
    assert anonymous["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    wrong_type = await purchase(gql, owner.token, encode_global_id("Invoice", owner.account_ids[0]), 5)
    assert wrong_type["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert await ledger_count(engine, owner.account_ids[0]) == 0


# --- idempotency -------------------------------------------------------------------------


async def test_the_same_key_returns_the_first_result_and_writes_nothing(gql: GraphQLClient, engine: AsyncEngine) -> None:
    customer = await seeded_customer(engine)
    first = (await purchase(gql, customer.token, customer.gid(), 100, key="buy-1"))["data"]["purchaseCredits"]
    again = (await purchase(gql, customer.token, customer.gid(), 100, key="buy-1"))["data"]["purchaseCredits"]
    assert again["ledgerEntry"] == first["ledgerEntry"] and again["replayed"] is True
    assert again["account"]["creditBalance"] == 100
    assert await ledger_count(engine, customer.account_ids[0]) == 1
    assert len(await rows(engine, select(Charge).where(Charge.account_id == customer.account_ids[0]))) == 1
    other = (await purchase(gql, customer.token, customer.gid(), 101, key="buy-1"))["data"]["purchaseCredits"]
    assert [(e["code"], e["field"]) for e in other["userErrors"]] == [("IDEMPOTENCY_KEY_REUSED", ["idempotencyKey"])]
    assert await balance_and_ledger_sum(engine, customer.account_ids[0]) == (100, 100)
    fresh = (await purchase(gql, customer.token, customer.gid(), 100, key="buy-2"))["data"]["purchaseCredits"]
    assert fresh["replayed"] is False and fresh["account"]["creditBalance"] == 200


async def test_keys_belong_to_one_user_and_one_operation(gql: GraphQLClient, engine: AsyncEngine) -> None:
    customer = await seeded_customer(engine, accounts=2, balances=[50, 0])
    other = await seeded_customer(engine)
    await purchase(gql, customer.token, customer.gid(), 10, key="shared")
    moved = await transfer(gql, customer.token, customer.gid(0), customer.gid(1), 5, key="shared")
    assert moved["data"]["transferCredits"]["replayed"] is False
    theirs = await purchase(gql, other.token, other.gid(), 10, key="shared")
    assert theirs["data"]["purchaseCredits"]["replayed"] is False
    assert await scalar(engine, select(func.count()).select_from(IdempotencyRecord)
                        .where(IdempotencyRecord.key == "shared",
                               IdempotencyRecord.user_id.in_([customer.user_id, other.user_id]))) == 3


async def test_a_blank_or_overlong_key_is_a_user_error(gql: GraphQLClient, engine: AsyncEngine) -> None:
    customer = await seeded_customer(engine)
    for key in ("   ", "k" * 101):
        result = await purchase(gql, customer.token, customer.gid(), 10, key=key)
        assert [e["code"] for e in result["data"]["purchaseCredits"]["userErrors"]] == ["INVALID_IDEMPOTENCY_KEY"]
    assert await ledger_count(engine, customer.account_ids[0]) == 0


# --- transfers ---------------------------------------------------------------------------


async def test_a_transfer_writes_both_entries_and_audits_both_accounts(gql: GraphQLClient, engine: AsyncEngine) -> None:
    customer = await seeded_customer(engine, accounts=2, balances=[300, 20])
    result = await transfer(gql, customer.token, customer.gid(0), customer.gid(1), 120, note="For the pilot")
    payload = result["data"]["transferCredits"]
    assert payload["userErrors"] == [] and "errors" not in result
    assert (payload["fromAccount"]["creditBalance"], payload["toAccount"]["creditBalance"]) == (180, 140)
    out, into = payload["fromEntry"], payload["toEntry"]
    assert (out["kind"], out["delta"], out["balanceAfter"], out["note"]) == ("TRANSFER_OUT", -120, 180, "For the pilot")
    assert (into["kind"], into["delta"], into["balanceAfter"]) == ("TRANSFER_IN", 120, 140)
    assert out["transferId"] == into["transferId"] == payload["transferId"]
    for account_id, balance in zip(customer.account_ids, (180, 140)):
        assert await balance_and_ledger_sum(engine, account_id) == (balance, balance)
    events = await rows(engine, select(AuditEvent).where(AuditEvent.account_id.in_(customer.account_ids),
                                                         AuditEvent.action == "credits.transferred"))
    assert len(events) == 2 and {e.after["transfer_id"] for e in events} == {payload["transferId"]}
    assert all(e.actor_user_id == customer.user_id and e.after["credits"] == 120 for e in events)


async def test_transfer_user_errors_write_nothing(gql: GraphQLClient, engine: AsyncEngine) -> None:
    customer = await seeded_customer(engine, accounts=2, balances=[50, 0])
    cases = [
        ((customer.gid(0), customer.gid(0), 10), "SAME_ACCOUNT"),
        ((customer.gid(0), customer.gid(1), 51), "INSUFFICIENT_CREDITS"),
        ((customer.gid(0), customer.gid(1), 0), "INVALID_AMOUNT"),
        ((customer.gid(0), customer.gid(1), -3), "INVALID_AMOUNT"),
    ]
    for (source, target, credits), code in cases:
        result = await transfer(gql, customer.token, source, target, credits)
        payload = result["data"]["transferCredits"]
        assert code in [e["code"] for e in payload["userErrors"]], (code, payload)
        assert payload["fromEntry"] is None
    assert await balance_and_ledger_sum(engine, customer.account_ids[0]) == (50, 50)
    assert await ledger_count(engine, customer.account_ids[1]) == 0


async def test_the_whole_balance_can_move_but_not_one_credit_more(gql: GraphQLClient, engine: AsyncEngine) -> None:
    customer = await seeded_customer(engine, accounts=2, balances=[75, 0])
    moved = await transfer(gql, customer.token, customer.gid(0), customer.gid(1), 75)
    assert moved["data"]["transferCredits"]["fromAccount"]["creditBalance"] == 0
    again = await transfer(gql, customer.token, customer.gid(0), customer.gid(1), 1)
    assert [e["code"] for e in again["data"]["transferCredits"]["userErrors"]] == ["INSUFFICIENT_CREDITS"]


async def test_transfer_to_an_account_the_caller_cannot_see_is_not_found(gql: GraphQLClient, engine: AsyncEngine) -> None:
    customer = await seeded_customer(engine, balances=[100])
    stranger = await seeded_customer(engine)
    result = await transfer(gql, customer.token, customer.gid(), stranger.gid(), 10)
    assert (result["data"] or {}).get("transferCredits") is None
    assert result["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    missing = await transfer(gql, customer.token, customer.gid(), encode_global_id("Account", 10**12), 10)
    assert missing["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert missing["errors"][0]["message"] == result["errors"][0]["message"]
    assert await balance_and_ledger_sum(engine, customer.account_ids[0]) == (100, 100)
    assert await ledger_count(engine, stranger.account_ids[0]) == 0


async def test_transfer_permissions_source_and_destination(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await seeded_customer(engine, accounts=2, balances=[100, 0])
    clerk_id, _, clerk = await new_user(engine)
    await grant(engine, clerk_id, owner.account_ids[0], ["CREDITS_READ", "CREDITS_TRANSFER"])
    await grant(engine, clerk_id, owner.account_ids[1], ["SERVICES_READ"])
    to_technical = await transfer(gql, clerk, owner.gid(0), owner.gid(1), 10)
    assert to_technical["errors"][0]["extensions"] == {"code": "FORBIDDEN", "permission": "CREDITS_READ"}
    backwards = await transfer(gql, clerk, owner.gid(1), owner.gid(0), 10)
    assert backwards["errors"][0]["extensions"] == {"code": "FORBIDDEN", "permission": "CREDITS_TRANSFER"}
    assert await balance_and_ledger_sum(engine, owner.account_ids[0]) == (100, 100)
    async with create_session_factory(engine)() as session:
        await session.execute(update(Membership).where(Membership.user_id == clerk_id,
                                                       Membership.account_id == owner.account_ids[1])
                              .values(permissions=["CREDITS_READ"]))
        await session.commit()
    allowed = await transfer(gql, clerk, owner.gid(0), owner.gid(1), 10)
    assert allowed["data"]["transferCredits"]["toAccount"]["creditBalance"] == 10


async def test_a_transfer_repeated_with_its_key_moves_credits_once(gql: GraphQLClient, engine: AsyncEngine) -> None:
    customer = await seeded_customer(engine, accounts=2, balances=[100, 0])
    first = (await transfer(gql, customer.token, customer.gid(0), customer.gid(1), 30, key="t-1"))["data"]["transferCredits"]
    again = (await transfer(gql, customer.token, customer.gid(0), customer.gid(1), 30, key="t-1"))["data"]["transferCredits"]
    assert again["replayed"] is True and again["transferId"] == first["transferId"]
    assert again["fromEntry"] == first["fromEntry"] and again["toEntry"] == first["toEntry"]
    assert again["fromAccount"]["creditBalance"] == 70
    reused = (await transfer(gql, customer.token, customer.gid(1), customer.gid(0), 30, key="t-1"))["data"]["transferCredits"]
    assert [e["code"] for e in reused["userErrors"]] == ["IDEMPOTENCY_KEY_REUSED"]
    assert await balance_and_ledger_sum(engine, customer.account_ids[0]) == (70, 70)
    assert await balance_and_ledger_sum(engine, customer.account_ids[1]) == (30, 30)


# --- staff usage --------------------------------------------------------------------------


async def test_billing_staff_record_usage_and_it_is_audited(
    gql: GraphQLClient, engine: AsyncEngine, tokens: dict[str, str]
) -> None:
    customer = await seeded_customer(engine, balances=[500])
    variables = {"input": {"accountId": customer.gid(), "credits": 120, "description": "SMS: campaign",
                           "idempotencyKey": "usage-1"}}
    result = await gql.execute(USAGE, variables, token=tokens["finance"])
    payload = result["data"]["recordUsage"]
    assert payload["userErrors"] == [] and payload["account"]["creditBalance"] == 380
    assert payload["ledgerEntry"] == {"kind": "USAGE", "delta": -120, "balanceAfter": 380,
                                      "note": "SMS: campaign", "actor": "Fatima Haddad"}
    replay = await gql.execute(USAGE, variables, token=tokens["finance"])
    assert replay["data"]["recordUsage"]["replayed"] is True
    (event,) = await rows(engine, select(AuditEvent).where(AuditEvent.account_id == customer.account_ids[0],
                                                           AuditEvent.action == "credits.usage_recorded"))
    assert event.actor_is_staff and event.before == {"credit_balance": 500}
    assert await balance_and_ledger_sum(engine, customer.account_ids[0]) == (380, 380)


async def test_admin_staff_may_record_usage_support_staff_and_customers_may_not(
    gql: GraphQLClient, engine: AsyncEngine, tokens: dict[str, str]
) -> None:
    customer = await seeded_customer(engine, balances=[100])
    _, _, admin = await new_user(engine, role=StaffRole.ADMIN)
    variables = {"input": {"accountId": customer.gid(), "credits": 10, "description": "SMS"}}
    for token in (tokens["agent"], customer.token):
        denied = await gql.execute(USAGE, variables, token=token)
        assert (denied["data"] or {}).get("recordUsage") is None
        assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    anonymous = await gql.execute(USAGE, variables)
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert await balance_and_ledger_sum(engine, customer.account_ids[0]) == (100, 100)
    allowed = await gql.execute(USAGE, variables, token=admin)
    assert allowed["data"]["recordUsage"]["account"]["creditBalance"] == 90


async def test_usage_beyond_the_balance_or_without_description_is_refused(
    gql: GraphQLClient, engine: AsyncEngine, tokens: dict[str, str]
) -> None:
    customer = await seeded_customer(engine, balances=[30])
    over = await gql.execute(USAGE, {"input": {"accountId": customer.gid(), "credits": 31,
                                               "description": "SMS"}}, token=tokens["finance"])
    assert [e["code"] for e in over["data"]["recordUsage"]["userErrors"]] == ["INSUFFICIENT_CREDITS"]
    blank = await gql.execute(USAGE, {"input": {"accountId": customer.gid(), "credits": 1,
                                                "description": "  "}}, token=tokens["finance"])
    assert [e["code"] for e in blank["data"]["recordUsage"]["userErrors"]] == ["DESCRIPTION_EMPTY"]
    assert await balance_and_ledger_sum(engine, customer.account_ids[0]) == (30, 30)


# --- the database guards the balance too ---------------------------------------------------


async def test_the_database_refuses_a_negative_balance(engine: AsyncEngine) -> None:
    customer = await seeded_customer(engine, balances=[5])
    async with create_session_factory(engine)() as session:
        with pytest.raises(IntegrityError):
            await session.execute(update(Account).where(Account.id == customer.account_ids[0])
                                  .values(credit_balance=-1))
            await session.commit()
        await session.rollback()
    assert await balance_and_ledger_sum(engine, customer.account_ids[0]) == (5, 5)
