"""activateSubAccount (an emailed invitation, accepted by its recipient) and
setSubAccountPermissions over HTTP: no escalation, owner untouchable."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from models.accounts import Membership
from models.identity import Invitation
from models.users import User
from schema.relay import decode_global_id
from tests.conftest import GraphQLClient, client_for
from tests.customers import (
    ACCEPT_INVITATION, ACTIVATE, PASSWORD, add_contact, audit_actions, count_rows, emailed_token,
    new_customer, new_sub_account, permissions_on,
)

SET_PERMISSIONS = """
mutation($input: SetSubAccountPermissionsInput!) {
  setSubAccountPermissions(input: $input) {
    membership { isOwner permissions user { id email } }
    userErrors { field message code }
  }
}
"""
MEMBERS = """
query($n: String!) { viewer { account(number: $n) { members { isOwner permissions user { email } } } } }
"""
LOGIN = "mutation($input: LoginInput!) { login(input: $input) { token userErrors { code } } }"


def codes(payload: dict) -> list[str]:
    return [error["code"] for error in payload["userErrors"]]


async def activate(gql: GraphQLClient, token: str, contact_id: str, permissions: list[str]) -> dict:
    result = await gql.execute(ACTIVATE, {"input": {
        "contactId": contact_id, "permissions": permissions,
    }}, token=token)
    assert "errors" not in result, result
    return result["data"]["activateSubAccount"]


async def accept(gql: GraphQLClient, email: str, *, token: str | None = None,
                 password: str | None = PASSWORD, name: str = "Sam Sub") -> dict:
    """Accepts the newest invitation emailed to ``email`` (as its recipient would)."""
    link = await emailed_token(gql.engine, email, "accept-invitation")
    assert link, f"no invitation was emailed to {email}"
    result = await gql.execute(ACCEPT_INVITATION, {"input": {
        "token": link, "name": name, "password": password,
    }}, token=token)
    assert "errors" not in result, result
    return result["data"]["acceptInvitation"]


async def set_permissions(gql: GraphQLClient, token: str, account_id: str, user_id: str,
                          permissions: list[str]) -> dict:
    return await gql.execute(SET_PERMISSIONS, {"input": {
        "accountId": account_id, "userId": user_id, "permissions": permissions,
    }}, token=token)


async def test_activating_a_contact_creates_a_login_with_the_chosen_permissions(
    gql: GraphQLClient, engine: AsyncEngine
) -> None:
    owner = await new_customer(gql)
    contact = (await add_contact(gql, owner.token, owner.account.id, name="Sam Sub"))["contact"]
    payload = await activate(gql, owner.token, contact["id"], ["TICKETS_READ", "SERVICES_READ"])
    assert payload["userErrors"] == [] and payload["contact"] == {"id": contact["id"]}
    invitation = payload["invitation"]
    assert invitation["status"] == "PENDING" and invitation["email"] == contact["email"]
    assert invitation["permissions"] == ["SERVICES_READ", "TICKETS_READ"]
    # Nothing is granted until the invitee accepts.
    members = await gql.execute(MEMBERS, {"n": owner.account.number}, token=owner.token)
    assert len(members["data"]["viewer"]["account"]["members"]) == 1
    assert await count_rows(engine, User, User.email == contact["email"]) == 0

    accepted = await accept(gql, contact["email"])
    assert accepted["userErrors"] == [] and accepted["viewer"]["user"]["email"] == contact["email"]
    assert await permissions_on(gql, accepted["token"], owner.account.number) == {"SERVICES_READ", "TICKETS_READ"}
    token = await gql.login(contact["email"], PASSWORD)
    assert await permissions_on(gql, token, owner.account.number) == {"SERVICES_READ", "TICKETS_READ"}
    members = await gql.execute(MEMBERS, {"n": owner.account.number}, token=owner.token)
    rows = members["data"]["viewer"]["account"]["members"]
    assert [(m["isOwner"], m["user"]["email"]) for m in rows] == [(True, owner.email), (False, contact["email"])]
    assert rows[1]["permissions"] == ["SERVICES_READ", "TICKETS_READ"]
    assert "subaccount.activated" in await audit_actions(engine, owner.account.number)
    again = await activate(gql, owner.token, contact["id"], ["TICKETS_READ"])
    assert codes(again) == ["ALREADY_ACTIVATED"]


async def test_activating_attaches_an_existing_login_without_touching_its_password(
    gql: GraphQLClient, app: Any
) -> None:
    owner = await new_customer(gql)
    bookkeeper = await new_customer(gql, "Bookkeeping BV")
    contact = (await add_contact(gql, owner.token, owner.account.id, email=bookkeeper.email.upper()))["contact"]
    payload = await activate(gql, owner.token, contact["id"], ["INVOICES_READ"])
    assert payload["userErrors"] == [] and payload["invitation"]["status"] == "PENDING"
    # The invitation is accepted by the existing login, signed in; what it sends besides is ignored.
    accepted = await accept(gql, bookkeeper.email, token=bookkeeper.token, password="another password")
    assert accepted["userErrors"] == [] and accepted["viewer"]["user"]["id"] == bookkeeper.user_id
    # (From an address of its own: failed logins are throttled per client address too.)
    async with client_for(app, "198.51.100.23") as http:
        refused = await GraphQLClient(http).execute(
            LOGIN, {"input": {"email": bookkeeper.email, "password": "another password"}}
        )
    assert refused["data"]["login"]["token"] is None
    token = await gql.login(bookkeeper.email, PASSWORD)
    # One login, two accounts with different rights.
    assert await permissions_on(gql, token, owner.account.number) == {"INVOICES_READ"}
    assert "LINKS_MANAGE" in (await permissions_on(gql, token, bookkeeper.account.number) or set())


async def test_activating_takes_no_password(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    contact = (await add_contact(gql, owner.token, owner.account.id))["contact"]
    result = await gql.execute(ACTIVATE, {"input": {
        "contactId": contact["id"], "password": PASSWORD, "permissions": ["SERVICES_READ"],
    }}, token=owner.token)
    assert result["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT" and result.get("data") is None
    assert await count_rows(engine, Invitation, Invitation.email == contact["email"]) == 0
    assert await count_rows(engine, User, User.email == contact["email"]) == 0


async def test_a_new_login_needs_a_valid_password(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    contact = (await add_contact(gql, owner.token, owner.account.id))["contact"]
    assert (await activate(gql, owner.token, contact["id"], ["SERVICES_READ"]))["userErrors"] == []
    for password in (None, "short"):
        payload = await accept(gql, contact["email"], password=password)
        assert codes(payload) == ["PASSWORD_TOO_SHORT"] and payload["token"] is None
    assert await count_rows(engine, User, User.email == contact["email"]) == 0
    # The invitation is still good for a valid one.
    assert (await accept(gql, contact["email"]))["token"]


async def test_a_contacts_manager_grants_only_what_it_holds(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    account_pk = decode_global_id(owner.account.id)[1]
    manager = await new_sub_account(gql, owner.token, owner.account.id, ["CONTACTS_MANAGE", "SERVICES_READ"])
    contact = (await add_contact(gql, manager.token, owner.account.id))["contact"]
    memberships = await count_rows(engine, Membership, Membership.account_id == account_pk)
    invitations = await count_rows(engine, Invitation, Invitation.account_id == account_pk)

    escalation = await activate(gql, manager.token, contact["id"], ["SERVICES_READ", "INVOICES_READ"])
    assert codes(escalation) == ["PERMISSION_NOT_HELD"]
    assert "INVOICES_READ" in escalation["userErrors"][0]["message"]
    assert await count_rows(engine, Membership, Membership.account_id == account_pk) == memberships
    assert await count_rows(engine, Invitation, Invitation.account_id == account_pk) == invitations
    assert await count_rows(engine, User, User.email == contact["email"]) == 0

    granted = await activate(gql, manager.token, contact["id"], ["SERVICES_READ"])
    assert granted["userErrors"] == []
    user_id = (await accept(gql, contact["email"]))["viewer"]["user"]["id"]
    more = await set_permissions(gql, manager.token, owner.account.id, user_id, ["SERVICES_READ", "CREDITS_READ"])
    assert codes(more["data"]["setSubAccountPermissions"]) == ["PERMISSION_NOT_HELD"]

    # The owner gives it more; the manager can neither take away nor keep-and-add beyond itself.
    await set_permissions(gql, owner.token, owner.account.id, user_id, ["SERVICES_READ", "INVOICES_READ"])
    strip = await set_permissions(gql, manager.token, owner.account.id, user_id, ["SERVICES_READ"])
    assert codes(strip["data"]["setSubAccountPermissions"]) == ["PERMISSION_NOT_HELD"]
    # What it holds it may remove.
    keep = await set_permissions(gql, manager.token, owner.account.id, user_id, ["INVOICES_READ"])
    assert keep["data"]["setSubAccountPermissions"]["membership"]["permissions"] == ["INVOICES_READ"]


async def test_the_owner_cannot_be_restricted(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    denied = await set_permissions(gql, owner.token, owner.account.id, owner.user_id, ["SERVICES_READ"])
    assert codes(denied["data"]["setSubAccountPermissions"]) == ["OWNER_NOT_RESTRICTABLE"]
    contact = (await add_contact(gql, owner.token, owner.account.id, email=owner.email))["contact"]
    # (The owner's email is no secret to whoever manages contacts: ``members`` lists it.)
    as_sub = await activate(gql, owner.token, contact["id"], ["SERVICES_READ"])
    assert codes(as_sub) == ["OWNER_NOT_RESTRICTABLE"] and as_sub["invitation"] is None
    assert await emailed_token(engine, owner.email, "accept-invitation") is None
    assert "LINKS_MANAGE" in (await permissions_on(gql, owner.token, owner.account.number) or set())
    assert await count_rows(engine, Membership, Membership.user_id == decode_global_id(owner.user_id)[1]) == 0


async def test_set_permissions_applies_at_once_and_is_audited(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    sub = await new_sub_account(gql, owner.token, owner.account.id, ["SERVICES_READ"])
    result = await set_permissions(gql, owner.token, owner.account.id, sub.user_id,
                                   ["TICKETS_READ", "TICKETS_WRITE"])
    payload = result["data"]["setSubAccountPermissions"]
    assert payload["userErrors"] == [] and payload["membership"]["permissions"] == ["TICKETS_READ", "TICKETS_WRITE"]
    assert await permissions_on(gql, sub.token, owner.account.number) == {"TICKETS_READ", "TICKETS_WRITE"}
    assert (await audit_actions(engine, owner.account.number))[-1] == "subaccount.permissions_changed"
    # Not a member here: not found; a stranger: not found either.
    stranger = await new_customer(gql)
    missing = await set_permissions(gql, owner.token, owner.account.id, stranger.user_id, ["SERVICES_READ"])
    assert missing["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    hidden = await set_permissions(gql, stranger.token, owner.account.id, sub.user_id, [])
    assert hidden["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    denied = await set_permissions(gql, sub.token, owner.account.id, sub.user_id, ["TICKETS_READ"])
    assert denied["errors"][0]["extensions"]["permission"] == "CONTACTS_MANAGE"
    assert await permissions_on(gql, sub.token, owner.account.number) == {"TICKETS_READ", "TICKETS_WRITE"}
