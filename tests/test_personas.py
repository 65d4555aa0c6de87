"""The issue's "Done when", over HTTP with the demo logins (DESIGN §3).

- bill (billing-only sub-account) sees invoices and credits, not tickets or services;
- dev ("web developer") sees tickets and services but no price, invoice or balance;
- eve (unrelated customer) reaches none of olivia's objects by any ID, and cannot tell an
  existing-but-invisible ID from one that never existed;
- staff: the SUPPORT agent sees technical data on every account, BILLING staff billing data;
- ``viewerPermissions`` is the policy's answer; ``members`` lists the owner first.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.permissions import ALL, Permission, parse_permissions, sorted_permissions
from auth.policy import GroupMembership, compute_effective
from linkgate.demo import BILL, CONTOSO, DEV, HEAD_OFFICE, LABS, LOGISTICS, OLIVIA, RETAIL
from models.accounts import Account, Membership
from models.database import create_session_factory
from models.links import LinkMember
from models.users import User
from schema.relay import decode_global_id, encode_global_id
from tests.conftest import GraphQLClient

NORTHWIND = [HEAD_OFFICE, RETAIL, LOGISTICS, LABS]
DEMO_ACCOUNTS = [*NORTHWIND, CONTOSO]

DASHBOARD = """
query($n: String!) { viewer { account(number: $n) {
  number
  creditBalance
  creditLedger { edges { node { id delta } } }
  lowCreditReminder { enabled threshold }
  invoices { edges { node { id number total { amount currency } } } }
  billingContact { name }
  services { id name monthlyPrice { amount currency } }
  tickets { edges { node { id subject messages { body } } } }
} } }
"""


def errors(result: dict[str, Any]) -> list[tuple[list[Any], str, str | None]]:
    return sorted(
        ((error["path"], error["extensions"]["code"], error["extensions"].get("permission"))
         for error in result.get("errors", [])),
        key=json.dumps,
    )


def edges(connection: dict[str, Any]) -> list[dict[str, Any]]:
    return [edge["node"] for edge in connection["edges"]]


async def dashboard(gql: GraphQLClient, token: str, number: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    result = await gql.execute(DASHBOARD, {"n": number}, token=token)
    return result["data"]["viewer"]["account"], result


def at(*path: Any) -> list[Any]:
    return ["viewer", "account", *path]


# --- bill: the billing family, nothing else ---------------------------------------------------


@pytest.mark.parametrize("number", [HEAD_OFFICE, RETAIL, LOGISTICS])
async def test_bill_sees_invoices_and_credits_but_not_tickets_or_services(
    gql: GraphQLClient, tokens: dict[str, str], number: str
) -> None:
    account, result = await dashboard(gql, tokens["bill"], number)
    owner, _ = await dashboard(gql, tokens["olivia"], number)
    assert account is not None and owner is not None
    assert account["creditBalance"] == owner["creditBalance"] is not None
    assert account["creditLedger"] == owner["creditLedger"] and edges(account["creditLedger"])
    assert account["lowCreditReminder"] == owner["lowCreditReminder"] is not None
    assert account["invoices"] == owner["invoices"]
    assert account["billingContact"] == owner["billingContact"]
    assert account["services"] is None and account["tickets"] is None
    assert errors(result) == [
        (at("services"), "FORBIDDEN", "SERVICES_READ"),
        (at("tickets"), "FORBIDDEN", "TICKETS_READ"),
    ]


async def test_bill_reads_the_head_office_invoices_and_balance(gql: GraphQLClient, tokens: dict[str, str]) -> None:
    account, _ = await dashboard(gql, tokens["bill"], HEAD_OFFICE)
    assert account is not None
    invoices = edges(account["invoices"])
    assert len(invoices) >= 3 and all(invoice["total"]["amount"] > 0 for invoice in invoices)
    assert account["billingContact"] == {"name": "Harriet Cole"}
    assert account["lowCreditReminder"]["enabled"] is True


@pytest.mark.parametrize("number", [LABS, CONTOSO])
async def test_bill_cannot_see_accounts_outside_the_billing_group(
    gql: GraphQLClient, tokens: dict[str, str], number: str
) -> None:
    account, result = await dashboard(gql, tokens["bill"], number)
    assert account is None and "errors" not in result


# --- dev: technical data, no prices --------------------------------------------------------


@pytest.mark.parametrize("number", [HEAD_OFFICE, LOGISTICS])
async def test_dev_sees_tickets_and_services_but_no_prices_invoices_or_balance(
    gql: GraphQLClient, tokens: dict[str, str], number: str
) -> None:
    account, result = await dashboard(gql, tokens["dev"], number)
    owner, _ = await dashboard(gql, tokens["olivia"], number)
    assert account is not None and owner is not None
    assert account["tickets"] == owner["tickets"]
    assert [(s["id"], s["name"]) for s in account["services"]] == [(s["id"], s["name"]) for s in owner["services"]]
    assert account["services"], "the demo gives every Northwind account services"
    assert all(service["monthlyPrice"] is None for service in account["services"])
    assert all(service["monthlyPrice"] is not None for service in owner["services"])
    for name in ("creditBalance", "creditLedger", "lowCreditReminder", "invoices", "billingContact"):
        assert account[name] is None, name
    assert errors(result) == sorted([
        (at("creditBalance"), "FORBIDDEN", "CREDITS_READ"),
        (at("creditLedger"), "FORBIDDEN", "CREDITS_READ"),
        (at("lowCreditReminder"), "FORBIDDEN", "CREDITS_READ"),
        (at("invoices"), "FORBIDDEN", "INVOICES_READ"),
        (at("billingContact"), "FORBIDDEN", "INVOICES_READ"),
        *((at("services", index, "monthlyPrice"), "FORBIDDEN", "INVOICES_READ")
          for index in range(len(account["services"]))),
    ], key=json.dumps)


async def test_dev_reads_every_head_office_ticket(gql: GraphQLClient, tokens: dict[str, str]) -> None:
    account, _ = await dashboard(gql, tokens["dev"], HEAD_OFFICE)
    assert account is not None
    tickets = edges(account["tickets"])
    assert len(tickets) >= 3, "opened by the owner, by a sub-account and by a contact"
    assert all(ticket["messages"] for ticket in tickets)


@pytest.mark.parametrize("number", [RETAIL, LABS, CONTOSO])
async def test_dev_cannot_see_accounts_outside_the_management_group(
    gql: GraphQLClient, tokens: dict[str, str], number: str
) -> None:
    account, result = await dashboard(gql, tokens["dev"], number)
    assert account is None and "errors" not in result


# --- staff ---------------------------------------------------------------------------------


@pytest.mark.parametrize("number", DEMO_ACCOUNTS)
async def test_support_agent_sees_technical_data_on_every_account_but_not_invoices(
    gql: GraphQLClient, tokens: dict[str, str], number: str
) -> None:
    account, result = await dashboard(gql, tokens["agent"], number)
    owner, _ = await dashboard(gql, tokens["eve" if number == CONTOSO else "olivia"], number)
    assert account is not None and owner is not None
    assert account["tickets"] == owner["tickets"]
    assert [s["id"] for s in account["services"]] == [s["id"] for s in owner["services"]]
    for name in ("creditBalance", "creditLedger", "lowCreditReminder", "invoices", "billingContact"):
        assert account[name] is None, name
    denied = {(tuple(path), code, perm) for path, code, perm in errors(result)}
    assert (tuple(at("invoices")), "FORBIDDEN", "INVOICES_READ") in denied
    assert (tuple(at("creditBalance")), "FORBIDDEN", "CREDITS_READ") in denied
    assert {perm for _, _, perm in denied} == {"INVOICES_READ", "CREDITS_READ"}


@pytest.mark.parametrize("number", DEMO_ACCOUNTS)
async def test_finance_sees_invoices_and_credits_on_every_account_but_not_tickets(
    gql: GraphQLClient, tokens: dict[str, str], number: str
) -> None:
    account, result = await dashboard(gql, tokens["finance"], number)
    owner, _ = await dashboard(gql, tokens["eve" if number == CONTOSO else "olivia"], number)
    assert account is not None and owner is not None
    for name in ("creditBalance", "creditLedger", "lowCreditReminder", "invoices", "billingContact"):
        assert account[name] == owner[name], name
    assert account["creditBalance"] is not None
    assert account["tickets"] is None and account["services"] is None
    assert errors(result) == [
        (at("services"), "FORBIDDEN", "SERVICES_READ"),
        (at("tickets"), "FORBIDDEN", "TICKETS_READ"),
    ]


async def test_staff_list_every_demo_account(gql: GraphQLClient, tokens: dict[str, str]) -> None:
    query = """query($after: String) { viewer { accounts(first: 100, after: $after) {
        edges { node { number } } pageInfo { hasNextPage endCursor } } } }"""
    for persona in ("agent", "finance"):
        # Every page: the suite's own accounts may sort before the demo's.
        numbers: set[str] = set()
        after = None
        while True:
            page = (await gql.execute(query, {"after": after}, token=tokens[persona]))["data"]["viewer"]["accounts"]
            numbers |= {node["number"] for node in edges(page)}
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        assert set(DEMO_ACCOUNTS) <= numbers, persona


async def test_staff_objects_by_id_follow_the_role(gql: GraphQLClient, tokens: dict[str, str]) -> None:
    owner, _ = await dashboard(gql, tokens["eve"], CONTOSO)
    assert owner is not None
    invoice = edges(owner["invoices"])[0]["id"]
    ticket = edges(owner["tickets"])[0]["id"]
    query = "query($ids: [ID!]!) { nodes(ids: $ids) { id } }"
    agent = await gql.execute(query, {"ids": [invoice, ticket]}, token=tokens["agent"])
    finance = await gql.execute(query, {"ids": [invoice, ticket]}, token=tokens["finance"])
    assert agent["data"]["nodes"] == [None, {"id": ticket}]
    assert errors(agent) == [(["nodes", 0], "FORBIDDEN", "INVOICES_READ")]
    assert finance["data"]["nodes"] == [{"id": invoice}, None]
    assert errors(finance) == [(["nodes", 1], "FORBIDDEN", "TICKETS_READ")]


# --- eve: nothing of olivia's, by any ID --------------------------------------------------

EVERYTHING = """
query($n: String!) { viewer { account(number: $n) {
  id
  linkGroups { id head { id } members { account { id } } }
  billingContact { id }
  contacts { id }
  services { id }
  invoices(first: 100) { pageInfo { hasNextPage } edges { node { id account { id } linkGroup { id } lines { account { id } } } } }
  tickets(first: 100) { pageInfo { hasNextPage } edges { node { id } } }
  creditLedger(first: 100) { pageInfo { hasNextPage } edges { node { id } } }
  notifications(first: 100) { pageInfo { hasNextPage } edges { node { id } } }
  auditLog(first: 100) { pageInfo { hasNextPage } edges { node { id } } }
} } }
"""


def _ids_in(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "id" and isinstance(inner, str):
                found.add(inner)
            elif key == "hasNextPage":
                assert inner is False, "the demo fits in one page; page on if it grows"
            else:
                found |= _ids_in(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= _ids_in(inner)
    return found


async def _olivias_ids(gql: GraphQLClient, token: str) -> set[str]:
    ids: set[str] = set()
    for number in NORTHWIND:
        result = await gql.execute(EVERYTHING, {"n": number}, token=token)
        assert "errors" not in result, result["errors"]
        ids |= _ids_in(result["data"])
    return ids


def _shape(error: dict[str, Any], global_id: str) -> str:
    """An error with the ID it names taken out: what must not differ between IDs."""
    return json.dumps({**error, "path": None, "locations": None,
                       "message": error["message"].replace(global_id, "<ID>")}, sort_keys=True)


@pytest.mark.parametrize("stranger", ["eve", "anonymous"])
async def test_a_stranger_cannot_reach_any_of_olivias_objects_by_any_id(
    gql: GraphQLClient, tokens: dict[str, str], stranger: str
) -> None:
    existing = sorted(await _olivias_ids(gql, tokens["olivia"]))
    types = {decode_global_id(global_id)[0] for global_id in existing}
    assert types >= {"Account", "Invoice", "Service", "Ticket", "CreditLedgerEntry", "Contact", "LinkGroup",
                     "Notification", "AuditEvent"}
    never = [encode_global_id(type_name, 10**15 + offset) for offset, type_name in enumerate(sorted(types))]
    shapes: dict[str, set[str]] = {"existing": set(), "never": set()}

    for kind, ids in (("existing", existing), ("never", never)):
        for start in range(0, len(ids), 100):
            chunk = ids[start:start + 100]
            result = await gql.execute("query($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": chunk},
                                       token=tokens.get(stranger))
            assert result["data"]["nodes"] == [None] * len(chunk)
            assert sorted(tuple(error["path"]) for error in result["errors"]) == sorted(
                ("nodes", index) for index in range(len(chunk)))
            for error in result["errors"]:
                assert error["extensions"] == {"code": "NOT_FOUND"}
                shapes[kind].add(_shape(error, chunk[error["path"][1]]))
        for start in range(0, len(ids), 25):
            chunk = ids[start:start + 25]  # aliases are limited per request
            variables = ", ".join(f"$id{i}: ID!" for i in range(len(chunk)))
            fields = " ".join(f"n{i}: node(id: $id{i}) {{ id __typename }}" for i in range(len(chunk)))
            result = await gql.execute(f"query({variables}) {{ {fields} }}",
                                       {f"id{i}": global_id for i, global_id in enumerate(chunk)},
                                       token=tokens.get(stranger))
            assert result["data"] == {f"n{i}": None for i in range(len(chunk))}
            assert len(result["errors"]) == len(chunk)
            for error in result["errors"]:
                assert error["extensions"] == {"code": "NOT_FOUND"}
                shapes[kind].add(_shape(error, chunk[int(error["path"][0][1:])]))
    assert len(shapes["existing"]) == 1, shapes["existing"]
    assert shapes["existing"] == shapes["never"]


async def test_eve_cannot_find_olivias_accounts_by_number_or_search(gql: GraphQLClient, tokens: dict[str, str]) -> None:
    for number in NORTHWIND:
        result = await gql.execute("query($n: String!) { viewer { account(number: $n) { id } } }",
                                   {"n": number}, token=tokens["eve"])
        assert result == {"data": {"viewer": {"account": None}}}
    result = await gql.execute(
        '{ viewer { all: accounts(first: 100) { totalCount edges { node { number } } } '
        'search: accounts(search: "northwind") { totalCount } } }', token=tokens["eve"])
    assert [node["number"] for node in edges(result["data"]["viewer"]["all"])] == [CONTOSO]
    assert result["data"]["viewer"]["all"]["totalCount"] == 1
    assert result["data"]["viewer"]["search"]["totalCount"] == 0


# --- viewerPermissions and members ----------------------------------------------------------


async def _policy_answer(engine: AsyncEngine, email: str) -> dict[str, frozenset[Permission]]:
    """compute_effective over the rows as stored: the user's memberships and owned accounts,
    and every link group."""
    async with create_session_factory(engine)() as session:
        user_id = await session.scalar(select(User.id).where(User.email == email))
        numbers = dict((await session.execute(select(Account.id, Account.number))).all())
        direct = {row.account_id: parse_permissions(row.permissions)
                  for row in await session.scalars(select(Membership).where(Membership.user_id == user_id))}
        direct |= {account_id: ALL for account_id in await session.scalars(
            select(Account.id).where(Account.owner_id == user_id))}
        rows = (await session.scalars(select(LinkMember))).all()
    heads = {row.group_id: row.account_id for row in rows if row.is_head}
    links = [GroupMembership(row.kind, heads[row.group_id], row.account_id) for row in rows if not row.is_head]
    effective = compute_effective(direct, links)
    return {numbers[account_id]: perms for account_id, perms in effective.items()}


@pytest.mark.parametrize(("persona", "email"), [("bill", BILL), ("dev", DEV), ("olivia", OLIVIA)])
async def test_viewer_permissions_are_the_policys_answer(
    gql: GraphQLClient, tokens: dict[str, str], engine: AsyncEngine, persona: str, email: str
) -> None:
    expected = await _policy_answer(engine, email)
    query = "query($n: String!) { viewer { account(number: $n) { viewerPermissions viewerIsOwner } } }"
    for number in DEMO_ACCOUNTS:
        result = await gql.execute(query, {"n": number}, token=tokens[persona])
        account = result["data"]["viewer"]["account"]
        if number not in expected:
            assert account is None, (persona, number)
            continue
        assert account == {
            "viewerPermissions": [p.value for p in sorted_permissions(expected[number])],
            "viewerIsOwner": persona == "olivia",
        }, (persona, number)
    if persona != "olivia":
        assert set(expected) & set(DEMO_ACCOUNTS) and not set(expected) >= set(DEMO_ACCOUNTS)


MEMBERS = """query($n: String!) { viewer { account(number: $n) {
  members { isOwner permissions user { email } account { number } }
} } }"""


@pytest.mark.parametrize("number", NORTHWIND)
async def test_members_list_the_owner_first_then_the_sub_accounts(
    gql: GraphQLClient, tokens: dict[str, str], engine: AsyncEngine, number: str
) -> None:
    result = await gql.execute(MEMBERS, {"n": number}, token=tokens["olivia"])
    assert "errors" not in result
    members = result["data"]["viewer"]["account"]["members"]
    assert members[0] == {"isOwner": True, "permissions": [p.value for p in Permission],
                          "user": {"email": OLIVIA}, "account": {"number": number}}
    async with create_session_factory(engine)() as session:
        stored = (await session.execute(
            select(User.email, Membership.permissions).join(Membership, Membership.user_id == User.id)
            .join(Account, Account.id == Membership.account_id).where(Account.number == number)
            .order_by(Membership.id))).all()
    assert members[1:] == [
        {"isOwner": False, "permissions": [p.value for p in sorted_permissions(parse_permissions(perms))],
         "user": {"email": email}, "account": {"number": number}}
        for email, perms in stored
    ]
    if number == HEAD_OFFICE:
        by_email = {member["user"]["email"]: member["permissions"] for member in members[1:]}
        assert by_email[BILL] == ["INVOICES_READ", "CREDITS_READ", "CREDITS_PURCHASE", "CREDITS_TRANSFER",
                                  "BILLING_MANAGE", "INVOICES_PAY"]
        assert by_email[DEV] == ["SERVICES_READ", "TICKETS_READ", "TICKETS_WRITE"]


@pytest.mark.parametrize("persona", ["bill", "dev", "agent", "finance"])
async def test_members_are_forbidden_without_contacts_manage(
    gql: GraphQLClient, tokens: dict[str, str], persona: str
) -> None:
    result = await gql.execute(MEMBERS, {"n": HEAD_OFFICE}, token=tokens[persona])
    assert result["data"]["viewer"]["account"] == {"members": None}
    assert errors(result) == [(at("members"), "FORBIDDEN", "CONTACTS_MANAGE")]
