"""registerAccount and renameAccount over HTTP (issue 5 part 1; registering with a link,
issue 16)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.enrollment import enrollment_key, enrollment_token_matches
from models.accounts import Account, AccountStatus
from models.audit import AuditEvent
from models.database import create_session_factory
from models.links import LinkGroup, LinkPeriod
from models.notifications import Notification
from models.users import User
from tests.conftest import TEST_SECRET, GraphQLClient
from tests.customers import (
    REGISTER, audit_actions, count_rows, new_customer, new_sub_account, pk, register,
)

RENAME = """
mutation($input: RenameAccountInput!) {
  renameAccount(input: $input) { account { id name } userErrors { field message code } }
}
"""
AUDIT = """
query($n: String!) { viewer { account(number: $n) {
  auditLog(first: 5) { edges { node { action before after actorIsStaff actor } } }
} } }
"""


async def account_row(engine: AsyncEngine, number: str) -> Account:
    async with create_session_factory(engine)() as session:
        row = await session.scalar(select(Account).where(Account.number == number))
        assert row is not None
        return row


async def test_register_account_gives_a_new_owned_account_and_its_token_once(
    gql: GraphQLClient, engine: AsyncEngine
) -> None:
    owner = await new_customer(gql)
    result = await gql.execute(REGISTER, {"input": {"name": "  Second   Shop "}}, token=owner.token)
    payload = result["data"]["registerAccount"]
    assert payload["userErrors"] == []
    account = payload["account"]
    assert account["name"] == "Second Shop" and account["viewerIsOwner"] is True
    assert "LINKS_MANAGE" in account["viewerPermissions"]  # the payload already sees it as owner
    row = await account_row(engine, account["number"])
    # Derived, not stored: the token is an HMAC of the account and its version.
    assert row.enrollment_token_hash is None
    assert enrollment_token_matches(payload["enrollmentToken"], key=enrollment_key(TEST_SECRET),
                                    account_id=row.id, version=row.enrollment_token_version)
    accounts = await gql.execute("{ viewer { accounts { totalCount } } }", token=owner.token)
    assert accounts["data"]["viewer"]["accounts"]["totalCount"] == 2
    assert await audit_actions(engine, account["number"]) == ["account.registered"]


async def test_register_account_checks_the_name_and_needs_a_login(gql: GraphQLClient) -> None:
    owner = await new_customer(gql)
    for name, code in (("   ", "NAME_EMPTY"), ("x" * 51, "NAME_TOO_LONG")):
        result = await gql.execute(REGISTER, {"input": {"name": name}}, token=owner.token)
        payload = result["data"]["registerAccount"]
        assert [e["code"] for e in payload["userErrors"]] == [code] and payload["account"] is None
    accounts = await gql.execute("{ viewer { accounts { totalCount } } }", token=owner.token)
    assert accounts["data"]["viewer"]["accounts"]["totalCount"] == 1
    anonymous = await gql.execute(REGISTER, {"input": {"name": "Nobody's"}})
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_rename_account_trims_audits_and_checks_length(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql, "Old Name")
    account_id = owner.account.id
    renamed = await gql.execute(RENAME, {"input": {"accountId": account_id, "name": "  New   Name "}},
                                token=owner.token)
    assert renamed["data"]["renameAccount"] == {
        "account": {"id": account_id, "name": "New Name"}, "userErrors": []
    }
    for name, code in (("", "NAME_EMPTY"), ("\t \n", "NAME_EMPTY"), ("y" * 51, "NAME_TOO_LONG")):
        result = await gql.execute(RENAME, {"input": {"accountId": account_id, "name": name}},
                                   token=owner.token)
        errors = result["data"]["renameAccount"]["userErrors"]
        assert [(e["code"], e["field"]) for e in errors] == [(code, ["name"])]
    assert (await account_row(engine, owner.account.number)).name == "New Name"
    # Exactly 50 characters is fine.
    fifty = "z" * 50
    ok = await gql.execute(RENAME, {"input": {"accountId": account_id, "name": fifty}}, token=owner.token)
    assert ok["data"]["renameAccount"]["account"]["name"] == fifty

    log = await gql.execute(AUDIT, {"n": owner.account.number}, token=owner.token)
    events = [edge["node"] for edge in log["data"]["viewer"]["account"]["auditLog"]["edges"]]
    assert [e["action"] for e in events] == ["account.renamed", "account.renamed"]
    assert events[1]["before"] == '{"name": "Old Name"}' and events[1]["after"] == '{"name": "New Name"}'
    assert events[0]["actor"] == "Owen Owner" and events[0]["actorIsStaff"] is False


async def test_rename_needs_profile_manage(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql, "Keep Me")
    reader = await new_sub_account(gql, owner.token, owner.account.id, ["SERVICES_READ"])
    manager = await new_sub_account(gql, owner.token, owner.account.id, ["PROFILE_MANAGE"])
    stranger = await new_customer(gql)
    variables = {"input": {"accountId": owner.account.id, "name": "Taken Over"}}
    denied = await gql.execute(RENAME, variables, token=reader.token)
    assert denied["errors"][0]["extensions"] == {"code": "FORBIDDEN", "permission": "PROFILE_MANAGE"}
    hidden = await gql.execute(RENAME, variables, token=stranger.token)
    assert hidden["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert (await account_row(engine, owner.account.number)).name == "Keep Me"
    allowed = await gql.execute(RENAME, variables, token=manager.token)
    assert allowed["data"]["renameAccount"]["account"]["name"] == "Taken Over"


async def test_a_wrong_kind_of_id_is_bad_input(gql: GraphQLClient) -> None:
    owner = await new_customer(gql)
    result = await gql.execute(RENAME, {"input": {"accountId": owner.user_id, "name": "X"}},
                               token=owner.token)
    assert result["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_closed_account_is_not_renamed_and_takes_no_new_tickets(
    gql: GraphQLClient, engine: AsyncEngine
) -> None:
    owner = await new_customer(gql, "Closing Down")
    async with create_session_factory(engine)() as session:
        await session.execute(update(Account).where(Account.number == owner.account.number)
                              .values(status=AccountStatus.CLOSED))
        await session.commit()
    renamed = await gql.execute(RENAME, {"input": {"accountId": owner.account.id, "name": "Reborn"}},
                                token=owner.token)
    assert [e["code"] for e in renamed["data"]["renameAccount"]["userErrors"]] == ["ACCOUNT_CLOSED"]
    assert (await account_row(engine, owner.account.number)).name == "Closing Down"
    ticket = await gql.execute(
        "mutation($input: OpenTicketInput!) { openTicket(input: $input) { ticket { id } userErrors { code } } }",
        {"input": {"accountId": owner.account.id, "subject": "Hello", "body": "Anyone?"}},
        token=owner.token,
    )
    assert ticket["data"]["openTicket"] == {"ticket": None, "userErrors": [{"code": "ACCOUNT_CLOSED"}]}


# --- registerAccount(input: {name, link}): registered and linked in one step (issue 16) -------

REGISTER_LINKED = """
mutation($input: RegisterAccountInput!) {
  registerAccount(input: $input) {
    account { id number name viewerIsOwner linkGroups { id kind head { number } } }
    enrollmentToken
    linkGroup { id kind name head { number } members { account { number } friendlyName linkedVia } }
    userErrors { field message code }
  }
}
"""


async def register_linked(
    gql: GraphQLClient, token: str, head_id: str, kind: str, name: str = "Sub Branch", **link: Any
) -> dict[str, Any]:
    result = await gql.execute(REGISTER_LINKED, {"input": {
        "name": name, "link": {"headAccountId": head_id, "kind": kind, **link}}}, token=token)
    if "errors" in result:
        return result
    return result["data"]["registerAccount"]


async def owned_accounts(engine: AsyncEngine, email: str) -> int:
    async with create_session_factory(engine)() as session:
        user_id = await session.scalar(select(User.id).where(User.email == email))
    return await count_rows(engine, Account, Account.owner_id == user_id)


@pytest.mark.parametrize("kind", ["MANAGEMENT", "BILLING"])
async def test_register_account_links_it_in_the_same_step(
    gql: GraphQLClient, engine: AsyncEngine, kind: str
) -> None:
    owner = await new_customer(gql, "Parent Office Ltd")
    payload = await register_linked(gql, owner.token, owner.account.id, kind,
                                    friendlyName="  Branch  ", groupName="Our group")
    assert payload["userErrors"] == [], payload
    account, group = payload["account"], payload["linkGroup"]
    assert account["viewerIsOwner"] is True and payload["enrollmentToken"]
    assert group["kind"] == kind and group["name"] == "Our group"
    assert group["head"]["number"] == owner.account.number
    assert group["members"] == [{"account": {"number": account["number"]}, "friendlyName": "Branch",
                                 "linkedVia": "SAME_OWNER"}]
    assert account["linkGroups"] == [{"id": group["id"], "kind": kind,
                                      "head": {"number": owner.account.number}}]
    # The member's link period is open from the link on: what decides who pays its charges.
    assert await count_rows(engine, LinkPeriod, LinkPeriod.account_id == pk(account["id"]),
                            LinkPeriod.valid_to.is_(None)) == 1
    assert await audit_actions(engine, account["number"]) == ["account.registered", "link.created"]
    assert await audit_actions(engine, owner.account.number) == ["link.created"]
    async with create_session_factory(engine)() as session:
        (mail,) = (await session.scalars(select(Notification).where(
            Notification.related_type == "link_group", Notification.recipient == owner.email))).all()
    assert mail.category == "GENERAL" and mail.account_id == pk(account["id"])
    assert account["number"] in mail.subject and "by its owner" in mail.body

    # A second one joins the same group.
    again = await register_linked(gql, owner.token, owner.account.id, kind, name="Second Branch")
    assert again["userErrors"] == [] and again["linkGroup"]["id"] == group["id"], again
    assert [m["friendlyName"] for m in again["linkGroup"]["members"]] == ["Branch", None]


async def test_a_sub_account_with_the_rights_on_the_head_registers_into_its_billing_group(
    gql: GraphQLClient, engine: AsyncEngine
) -> None:
    owner = await new_customer(gql, "Parent Office Ltd")
    buyer = await new_sub_account(gql, owner.token, owner.account.id, ["LINKS_MANAGE", "BILLING_MANAGE"])
    payload = await register_linked(gql, buyer.token, owner.account.id, "BILLING")
    assert payload["userErrors"] == [], payload
    assert payload["account"]["viewerIsOwner"] is True  # the new account is the caller's own
    assert payload["linkGroup"]["members"][0]["linkedVia"] == "SAME_OWNER"
    assert await owned_accounts(engine, buyer.email) == 1


async def test_register_account_with_a_link_it_may_not_make_creates_nothing(
    gql: GraphQLClient, engine: AsyncEngine
) -> None:
    owner = await new_customer(gql, "Parent Office Ltd")
    links_only = await new_sub_account(gql, owner.token, owner.account.id, ["LINKS_MANAGE"])
    billing_only = await new_sub_account(gql, owner.token, owner.account.id, ["BILLING_MANAGE", "INVOICES_READ"])
    stranger = await new_customer(gql)
    events, mails = await count_rows(engine, AuditEvent), await count_rows(engine, Notification)

    for caller, kind, code, permission in (
        (billing_only, "MANAGEMENT", "FORBIDDEN", "LINKS_MANAGE"),
        (billing_only, "BILLING", "FORBIDDEN", "LINKS_MANAGE"),
        (links_only, "BILLING", "FORBIDDEN", "BILLING_MANAGE"),
        (stranger, "MANAGEMENT", "NOT_FOUND", None),
    ):
        result = await register_linked(gql, caller.token, owner.account.id, kind)
        assert [e["extensions"]["code"] for e in result["errors"]] == [code], result
        assert result["errors"][0]["extensions"].get("permission") == permission
        assert result["data"] is None
    not_an_account = await register_linked(gql, owner.token, owner.user_id, "MANAGEMENT")
    assert not_an_account["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "link.headAccountId"}
    for caller in (links_only, billing_only, stranger):
        assert await owned_accounts(engine, caller.email) == (1 if caller is stranger else 0)
    assert await owned_accounts(engine, owner.email) == 1
    assert await count_rows(engine, AuditEvent) == events
    assert await count_rows(engine, Notification) == mails


async def test_register_account_with_a_link_that_breaks_an_invariant_creates_nothing(
    gql: GraphQLClient, engine: AsyncEngine
) -> None:
    owner = await new_customer(gql, "Parent Office Ltd")
    member = await register(gql, owner.token, "Sub Member")
    made = await register_linked(gql, owner.token, owner.account.id, "MANAGEMENT")
    assert made["userErrors"] == [], made
    member_of = await register_linked(gql, owner.token, member.id, "BILLING")  # a head elsewhere
    assert member_of["userErrors"] == [], member_of
    closed = await register(gql, owner.token, "Shut Co")
    async with create_session_factory(engine)() as session:
        await session.execute(update(Account).where(Account.number == closed.number)
                              .values(status=AccountStatus.CLOSED))
        await session.commit()
    accounts = await owned_accounts(engine, owner.email)
    events, mails = await count_rows(engine, AuditEvent), await count_rows(engine, Notification)
    groups = await count_rows(engine, LinkGroup)

    for head_id, kind, link, expected in (
        # The head is itself a member of a group of that kind: groups do not chain.
        (made["account"]["id"], "MANAGEMENT", {}, ("ALREADY_LINKED", ["link", "headAccountId"])),
        (owner.account.id, "MANAGEMENT", {"friendlyName": "x" * 101}, ("NAME_TOO_LONG", ["link", "friendlyName"])),
        (owner.account.id, "MANAGEMENT", {"friendlyName": "tab\tbell\a"}, ("TEXT_INVALID", ["link", "friendlyName"])),
        (owner.account.id, "BILLING", {"groupName": "g" * 101}, ("NAME_TOO_LONG", ["link", "groupName"])),
        (closed.id, "MANAGEMENT", {}, ("ACCOUNT_CLOSED", ["link", "headAccountId"])),
    ):
        payload = await register_linked(gql, owner.token, head_id, kind, **link)
        assert payload["account"] is None and payload["linkGroup"] is None, payload
        assert payload["enrollmentToken"] is None
        assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [expected]
    # An account name the link never got to: the name's error, plainly.
    bad_name = await register_linked(gql, owner.token, owner.account.id, "MANAGEMENT", name=" ")
    assert [(e["code"], e["field"]) for e in bad_name["userErrors"]] == [("NAME_EMPTY", ["name"])]
    assert await owned_accounts(engine, owner.email) == accounts
    assert await count_rows(engine, AuditEvent) == events
    assert await count_rows(engine, Notification) == mails
    assert await count_rows(engine, LinkGroup) == groups
