"""Low-credit reminders over HTTP: settings, validation, and exactly-once firing per crossing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from models import LowCreditReminder, Notification
from tests.billing_world import SeededCustomer, grant, seeded_customer, new_user, rows
from tests.conftest import GraphQLClient
from tests.test_credits import USAGE, purchase, transfer

SET = """
mutation($input: SetLowCreditReminderInput!) {
  setLowCreditReminder(input: $input) {
    account { creditBalance lowCreditReminder { enabled threshold recipients } }
    userErrors { field code }
  }
}"""


async def set_reminder(gql: GraphQLClient, token: str, account: str, *, enabled: bool = True,
                       threshold: int = 50, recipients: list[str] | None = None) -> dict[str, Any]:
    return await gql.execute(SET, {"input": {"accountId": account, "enabled": enabled,
                                             "threshold": threshold,
                                             "recipients": recipients or []}}, token=token)


async def credit_emails(engine: AsyncEngine, customer: SeededCustomer, index: int = 0) -> list[Notification]:
    return await rows(engine, select(Notification).where(
        Notification.account_id == customer.account_ids[index], Notification.category == "CREDIT",
    ).order_by(Notification.id))


async def use(gql: GraphQLClient, staff: str, account: str, credits: int) -> None:
    result = await gql.execute(USAGE, {"input": {"accountId": account, "credits": credits,
                                                 "description": "SMS"}}, token=staff)
    assert result["data"]["recordUsage"]["userErrors"] == [], result


async def test_set_and_read_back(gql: GraphQLClient, engine: AsyncEngine) -> None:
    customer = await seeded_customer(engine, balances=[100])
    result = await set_reminder(gql, customer.token, customer.gid(), threshold=40,
                                recipients=["Ops@Example.com", "ops@example.com", "cfo@example.com"])
    payload = result["data"]["setLowCreditReminder"]
    assert payload["userErrors"] == []
    assert payload["account"]["lowCreditReminder"] == {
        "enabled": True, "threshold": 40, "recipients": ["ops@example.com", "cfo@example.com"]}
    (row,) = await rows(engine, select(LowCreditReminder).where(
        LowCreditReminder.account_id == customer.account_ids[0]))
    assert row.armed is True


async def test_bad_settings_are_user_errors_and_change_nothing(gql: GraphQLClient, engine: AsyncEngine) -> None:
    customer = await seeded_customer(engine, balances=[100])
    await set_reminder(gql, customer.token, customer.gid(), threshold=10)
    cases = [
        ({"threshold": -1}, [(["threshold"], "INVALID_THRESHOLD")]),
        ({"recipients": [f"r{i}@example.com" for i in range(11)]}, [(["recipients"], "TOO_MANY_RECIPIENTS")]),
        ({"recipients": ["ok@example.com", "not-an-email"]}, [(["recipients", "1"], "INVALID_EMAIL")]),
    ]
    for change, expected in cases:
        result = await set_reminder(gql, customer.token, customer.gid(), **change)
        payload = result["data"]["setLowCreditReminder"]
        assert [(e["field"], e["code"]) for e in payload["userErrors"]] == expected
        assert payload["account"] is None
    (row,) = await rows(engine, select(LowCreditReminder).where(
        LowCreditReminder.account_id == customer.account_ids[0]))
    assert (row.threshold, row.recipients) == (10, [])


async def test_setting_needs_billing_manage(gql: GraphQLClient, engine: AsyncEngine) -> None:
    customer = await seeded_customer(engine, balances=[100])
    reader_id, _, reader = await new_user(engine)
    await grant(engine, reader_id, customer.account_ids[0], ["CREDITS_READ", "CREDITS_PURCHASE"])
    denied = await set_reminder(gql, reader, customer.gid())
    assert denied["errors"][0]["extensions"] == {"code": "FORBIDDEN", "permission": "BILLING_MANAGE"}
    assert await rows(engine, select(LowCreditReminder).where(
        LowCreditReminder.account_id == customer.account_ids[0])) == []


async def test_fires_once_per_downward_crossing_and_rearms_on_recovery(
    gql: GraphQLClient, engine: AsyncEngine, tokens: dict[str, str]
) -> None:
    customer = await seeded_customer(engine, accounts=2, balances=[100, 0])
    staff = tokens["finance"]
    await set_reminder(gql, customer.token, customer.gid(), threshold=50,
                       recipients=["a@example.com", "b@example.com"])
    await use(gql, staff, customer.gid(), 30)          # 70: above, nothing
    assert await credit_emails(engine, customer) == []
    await use(gql, staff, customer.gid(), 30)          # 40: crosses, one email per recipient
    first = await credit_emails(engine, customer)
    assert sorted(n.recipient for n in first) == ["a@example.com", "b@example.com"]
    assert "40" in first[0].body and first[0].sent_at is None
    await use(gql, staff, customer.gid(), 10)          # 30: still below, nothing more
    await transfer(gql, customer.token, customer.gid(0), customer.gid(1), 5)  # 25: nothing
    assert len(await credit_emails(engine, customer)) == 2
    await purchase(gql, customer.token, customer.gid(), 24)  # 49: below, not re-armed
    await use(gql, staff, customer.gid(), 1)           # 48
    assert len(await credit_emails(engine, customer)) == 2
    await purchase(gql, customer.token, customer.gid(), 2)   # 50: at the threshold → re-armed
    (row,) = await rows(engine, select(LowCreditReminder).where(
        LowCreditReminder.account_id == customer.account_ids[0]))
    assert row.armed is True
    await transfer(gql, customer.token, customer.gid(0), customer.gid(1), 1)  # 49: crosses again
    assert len(await credit_emails(engine, customer)) == 4
    assert await credit_emails(engine, customer, 1) == []  # the receiving side never fires


async def test_no_recipients_means_the_owner_and_disabled_means_silent(
    gql: GraphQLClient, engine: AsyncEngine, tokens: dict[str, str]
) -> None:
    customer = await seeded_customer(engine, accounts=2, balances=[100, 100])
    await set_reminder(gql, customer.token, customer.gid(0), threshold=90)
    await set_reminder(gql, customer.token, customer.gid(1), threshold=90, enabled=False)
    await use(gql, tokens["finance"], customer.gid(0), 20)
    await use(gql, tokens["finance"], customer.gid(1), 20)
    assert [n.recipient for n in await credit_emails(engine, customer, 0)] == [customer.email]
    assert await credit_emails(engine, customer, 1) == []


async def test_a_threshold_set_above_the_balance_waits_for_the_next_crossing(
    gql: GraphQLClient, engine: AsyncEngine, tokens: dict[str, str]
) -> None:
    customer = await seeded_customer(engine, balances=[30])
    await set_reminder(gql, customer.token, customer.gid(), threshold=50)
    await use(gql, tokens["finance"], customer.gid(), 5)
    assert await credit_emails(engine, customer) == []
    await purchase(gql, customer.token, customer.gid(), 40)   # 65: armed
    await use(gql, tokens["finance"], customer.gid(), 20)     # 45: fires
    assert len(await credit_emails(engine, customer)) == 1
