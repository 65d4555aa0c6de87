"""Fresh customers for tests that write: new users, accounts and sub-accounts over HTTP.

Every writing test makes its own, so the demo rows the read-only suites rely on stay as seeded.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from models.audit import AuditEvent
from models.database import create_session_factory
from models.notifications import Notification
from schema.relay import decode_global_id
from tests.conftest import GraphQLClient

PASSWORD = "correct horse battery"

SIGN_UP = """
mutation($input: SignUpInput!) { signUp(input: $input) { ok userErrors { field message code } } }
"""
CONFIRM_SIGN_UP = """
mutation($input: ConfirmSignUpInput!) {
  confirmSignUp(input: $input) {
    token expiresAt refreshToken enrollmentToken account { id number name }
    viewer { user { id email } } userErrors { field message code }
  }
}
"""
REGISTER = """
mutation($input: RegisterAccountInput!) {
  registerAccount(input: $input) {
    account { id number name viewerIsOwner viewerPermissions } enrollmentToken
    userErrors { field message code }
  }
}
"""
ADD_CONTACT = """
mutation($input: AddContactInput!) {
  addContact(input: $input) {
    contact { id name email phone isSupportContact emailPreferences address { line1 city country } }
    userErrors { field message code }
  }
}
"""
ACTIVATE = """
mutation($input: ActivateSubAccountInput!) {
  activateSubAccount(input: $input) {
    contact { id }
    invitation { id email permissions status expiresAt }
    userErrors { field message code }
  }
}
"""
ACCEPT_INVITATION = """
mutation($input: AcceptInvitationInput!) {
  acceptInvitation(input: $input) {
    token expiresAt refreshToken account { id number }
    viewer { user { id email name } } userErrors { field message code }
  }
}
"""
PERMISSIONS_ON = """
query($n: String!) { viewer { account(number: $n) { viewerPermissions } } }
"""


def unique_email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


@dataclass
class AccountRef:
    id: str
    number: str
    enrollment_token: str


@dataclass
class Customer:
    email: str
    token: str
    user_id: str
    account: AccountRef


async def emailed_token(engine: AsyncEngine, recipient: str, path: str) -> str | None:
    """The token of the newest link to ``path`` emailed to ``recipient`` (read from the outbox,
    where the delivery worker would pick it up); None if no such mail was queued."""
    async with create_session_factory(engine)() as session:
        bodies = (await session.scalars(
            select(Notification.body).where(Notification.recipient == recipient.lower())
            .order_by(Notification.id.desc())
        )).all()
    for body in bodies:
        found = re.search(rf"/{re.escape(path)}#token=([A-Za-z0-9_-]+)", body)
        if found:
            return found.group(1)
    return None


async def sign_up_and_confirm(gql: GraphQLClient, **fields: str) -> dict[str, Any]:
    """signUp, then confirmSignUp with the link it emailed; the confirmation's payload."""
    values = {"email": unique_email("owner"), "password": PASSWORD, "name": "Owen Owner",
              "accountName": "Test Holdings", **fields}
    result = await gql.execute(SIGN_UP, {"input": values})
    assert result["data"]["signUp"] == {"ok": True, "userErrors": []}, result
    token = await emailed_token(gql.engine, values["email"], "confirm-sign-up")
    assert token, f"no sign-up link was emailed to {values['email']}"
    confirmed = await gql.execute(CONFIRM_SIGN_UP, {"input": {"token": token, "password": values["password"]}})
    payload = confirmed["data"]["confirmSignUp"]
    assert payload["userErrors"] == [], payload
    return payload


async def new_customer(gql: GraphQLClient, account_name: str = "Test Holdings") -> Customer:
    email = unique_email("owner")
    payload = await sign_up_and_confirm(gql, email=email, accountName=account_name)
    account = payload["account"]
    return Customer(
        email=email, token=payload["token"], user_id=payload["viewer"]["user"]["id"],
        account=AccountRef(account["id"], account["number"], payload["enrollmentToken"]),
    )


async def register(gql: GraphQLClient, token: str, name: str = "Second Site") -> AccountRef:
    result = await gql.execute(REGISTER, {"input": {"name": name}}, token=token)
    payload = result["data"]["registerAccount"]
    assert payload["userErrors"] == [], payload
    return AccountRef(payload["account"]["id"], payload["account"]["number"], payload["enrollmentToken"])


async def add_contact(gql: GraphQLClient, token: str, account_id: str, **fields: Any) -> dict[str, Any]:
    values = {"accountId": account_id, "name": "Casey Contact", "email": unique_email("contact"),
              **fields}
    result = await gql.execute(ADD_CONTACT, {"input": values}, token=token)
    assert "errors" not in result, result
    return result["data"]["addContact"]


@dataclass
class SubAccount:
    email: str
    token: str
    user_id: str
    contact_id: str


async def new_sub_account(
    gql: GraphQLClient, owner_token: str, account_id: str, permissions: list[str]
) -> SubAccount:
    """A contact on the account, invited with ``permissions``, and the invitation accepted from
    the emailed link as a new login; signed in."""
    contact = (await add_contact(gql, owner_token, account_id))["contact"]
    result = await gql.execute(ACTIVATE, {"input": {
        "contactId": contact["id"], "permissions": permissions,
    }}, token=owner_token)
    payload = result["data"]["activateSubAccount"]
    assert payload["userErrors"] == [], payload
    link = await emailed_token(gql.engine, contact["email"], "accept-invitation")
    assert link, f"no invitation was emailed to {contact['email']}"
    accepted = await gql.execute(ACCEPT_INVITATION, {"input": {
        "token": link, "name": "Casey Contact", "password": PASSWORD,
    }})
    signed_in = accepted["data"]["acceptInvitation"]
    assert signed_in["userErrors"] == [] and signed_in["token"], accepted
    return SubAccount(contact["email"], signed_in["token"], signed_in["viewer"]["user"]["id"],
                      contact["id"])


async def permissions_on(gql: GraphQLClient, token: str, number: str) -> set[str] | None:
    """The viewer's effective permissions on an account; None when it cannot see it."""
    result = await gql.execute(PERMISSIONS_ON, {"n": number}, token=token)
    account = result["data"]["viewer"]["account"]
    return None if account is None else set(account["viewerPermissions"])


async def audit_actions(engine: AsyncEngine, account_number: str) -> list[str]:
    """Every audit action recorded on an account, oldest first (read straight from the table)."""
    from models.accounts import Account

    async with create_session_factory(engine)() as session:
        account_id = await session.scalar(select(Account.id).where(Account.number == account_number))
        rows = await session.scalars(
            select(AuditEvent.action).where(AuditEvent.account_id == account_id).order_by(AuditEvent.id)
        )
        return list(rows)


def pk(global_id: str) -> int:
    """The database id behind a GraphQL global id."""
    return decode_global_id(global_id)[1]


async def count_rows(engine: AsyncEngine, model: Any, *where: Any) -> int:
    async with create_session_factory(engine)() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)
