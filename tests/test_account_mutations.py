"""registerAccount and renameAccount over HTTP (issue 5 part 1)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.enrollment import enrollment_key, enrollment_token_matches
from models.accounts import Account
from models.database import create_session_factory
from tests.conftest import TEST_SECRET, GraphQLClient
from tests.customers import REGISTER, audit_actions, new_customer, new_sub_account

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
    from sqlalchemy import update

    from models.accounts import AccountStatus

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
