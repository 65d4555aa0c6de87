"""Permission checks cost no SQL per row (DESIGN §2, §5).

Checks read the ``AccessMap`` resolved once per request, so a page of 100 invoices issues
exactly as many statements as a page of one, whether the permission is held directly
(the owner) or flows through a BILLING link (a sub-account on the head account).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.permissions import Permission
from linkgate.app import create_app
from linkgate.settings import Settings
from models import (
    Account, Invoice, InvoiceLine, InvoiceStatus, LinkGroup, LinkKind, LinkMember, LinkMethod,
    LinkPeriod, Membership, User,
)
from models.database import create_session_factory
from tests.conftest import GraphQLClient, client_for, token_for_user

INVOICES = """
query($number: String!) {
  viewer { account(number: $number) {
    invoices(first: 100) { edges { node { number total { amount } lines { amount { amount } } } } }
  } }
}
"""

# authenticate, the account by number, the invoice page, the lines; and, on a user's first
# request after a rights change, direct rights, link groups and the rights version again
# (auth/access_cache.py).
MAX_STATEMENTS = 7


@dataclass(frozen=True)
class Billed:
    """An account with ``invoice_count`` invoices, billed under a head account."""

    number: str
    owner_token: str
    sub_account_token: str  # INVOICES_READ on the head account only; it reaches us via BILLING


def _user(tag: str, role: str) -> User:
    return User(
        email=f"{role}-{tag}@statements.example", name=f"{role} {tag}",
        password_hash="not-a-real-hash", token_version=1,
    )


def _account(owner: User, name: str) -> Account:
    # Upper case: look-ups by number upper-case the argument.
    return Account(
        number=f"ACC-9{uuid.uuid4().hex[:10].upper()}", name=name, owner_id=owner.id,
        enrollment_token_hash="not-a-real-hash",
    )


async def _billed_account(engine: AsyncEngine, invoice_count: int) -> Billed:
    """A fresh owner, head and member accounts in a BILLING group, the member's invoices
    (one or two lines each), and a sub-account user holding INVOICES_READ on the head."""
    tag = uuid.uuid4().hex[:12]
    async with create_session_factory(engine)() as session:
        owner, clerk = _user(tag, "owner"), _user(tag, "clerk")
        session.add_all([owner, clerk])
        await session.flush()
        head, member = _account(owner, "Statements head"), _account(owner, "Statements member")
        session.add_all([head, member])
        await session.flush()
        group = LinkGroup(kind=LinkKind.BILLING, name=f"Statements {tag}")
        session.add(group)
        await session.flush()
        linked = datetime.now(timezone.utc)  # after the invoices: the member paid them itself
        session.add_all([
            LinkMember(group_id=group.id, kind=LinkKind.BILLING, account_id=head.id,
                       is_head=True, linked_at=linked, linked_via=LinkMethod.SAME_OWNER),
            LinkMember(group_id=group.id, kind=LinkKind.BILLING, account_id=member.id,
                       linked_at=linked, linked_via=LinkMethod.SAME_OWNER),
            LinkPeriod(kind=LinkKind.BILLING, account_id=member.id, group_id=group.id,
                       head_account_id=head.id, valid_from=linked),
            Membership(user_id=clerk.id, account_id=head.id,
                       permissions=[Permission.INVOICES_READ.value]),
        ])
        issued = datetime(2026, 1, 1, tzinfo=timezone.utc)
        invoices = [
            Invoice(
                number=f"INV-S{tag}-{index:03d}", payer_account_id=member.id,
                period_start=date(2026, 1, 1), period_end=date(2026, 1, 31),
                issued_at=issued + timedelta(hours=index), due_at=issued + timedelta(days=14),
                status=InvoiceStatus.UNPAID, currency="EUR", subtotal=1000, tax=210, total=1210,
                bill_to_name="Statements", bill_to_email=f"ap-{tag}@statements.example",
                payer_number=member.number, payer_name=member.name,
            )
            for index in range(invoice_count)
        ]
        session.add_all(invoices)
        await session.flush()
        session.add_all([
            InvoiceLine(invoice_id=invoice.id, account_id=member.id, description=f"Line {line}",
                        quantity=1, unit_price=500 + line, amount=500 + line,
                        account_number=member.number, account_name=member.name)
            for index, invoice in enumerate(invoices)
            for line in range(1 + index % 2)
        ])
        await session.commit()
    return Billed(member.number, await token_for_user(engine, owner.id),
                  await token_for_user(engine, clerk.id))


async def _count(gql: GraphQLClient, count_statements: Any, number: str, token: str) -> tuple[int, int]:
    """(statements issued, invoices returned) for one request, after checking it succeeded."""
    with count_statements() as counter:
        result = await gql.execute(INVOICES, {"number": number}, token=token)
    assert "errors" not in result, result
    edges = result["data"]["viewer"]["account"]["invoices"]["edges"]
    assert all(edge["node"]["lines"] for edge in edges)
    return counter.count, len(edges)


@pytest.fixture(scope="module")
async def one(engine: AsyncEngine) -> Billed:
    return await _billed_account(engine, 1)


@pytest.fixture(scope="module")
async def hundred(engine: AsyncEngine) -> Billed:
    return await _billed_account(engine, 100)


@pytest.mark.parametrize("who", ["owner_token", "sub_account_token"])
async def test_a_page_of_100_invoices_costs_the_statements_of_one(
    gql: GraphQLClient, count_statements: Any, one: Billed, hundred: Billed, who: str
) -> None:
    small, small_rows = await _count(gql, count_statements, one.number, getattr(one, who))
    large, large_rows = await _count(gql, count_statements, hundred.number, getattr(hundred, who))
    print(f"{who}: {small} statements for {small_rows} invoice, {large} for {large_rows}")
    assert (small_rows, large_rows) == (1, 100)
    assert large == small
    assert large <= MAX_STATEMENTS


async def test_checks_issue_no_sql(
    settings: Settings, engine: AsyncEngine, gql: GraphQLClient, count_statements: Any,
    hundred: Billed,
) -> None:
    """The same request with checks switched off (the benchmark's app) issues the same SQL,
    each app with the caller's rights read once already (auth/access_cache.py)."""
    async with client_for(create_app(settings, engine=engine, enforce_permissions=False)) as http:
        unchecked = GraphQLClient(http)
        counts = []
        for client in (gql, unchecked, gql, unchecked):
            counts.append((await _count(client, count_statements, hundred.number, hundred.sub_account_token))[0])
    assert counts[2] == counts[3], counts


def test_the_switch_is_an_argument_not_a_setting() -> None:
    """Production builds the app from settings: nothing there can turn the checks off."""
    assert not any("enforce" in name or "permission" in name for name in Settings.model_fields)


async def test_the_benchmark_switch_really_turns_checks_off(
    settings: Settings, engine: AsyncEngine, gql: GraphQLClient, hundred: Billed
) -> None:
    """Otherwise the benchmark would compare checks with checks."""
    query = "query($n: String!) { viewer { account(number: $n) { creditBalance } } }"
    variables = {"n": hundred.number}
    checked = await gql.execute(query, variables, token=hundred.sub_account_token)
    assert [e["extensions"]["code"] for e in checked["errors"]] == ["FORBIDDEN"]
    async with client_for(create_app(settings, engine=engine, enforce_permissions=False)) as http:
        unchecked = await GraphQLClient(http).execute(query, variables, token=hundred.sub_account_token)
    assert "errors" not in unchecked
    assert unchecked["data"]["viewer"]["account"]["creditBalance"] == 0
