"""``Viewer.invoices``: every invoice the viewer may read, all accounts together (issue 13 part 6).

What a persona sees is checked against the per-account lists it already had (the union of
``Account.invoices`` over the accounts where it holds INVOICES_READ): the one-screen list must
show exactly those, newest first, and cost the same statements for 2 invoices as for 20.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.permissions import Permission
from auth.policy import AccessMap
from models import Account, Invoice, InvoiceLine, InvoiceStatus
from models.database import StatementCounter, create_session_factory
from resolvers.invoices import InvoiceFilter as InvoiceFilterValues
from resolvers.invoices import list_invoices
from schema.relay import decode_global_id, encode_global_id
from tests.billing_world import grant, link_billing, new_user, seeded_customer
from tests.conftest import GraphQLClient, refused_at_the_edge
from tests.customers import new_customer, new_sub_account, pk

VIEWER_INVOICES = """
query($first: Int, $after: String, $filter: InvoiceFilter) {
  viewer { invoices(first: $first, after: $after, filter: $filter) {
    edges { cursor node { id number status issuedAt account { id number } } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  } }
}"""
TOTAL = """
query($filter: InvoiceFilter) { viewer { invoices(filter: $filter) { totalCount } } }
"""
ACCOUNTS = """
query($after: String) {
  viewer { accounts(first: 50, after: $after) {
    edges { node { id number viewerPermissions } }
    pageInfo { hasNextPage endCursor }
  } }
}"""
ACCOUNT_INVOICES = """
query($number: String!, $after: String) {
  viewer { account(number: $number) { invoices(first: 100, after: $after) {
    edges { node { id number status issuedAt account { id number } } }
    pageInfo { hasNextPage endCursor }
  } } }
}"""
WITH_LINES = """
query { viewer { invoices(first: 100) {
  edges { node { number total { amount } lines { description amount { amount } account { number } } } }
} } }"""
WITH_LINES_AND_COUNT = """
query { viewer { invoices(first: 100) {
  totalCount edges { node { number lines { amount { amount } } } }
} } }
"""
SET_PERMISSIONS = """
mutation($input: SetSubAccountPermissionsInput!) {
  setSubAccountPermissions(input: $input) { userErrors { code } }
}"""

CUSTOMERS = ["olivia", "bill", "dev", "eve"]
PERSONAS = [*CUSTOMERS, "agent", "finance"]


def _newest_first(node: dict[str, Any]) -> tuple[datetime, int]:
    return datetime.fromisoformat(node["issuedAt"]), decode_global_id(node["id"])[1]


async def walk(
    gql: GraphQLClient, token: str, *, first: int = 100, filter: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Every node of ``viewer.invoices``, page after page, checking the page info on the way."""
    nodes: list[dict[str, Any]] = []
    after = None
    while True:
        result = await gql.execute(
            VIEWER_INVOICES, {"first": first, "after": after, "filter": filter}, token=token
        )
        assert "errors" not in result, result
        connection = result["data"]["viewer"]["invoices"]
        edges, info = connection["edges"], connection["pageInfo"]
        assert len(edges) <= first
        assert info["hasPreviousPage"] is (after is not None)
        if edges:
            assert (info["startCursor"], info["endCursor"]) == (edges[0]["cursor"], edges[-1]["cursor"])
        nodes += [edge["node"] for edge in edges]
        if not info["hasNextPage"]:
            return nodes
        assert len(edges) == first
        after = info["endCursor"]


async def union_of_account_lists(gql: GraphQLClient, token: str) -> list[dict[str, Any]]:
    """What the viewer saw before: ``Account.invoices`` on every account where it holds
    INVOICES_READ, put together and sorted newest first."""
    numbers: list[str] = []
    after = None
    while True:
        result = await gql.execute(ACCOUNTS, {"after": after}, token=token)
        accounts = result["data"]["viewer"]["accounts"]
        numbers += [edge["node"]["number"] for edge in accounts["edges"]
                    if "INVOICES_READ" in edge["node"]["viewerPermissions"]]
        if not accounts["pageInfo"]["hasNextPage"]:
            break
        after = accounts["pageInfo"]["endCursor"]
    nodes: list[dict[str, Any]] = []
    for number in numbers:
        after = None
        while True:
            result = await gql.execute(ACCOUNT_INVOICES, {"number": number, "after": after}, token=token)
            assert "errors" not in result, result
            invoices = result["data"]["viewer"]["account"]["invoices"]
            nodes += [edge["node"] for edge in invoices["edges"]]
            if not invoices["pageInfo"]["hasNextPage"]:
                break
            after = invoices["pageInfo"]["endCursor"]
    return sorted(nodes, key=_newest_first, reverse=True)


async def add_invoices(
    engine: AsyncEngine, account_id: int, count: int, *, start: datetime | None = None,
    status: InvoiceStatus = InvoiceStatus.UNPAID,
) -> list[str]:
    """``count`` invoices paid by ``account_id``, an hour apart, with one or two lines each;
    their numbers, oldest first."""
    tag = uuid.uuid4().hex[:10].upper()
    start = start or datetime(2025, 3, 1, tzinfo=timezone.utc)
    async with create_session_factory(engine)() as session:
        account = await session.get(Account, account_id)
        assert account is not None
        invoices = [
            Invoice(
                number=f"INV-V{tag}-{index:03d}", payer_account_id=account_id,
                period_start=date(2025, 2, 1), period_end=date(2025, 2, 28),
                issued_at=start + timedelta(hours=index), due_at=start + timedelta(days=14),
                status=status, currency="EUR", subtotal=1000, tax=210, total=1210,
                bill_to_name="Viewer invoices", bill_to_email="ap@viewer-invoices.example",
                payer_number=account.number, payer_name=account.name,
            )
            for index in range(count)
        ]
        session.add_all(invoices)
        await session.flush()
        session.add_all([
            InvoiceLine(invoice_id=invoice.id, account_id=account_id, description=f"Line {line}",
                        quantity=1, unit_price=500 + line, amount=500 + line,
                        account_number=account.number, account_name=account.name)
            for index, invoice in enumerate(invoices)
            for line in range(1 + index % 2)
        ])
        await session.commit()
        return [invoice.number for invoice in invoices]


# --- who sees what ---------------------------------------------------------------------------


@pytest.mark.parametrize("persona", PERSONAS)
async def test_each_persona_sees_exactly_the_invoices_it_may_read(
    gql: GraphQLClient, tokens: dict[str, str], persona: str
) -> None:
    seen = await walk(gql, tokens[persona])
    assert seen == await union_of_account_lists(gql, tokens[persona])
    assert seen == sorted(seen, key=_newest_first, reverse=True)
    assert len({node["id"] for node in seen}) == len(seen)
    payers = {node["account"]["number"] for node in seen}
    if persona in ("dev", "agent"):  # no billing rights anywhere: an empty list, no error
        assert seen == []
    elif persona == "olivia":
        assert payers == {"ACC-100001", "ACC-100004"}  # the head office (consolidated) and Labs
    elif persona == "bill":  # the head office's billing rights reach its BILLING group, not Labs
        assert payers == {"ACC-100001"}
    elif persona == "eve":
        assert payers == {"ACC-200001"}
    else:  # staff BILLING: every account's
        assert payers >= {"ACC-100001", "ACC-100004", "ACC-200001"}


async def test_a_billing_group_member_s_own_invoices_reach_the_head_s_sub_account(
    gql: GraphQLClient, engine: AsyncEngine
) -> None:
    """Rights that flow through a BILLING link count as rights held on the member."""
    customer = await seeded_customer(engine, accounts=3)
    head, member, outside = customer.account_ids
    await link_billing(engine, head, [member])
    clerk_id, _, clerk = await new_user(engine)
    await grant(engine, clerk_id, head, ["INVOICES_READ"])
    expected = [*await add_invoices(engine, head, 1), *await add_invoices(engine, member, 2)]
    await add_invoices(engine, outside, 2)
    seen = await walk(gql, clerk)
    assert sorted(node["number"] for node in seen) == sorted(expected)
    assert seen == await union_of_account_lists(gql, clerk)
    owner_sees = {node["number"] for node in await walk(gql, customer.token)}
    assert len(owner_sees) == 5 and set(expected) < owner_sees


async def test_an_anonymous_caller_has_no_viewer(gql: GraphQLClient) -> None:
    result = await gql.execute(VIEWER_INVOICES, {"first": 5})
    assert result["data"]["viewer"] is None


# --- pages -----------------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["olivia", "finance"])
async def test_pages_of_two_walk_every_invoice_exactly_once(
    gql: GraphQLClient, tokens: dict[str, str], persona: str
) -> None:
    everything = await walk(gql, tokens[persona])
    assert len(everything) > 2
    assert await walk(gql, tokens[persona], first=2) == everything
    total = await gql.execute(TOTAL, token=tokens[persona])
    assert total["data"]["viewer"]["invoices"]["totalCount"] == len(everything)


async def test_same_instant_invoices_are_ordered_by_id_and_none_is_skipped(
    gql: GraphQLClient, engine: AsyncEngine
) -> None:
    """Keyset pages on (issuedAt, id): invoices issued at the same instant on two accounts
    still come once each, across page boundaries."""
    customer = await seeded_customer(engine, accounts=2)
    instant = datetime(2025, 6, 1, tzinfo=timezone.utc)
    for account_id in customer.account_ids:
        numbers = await add_invoices(engine, account_id, 3)
        async with create_session_factory(engine)() as session:
            same = await session.scalars(select(Invoice).where(Invoice.number.in_(numbers)))
            for invoice in same.all():
                invoice.issued_at = instant
            await session.commit()
    by_twos = await walk(gql, customer.token, first=2)
    assert len(by_twos) == 6 and len({node["id"] for node in by_twos}) == 6
    ids = [decode_global_id(node["id"])[1] for node in by_twos]
    assert ids == sorted(ids, reverse=True)


async def test_bad_page_arguments_are_bad_input(gql: GraphQLClient, tokens: dict[str, str]) -> None:
    for variables, field in (({"first": 0}, "first"), ({"first": 101}, "first"),
                             ({"first": 5, "after": "not-a-cursor"}, "after")):
        result = await gql.execute(VIEWER_INVOICES, variables, token=tokens["olivia"])
        error = result["errors"][0]
        assert error["extensions"]["code"] == "BAD_USER_INPUT" and error["extensions"]["field"] == field


# --- filters ---------------------------------------------------------------------------------


async def test_filters_narrow_the_list_as_on_one_account(
    gql: GraphQLClient, tokens: dict[str, str]
) -> None:
    token = tokens["olivia"]
    everything = await walk(gql, token)
    statuses = {node["status"] for node in everything}
    assert {"PAID", "UNPAID"} <= statuses
    for status in statuses:
        assert await walk(gql, token, filter={"status": status}) == [
            node for node in everything if node["status"] == status]
    number = everything[-1]["number"]
    assert await walk(gql, token, filter={"number": number[-8:].lower()}) == [everything[-1]]
    middle = datetime.fromisoformat(everything[len(everything) // 2]["issuedAt"])
    newer = await walk(gql, token, filter={"issuedFrom": middle.isoformat()})
    older = await walk(gql, token, filter={"issuedTo": middle.isoformat()})
    assert newer == [node for node in everything if datetime.fromisoformat(node["issuedAt"]) >= middle]
    assert older == [node for node in everything if datetime.fromisoformat(node["issuedAt"]) < middle]
    assert newer + older == everything
    both = await walk(gql, token, filter={"status": "PAID", "issuedFrom": middle.isoformat()}, first=2)
    assert both == [node for node in newer if node["status"] == "PAID"]
    total = await gql.execute(TOTAL, {"filter": {"status": "UNPAID"}}, token=token)
    assert total["data"]["viewer"]["invoices"]["totalCount"] == sum(
        node["status"] == "UNPAID" for node in everything)


async def test_the_account_filter_keeps_the_named_payers_the_viewer_may_read(
    gql: GraphQLClient, tokens: dict[str, str]
) -> None:
    everything = await walk(gql, tokens["olivia"])
    payer_ids = {node["account"]["number"]: node["account"]["id"] for node in everything}
    head, labs = payer_ids["ACC-100001"], payer_ids["ACC-100004"]
    only_labs = await walk(gql, tokens["olivia"], filter={"accountIds": [labs]}, first=2)
    assert only_labs and only_labs == [node for node in everything if node["account"]["id"] == labs]
    assert await walk(gql, tokens["olivia"], filter={"accountIds": [labs, head]}) == everything
    assert await walk(gql, tokens["olivia"], filter={"accountIds": []}) == []
    # An account whose invoices you may not read adds none, with no error: not Labs for bill,
    # not Contoso (invisible) for olivia, nothing for dev.
    assert await walk(gql, tokens["bill"], filter={"accountIds": [labs]}) == []
    contoso = (await walk(gql, tokens["eve"]))[0]["account"]["id"]
    assert await walk(gql, tokens["olivia"], filter={"accountIds": [contoso, labs]}) == only_labs
    assert await walk(gql, tokens["dev"], filter={"accountIds": [head]}) == []
    # Staff name any account.
    staff_sees = await walk(gql, tokens["finance"], filter={"accountIds": [contoso]})
    assert staff_sees == await walk(gql, tokens["eve"])
    # A retail account pays none: its charges are on the head office's consolidated invoices.
    retail = encode_global_id("Account", await _account_pk("ACC-100002", gql))
    assert await walk(gql, tokens["olivia"], filter={"accountIds": [retail]}) == []


async def _account_pk(number: str, gql: GraphQLClient) -> int:
    async with create_session_factory(gql.engine)() as session:
        account_id = await session.scalar(select(Account.id).where(Account.number == number))
    assert account_id is not None
    return int(account_id)


async def test_bad_account_filters_are_bad_input(gql: GraphQLClient, tokens: dict[str, str]) -> None:
    invoice = (await walk(gql, tokens["olivia"]))[0]
    # A string that is no ID at all and the ID of another type are both named by their field.
    cases = [(["nope"], "accountIds"), ([invoice["id"]], "accountIds")]
    for ids, field in cases:
        result = await gql.execute(VIEWER_INVOICES, {"first": 5, "filter": {"accountIds": ids}},
                                   token=tokens["olivia"])
        assert result["data"] == {"viewer": None}  # `invoices` is non-null: the error reaches it
        error = result["errors"][0]
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": field}, error
    # Like every list a request carries, it is bounded before anything runs.
    too_many = {"accountIds": [invoice["account"]["id"]] * 1001}
    response = await gql.post(VIEWER_INVOICES, {"filter": too_many}, token=tokens["olivia"])
    refused_at_the_edge(response, "variables.filter.accountIds")


async def test_account_invoices_refuses_the_account_filter(
    gql: GraphQLClient, tokens: dict[str, str]
) -> None:
    """On one account's list the filter has no meaning: a clear error, not a silent no-op."""
    head = (await walk(gql, tokens["olivia"]))[0]["account"]
    query = """query($n: String!, $f: InvoiceFilter) {
      viewer { account(number: $n) { invoices(filter: $f) { edges { node { id } } } } } }"""
    result = await gql.execute(query, {"n": head["number"], "f": {"accountIds": [head["id"]]}},
                               token=tokens["olivia"])
    assert result["data"]["viewer"]["account"]["invoices"] is None
    error = result["errors"][0]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "accountIds"}
    assert "Viewer.invoices" in error["message"]


# --- permissions change ----------------------------------------------------------------------


async def test_a_revoked_permission_hides_them_at_the_next_request(
    gql: GraphQLClient, engine: AsyncEngine
) -> None:
    owner = await new_customer(gql)
    numbers = await add_invoices(engine, pk(owner.account.id), 3)
    clerk = await new_sub_account(gql, owner.token, owner.account.id, ["INVOICES_READ", "SERVICES_READ"])
    assert [node["number"] for node in await walk(gql, clerk.token)] == numbers[::-1]
    result = await gql.execute(SET_PERMISSIONS, {"input": {
        "accountId": owner.account.id, "userId": clerk.user_id, "permissions": ["SERVICES_READ"],
    }}, token=owner.token)
    assert result["data"]["setSubAccountPermissions"]["userErrors"] == []
    assert await walk(gql, clerk.token) == []
    assert [node["number"] for node in await walk(gql, owner.token)] == numbers[::-1]


# --- cost --------------------------------------------------------------------------------------


async def _statements(
    gql: GraphQLClient, engine: AsyncEngine, query: str, token: str
) -> tuple[int, int]:
    """(statements issued, invoices returned) for one request that succeeded."""
    with StatementCounter(engine) as counter:
        result = await gql.execute(query, token=token)
    assert "errors" not in result, result
    edges = result["data"]["viewer"]["invoices"]["edges"]
    assert all(edge["node"]["lines"] for edge in edges)
    return counter.count, len(edges)


async def test_a_page_costs_the_same_statements_for_2_invoices_as_for_20(
    gql: GraphQLClient, engine: AsyncEngine
) -> None:
    """And for 2 accounts as for 10: the lines come with the page, the permission is the WHERE."""
    small = await seeded_customer(engine, accounts=2)
    large = await seeded_customer(engine, accounts=10)
    for account_id in small.account_ids:
        await add_invoices(engine, account_id, 1)
    for account_id in large.account_ids:
        await add_invoices(engine, account_id, 2)
    for token in (small.token, large.token):  # each caller's rights read once (auth/access_cache.py)
        await gql.execute(WITH_LINES, token=token)
    for query, extra in ((WITH_LINES, 0), (WITH_LINES_AND_COUNT, 1)):
        few, few_rows = await _statements(gql, engine, query, small.token)
        many, many_rows = await _statements(gql, engine, query, large.token)
        assert (few_rows, many_rows) == (2, 20)
        assert few == many
        # authenticate, the invoice page, the lines, the lines' accounts (+ the count).
        assert many <= 4 + extra


async def test_very_many_readable_accounts_are_still_one_statement(engine: AsyncEngine) -> None:
    """40,000 accounts with INVOICES_READ (more than either database takes as separate
    parameters): one statement per page, the ids bound as one value."""
    customer = await seeded_customer(engine, accounts=2)
    first, second = customer.account_ids
    numbers = [*await add_invoices(engine, first, 2), *await add_invoices(engine, second, 1)]
    absent = range(10**12, 10**12 + 40_000)  # no such accounts
    readable = frozenset({Permission.INVOICES_READ})
    access = AccessMap({**{account_id: readable for account_id in absent}, first: readable,
                        second: readable})
    async with create_session_factory(engine)() as session:
        with StatementCounter(engine) as counter:
            page = await list_invoices(session, access, first=10, after=None)
            assert len(counter.statements) == 1
            assert len(counter.statements[0][1]) < 10  # parameters: not one per account
        assert sorted(row.number for row in page.rows) == sorted(numbers)
        assert await page.count() == 3
        filtered = await list_invoices(session, access, first=10, after=None, payers=frozenset({second}),
                                       filter=InvoiceFilterValues(status=InvoiceStatus.UNPAID))
        assert [row.number for row in filtered.rows] == numbers[2:]
