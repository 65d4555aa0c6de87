"""N+1 free (DESIGN §5): the dashboard issues as many statements for 50 accounts as for 5.

Each owner gets N accounts, every one with a full set of children (link groups, invoices
with lines, services, tickets with messages, ledger entries, contacts), so a relation that
loaded per parent would show up as statements growing with N.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from models import (
    Account, AuthorKind, Contact, CreditLedgerEntry, Department, Invoice, InvoiceLine,
    InvoiceStatus, LedgerEntryKind, LinkGroup, LinkKind, LinkMember, LinkMethod, LinkPeriod,
    Payment, PaymentKind, PaymentStatus, Service, Ticket, TicketMessage, User,
)
from models.database import create_session_factory
from tests.conftest import GraphQLClient, token_for_user

DASHBOARD = """
query($first: Int!) {
  viewer { accounts(first: $first) {
    totalCount
    edges { node {
      id number name creditBalance viewerPermissions
      linkGroups { kind head { number } members { friendlyName account { number } } }
      invoices(first: 10) { totalCount edges { node { number total { amount } lines { amount { amount } account { number } } } } }
      services { name monthlyPrice { amount } }
      tickets(first: 10) { edges { node { number messages { body } } } }
      creditLedger(first: 5) { edges { node { delta balanceAfter } } }
      contacts { name email }
    } }
  } }
}
"""
NODES = "query($ids: [ID!]!) { nodes(ids: $ids) { id ... on Invoice { number lines { amount { amount } } } } }"
START = datetime(2026, 3, 1, tzinfo=timezone.utc)


async def _owner_with_accounts(engine: AsyncEngine, count: int) -> str:
    """A new owner with ``count`` accounts, pairs of them linked in BILLING groups."""
    tag = uuid.uuid4().hex[:6]
    async with create_session_factory(engine)() as session:
        owner = User(email=f"dash-{tag}@example.com", name="Dash", password_hash="x")
        session.add(owner)
        await session.flush()
        accounts = [
            Account(number=f"ACC-D{tag}{i:03d}".upper(), name=f"Dash {tag} {i:03d}",
                    owner_id=owner.id, enrollment_token_hash="x", credit_balance=30)
            for i in range(count)
        ]
        session.add_all(accounts)
        await session.flush()
        linked = datetime.now(timezone.utc)  # after the invoices: each account paid its own
        for head, member in zip(accounts[0::2], accounts[1::2]):
            group = LinkGroup(kind=LinkKind.BILLING, name=f"Group {head.number}")
            session.add(group)
            await session.flush()
            session.add_all([
                LinkMember(group_id=group.id, kind=LinkKind.BILLING, account_id=head.id,
                           is_head=True, linked_at=linked, linked_via=LinkMethod.SAME_OWNER),
                LinkMember(group_id=group.id, kind=LinkKind.BILLING, account_id=member.id,
                           friendly_name="Branch", linked_at=linked,
                           linked_via=LinkMethod.SAME_OWNER),
                LinkPeriod(kind=LinkKind.BILLING, account_id=member.id, group_id=group.id,
                           head_account_id=head.id, valid_from=linked),
            ])
        for account in accounts:
            _children(session, account, tag)
        await session.flush()
        for account in accounts:
            for ticket in await _tickets(session, account, tag):
                session.add_all([
                    TicketMessage(ticket_id=ticket.id, author_name="Dash", body=f"m{n}",
                                  author_kind=AuthorKind.CUSTOMER)
                    for n in range(2)
                ])
            for invoice in await _invoices(session, account, tag):
                session.add_all([
                    InvoiceLine(invoice_id=invoice.id, account_id=account.id, description="Fee",
                                quantity=1, unit_price=100, amount=100,
                                account_number=account.number, account_name=account.name)
                    for _ in range(2)
                ])
        await session.commit()
    return await token_for_user(engine, owner.id)


def _children(session: Any, account: Account, tag: str) -> None:
    balance = 0
    for delta in (10, 10, 10):
        balance += delta
        session.add(CreditLedgerEntry(account_id=account.id, kind=LedgerEntryKind.PURCHASE,
                                      delta=delta, balance_after=balance))
    session.add_all([
        Service(account_id=account.id, name=f"Hosting {n}", kind="hosting", monthly_price=900)
        for n in range(2)
    ])
    session.add(Contact(account_id=account.id, name="Contact", email=f"c-{tag}@example.com"))


async def _tickets(session: Any, account: Account, tag: str) -> list[Ticket]:
    tickets = [
        Ticket(account_id=account.id, number=f"T{account.id}-{n}", subject="Help",
               department=Department.TECHNICAL, opened_by_name="Dash",
               opened_by_email=f"dash-{tag}@example.com")
        for n in range(2)
    ]
    session.add_all(tickets)
    await session.flush()
    return tickets


async def _invoices(session: Any, account: Account, tag: str) -> list[Invoice]:
    invoices = [
        Invoice(number=f"I{account.id}-{n}", payer_account_id=account.id,
                period_start=date(2026, 2, 1), period_end=date(2026, 2, 28),
                issued_at=START + timedelta(days=n), due_at=START + timedelta(days=n + 14),
                status=InvoiceStatus.PAID, currency="EUR", subtotal=200, tax=42, total=242,
                bill_to_name="Dash", bill_to_email=f"dash-{tag}@example.com",
                payer_number=account.number, payer_name=account.name, tax_rate_basis_points=2100,
                amount_paid=242, paid_at=START + timedelta(days=n + 1))
        for n in range(3)
    ]
    session.add_all(invoices)
    await session.flush()
    # Paid: amount_paid is the sum of the invoice's succeeded payments.
    session.add_all([
        Payment(invoice_id=invoice.id, kind=PaymentKind.OFFLINE, status=PaymentStatus.SUCCEEDED,
                amount=invoice.total, currency=invoice.currency, settled_at=invoice.paid_at)
        for invoice in invoices
    ])
    return invoices


@pytest.fixture(scope="module")
async def owners(engine: AsyncEngine) -> dict[int, str]:
    return {count: await _owner_with_accounts(engine, count) for count in (5, 50)}


async def _measure(gql: GraphQLClient, count_statements: Any, query: str, variables: dict[str, Any], token: str) -> tuple[int, dict[str, Any]]:
    with count_statements() as counter:
        result = await gql.execute(query, variables, token=token)
    assert "errors" not in result, result["errors"][:3]
    return counter.count, result


async def test_dashboard_statements_do_not_grow_with_accounts(
    gql: GraphQLClient, count_statements: Any, owners: dict[int, str]
) -> None:
    small, small_result = await _measure(gql, count_statements, DASHBOARD, {"first": 50}, owners[5])
    large, large_result = await _measure(gql, count_statements, DASHBOARD, {"first": 50}, owners[50])
    assert len(small_result["data"]["viewer"]["accounts"]["edges"]) == 5
    edges = large_result["data"]["viewer"]["accounts"]["edges"]
    assert len(edges) == 50
    node = edges[0]["node"]
    assert len(node["invoices"]["edges"]) == 3 and len(node["invoices"]["edges"][0]["node"]["lines"]) == 2
    assert len(node["tickets"]["edges"]) == 2 and len(node["tickets"]["edges"][0]["node"]["messages"]) == 2
    assert len(node["creditLedger"]["edges"]) == 3 and node["linkGroups"][0]["members"]
    print(f"dashboard: {small} statements for 5 accounts, {large} for 50")
    assert small == large
    # authentication 1 + one per list level (accounts, count, groups, members, heads/accounts,
    # invoices, invoice counts, lines, services, tickets, messages, ledger, contacts), plus the
    # caller's rights (2, and the rights version read again) on a user's first request after
    # any rights change (auth/access_cache.py).
    assert large <= 19
    again, _ = await _measure(gql, count_statements, DASHBOARD, {"first": 50}, owners[50])
    assert again == large - 3 <= 16


async def test_nodes_statements_do_not_grow_with_ids(
    gql: GraphQLClient, count_statements: Any, owners: dict[int, str]
) -> None:
    token = owners[50]
    listing = await gql.execute(
        "{ viewer { accounts(first: 50) { edges { node { invoices(first: 2) { edges { node { id } } } } } } } }",
        token=token,
    )
    ids = [
        invoice["node"]["id"]
        for account in listing["data"]["viewer"]["accounts"]["edges"]
        for invoice in account["node"]["invoices"]["edges"]
    ]
    assert len(ids) == 100
    few, few_result = await _measure(gql, count_statements, NODES, {"ids": ids[:10]}, token)
    many, many_result = await _measure(gql, count_statements, NODES, {"ids": ids}, token)
    assert [node["id"] for node in many_result["data"]["nodes"]] == ids
    assert all(node["lines"] for node in many_result["data"]["nodes"])
    assert len(few_result["data"]["nodes"]) == 10
    print(f"nodes: {few} statements for 10 ids, {many} for 100")
    assert few == many <= 6


PAGES_WITHOUT_CHILDREN = """
{ viewer { accounts(first: 50) { edges { node {
  invoices(first: 10) { edges { node { id number } } }
  tickets(first: 10) { edges { node { id number } } }
} } } } }
"""
PAGES_WITH_CHILDREN = """
{ viewer { accounts(first: 50) { edges { node {
  invoices(first: 10) { edges { node { id number lines { description amount { amount } } } } }
  tickets(first: 10) { edges { node { id number messages { body } } } }
} } } } }
"""
PAGES_WITH_CHILDREN_IN_FRAGMENTS = """
{ viewer { accounts(first: 50) { edges { node {
  invoices(first: 10) { ...InvoicePage }
  tickets(first: 10) { edges { ... on TicketEdge { node { id number ... on Ticket { messages { body } } } } } }
} } } } }
fragment InvoicePage on InvoiceConnection { edges { node { id number ...Lines } } }
fragment Lines on Invoice { lines { description amount { amount } } }
"""


async def test_children_load_with_their_page_only_when_the_query_selects_them(
    gql: GraphQLClient, count_statements: Any, owners: dict[int, str]
) -> None:
    """schema/prefetch.py: lines and messages come with their invoice and ticket pages (one
    statement each, as before), not when unselected, and through fragments too."""
    token = owners[50]
    without, _ = await _measure(gql, count_statements, PAGES_WITHOUT_CHILDREN, {}, token)
    with_children, plain = await _measure(gql, count_statements, PAGES_WITH_CHILDREN, {}, token)
    in_fragments, fragments = await _measure(
        gql, count_statements, PAGES_WITH_CHILDREN_IN_FRAGMENTS, {}, token
    )
    assert with_children == without + 2  # one for every page's lines, one for the messages
    assert in_fragments == with_children
    assert fragments == plain

    # The same invoices reached without a page (``nodes``) load their lines themselves.
    invoices = [
        invoice["node"]
        for account in plain["data"]["viewer"]["accounts"]["edges"]
        for invoice in account["node"]["invoices"]["edges"]
    ]
    assert len(invoices) == 150 and all(len(invoice["lines"]) == 2 for invoice in invoices)
    by_node = await gql.execute(
        "query($ids: [ID!]!) { nodes(ids: $ids) { id ... on Invoice { number "
        "lines { description amount { amount } } } } }",
        {"ids": [invoice["id"] for invoice in invoices[:100]]}, token=token,
    )
    assert by_node["data"]["nodes"] == invoices[:100]


GROUP_FIELDS = "id kind head { number creditBalance } members { friendlyName account { number creditBalance } }"


@pytest.mark.parametrize("persona", ["olivia", "bill", "dev"])
async def test_prefetched_link_groups_answer_as_groups_loaded_one_by_one(
    gql: GraphQLClient, tokens: dict[str, str], persona: str
) -> None:
    """``Account.linkGroups`` prefetches heads and member accounts (hidden ones as null);
    ``nodes`` loads each group's accounts through the fields' own resolvers."""
    token = tokens[persona]
    listing = await gql.execute(
        f"{{ viewer {{ accounts(first: 50) {{ edges {{ node {{ linkGroups {{ {GROUP_FIELDS} }} }} }} }} }} }}",
        token=token,
    )
    groups = {
        group["id"]: group
        for edge in listing["data"]["viewer"]["accounts"]["edges"]
        for group in edge["node"]["linkGroups"]
    }
    assert groups, f"{persona} sees a link group in the demo"
    one_by_one = await gql.execute(
        f"query($ids: [ID!]!) {{ nodes(ids: $ids) {{ ... on LinkGroup {{ {GROUP_FIELDS} }} }} }}",
        {"ids": list(groups)}, token=token,
    )
    assert one_by_one["data"]["nodes"] == list(groups.values())
