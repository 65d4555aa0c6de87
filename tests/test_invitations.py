"""Invitations over HTTP: activateSubAccount emails a single-use link, acceptInvitation spends
it, revokeInvitation withdraws it. Nobody but the mailbox's reader can obtain a login for an
email, and the inviter learns nothing about the login behind it (the sub-account takeover)."""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from models.accounts import Membership
from models.audit import AuditEvent
from models.base import utcnow
from models.database import create_session_factory
from models.identity import Invitation
from models.notifications import Notification
from models.users import User
from schema.relay import encode_global_id
from tests.conftest import PERSONAS, GraphQLClient, client_for
from tests.customers import (
    ACCEPT_INVITATION, ACTIVATE, PASSWORD, SIGN_UP, Customer, add_contact, audit_actions,
    count_rows, emailed_token, new_customer, new_sub_account, permissions_on, pk,
    sign_up_and_confirm, unique_email,
)

REVOKE = """
mutation($input: RevokeInvitationInput!) {
  revokeInvitation(input: $input) {
    invitation { id email status revokedAt } userErrors { field message code }
  }
}
"""
INVITATIONS = """
query($n: String!) {
  viewer { account(number: $n) {
    invitations { id email permissions status createdAt expiresAt acceptedAt revokedAt
                  invitedByName contact { id } }
  } }
}
"""
NODE = "query($id: ID!) { node(id: $id) { id ... on Invitation { email status } } }"
NOTIFICATIONS = """
query($n: String!) {
  viewer { account(number: $n) { notifications(first: 100) { edges { node { recipient subject } } } } }
}
"""
LOGIN = "mutation($input: LoginInput!) { login(input: $input) { token userErrors { code } } }"
DELETE_CONTACT = """
mutation($input: DeleteContactInput!) { deleteContact(input: $input) { deletedContactId userErrors { code } } }
"""
SET_PERMISSIONS = """
mutation($input: SetSubAccountPermissionsInput!) {
  setSubAccountPermissions(input: $input) { membership { permissions } userErrors { code } }
}
"""
OWN_PASSWORD = "the invitee's own secret"


def codes(payload: dict[str, Any]) -> list[str]:
    return [error["code"] for error in payload["userErrors"]]


async def invite(gql: GraphQLClient, token: str, contact_id: str, permissions: list[str]) -> dict[str, Any]:
    result = await gql.execute(ACTIVATE, {"input": {"contactId": contact_id, "permissions": permissions}},
                               token=token)
    assert "errors" not in result, result
    return result["data"]["activateSubAccount"]


async def invited(gql: GraphQLClient, owner: Customer, permissions: list[str], **contact: Any
                  ) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A new contact on the owner's account, invited: (contact, invitation, emailed token)."""
    added = (await add_contact(gql, owner.token, owner.account.id, **contact))["contact"]
    payload = await invite(gql, owner.token, added["id"], permissions)
    assert payload["userErrors"] == [], payload
    link = await emailed_token(gql.engine, added["email"], "accept-invitation")
    assert link and link.startswith("lgi_")
    return added, payload["invitation"], link


async def accept(gql: GraphQLClient, link: str, *, token: str | None = None, name: str | None = "Ines Invitee",
                 password: str | None = OWN_PASSWORD) -> dict[str, Any]:
    result = await gql.execute(ACCEPT_INVITATION, {"input": {"token": link, "name": name, "password": password}},
                               token=token)
    assert "errors" not in result, result
    return result["data"]["acceptInvitation"]


async def invitation_rows(gql: GraphQLClient, owner: Customer) -> list[dict[str, Any]]:
    result = await gql.execute(INVITATIONS, {"n": owner.account.number}, token=owner.token)
    assert "errors" not in result, result
    return result["data"]["viewer"]["account"]["invitations"]


async def status_of(gql: GraphQLClient, owner: Customer, invitation_id: str) -> str:
    rows = await invitation_rows(gql, owner)
    return next(row["status"] for row in rows if row["id"] == invitation_id)


async def login_refused(app: Any, email: str, password: str, address: str) -> bool:
    """From an address of its own: failed logins are throttled per client address."""
    async with client_for(app, address) as http:
        result = await GraphQLClient(http).execute(LOGIN, {"input": {"email": email, "password": password}})
    return result["data"]["login"]["token"] is None


async def test_the_takeover_sequence_fails(gql: GraphQLClient, app: Any, engine: AsyncEngine) -> None:
    eve = await new_customer(gql, "Eve Trading")
    northwind = await new_customer(gql, "Northwind Traders")
    cfo = unique_email("cfo")

    # Eve adds the CFO's address to her own account. She cannot choose a password for it...
    eves_contact = (await add_contact(gql, eve.token, eve.account.id, email=cfo, name="Chief Money"))["contact"]
    with_password = await gql.execute(ACTIVATE, {"input": {
        "contactId": eves_contact["id"], "password": "eve's password!", "permissions": ["SERVICES_READ"],
    }}, token=eve.token)
    assert with_password["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # ...she only gets an invitation, and never sees its link.
    eves = await invite(gql, eve.token, eves_contact["id"], ["SERVICES_READ"])
    assert eves["userErrors"] == [] and eves["invitation"]["status"] == "PENDING"
    assert "#token=" not in json.dumps(eves) and "lgi_" not in json.dumps(eves)
    listed = await gql.execute(NOTIFICATIONS, {"n": eve.account.number}, token=eve.token)
    emails = listed["data"]["viewer"]["account"]["notifications"]["edges"]
    assert all(edge["node"]["recipient"] != cfo for edge in emails)
    assert "#token=" not in json.dumps(listed) and "lgi_" not in json.dumps(await invitation_rows(gql, eve))
    assert await count_rows(engine, User, User.email == cfo) == 0

    # Northwind's owner adds the same person and invites them with billing rights.
    theirs = (await add_contact(gql, northwind.token, northwind.account.id, email=cfo))["contact"]
    northwinds = await invite(gql, northwind.token, theirs["id"], ["INVOICES_READ", "CREDITS_READ"])
    assert northwinds["userErrors"] == []

    # Eve has no token; forged or guessed ones fail, signed in or not.
    for forged in ("lgi_" + secrets.token_urlsafe(32), "lgi_" + "A" * 43, "", "#token="):
        assert codes(await accept(gql, forged, password="eve's password!")) == ["INVALID_TOKEN"]
        assert codes(await accept(gql, forged, token=eve.token)) == ["INVALID_TOKEN"]
    assert await count_rows(engine, User, User.email == cfo) == 0
    assert await login_refused(app, cfo, "eve's password!", "198.51.100.61")

    # The link Northwind's invitation emailed is the newest for that address; even holding
    # it, Eve's own session cannot accept it.
    link = await emailed_token(engine, cfo, "accept-invitation")
    assert link is not None
    assert codes(await accept(gql, link, token=eve.token)) == ["WRONG_USER"]

    # The real invitee follows it, with a password of their own, and gets exactly those rights.
    joined = await accept(gql, link, name="Carla CFO", password=OWN_PASSWORD)
    assert joined["userErrors"] == [] and joined["token"]
    assert joined["viewer"]["user"] == {"id": joined["viewer"]["user"]["id"], "email": cfo, "name": "Carla CFO"}
    assert joined["account"]["number"] == northwind.account.number
    assert await permissions_on(gql, joined["token"], northwind.account.number) == {"INVOICES_READ", "CREDITS_READ"}
    assert await permissions_on(gql, joined["token"], eve.account.number) is None
    assert await login_refused(app, cfo, "eve's password!", "198.51.100.62")
    assert await gql.login(cfo, OWN_PASSWORD)
    # Eve's own invitation to that address is still just pending, and joins nothing by itself.
    assert await status_of(gql, eve, eves["invitation"]["id"]) == "PENDING"
    assert await count_rows(engine, Membership, Membership.account_id == pk(eve.account.id)) == 0


async def test_the_activation_answer_says_nothing_about_an_existing_login(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    existing_email = unique_email("existing")
    await sign_up_and_confirm(gql, email=existing_email, name="Zebulon Quartermaine")
    answers = []
    for email in (existing_email, unique_email("fresh")):
        contact = (await add_contact(gql, owner.token, owner.account.id, email=email, name="Casey"))["contact"]
        payload = await invite(gql, owner.token, contact["id"], ["TICKETS_READ"])
        assert "Zebulon" not in json.dumps(payload)
        assert payload["invitation"]["email"] == email
        answers.append({
            "contact": set(payload["contact"]), "userErrors": payload["userErrors"],
            "invitation": {key: value for key, value in payload["invitation"].items()
                           if key not in ("id", "email", "expiresAt")},
        })
    assert answers[0] == answers[1]
    # Not even the mail tells: it names the account and the inviter, the same for both.
    async with create_session_factory(engine)() as session:
        body = await session.scalar(
            select(Notification.body).where(Notification.recipient == existing_email)
            .order_by(Notification.id.desc()).limit(1)
        )
    assert "Test Holdings" in body and "Owen Owner" in body  # the account, the inviter
    assert "Zebulon" not in body and "Casey" not in body and "TICKETS_READ" not in body


async def test_accepting_creates_a_login_with_the_invitees_password_once(
    gql: GraphQLClient, app: Any, engine: AsyncEngine
) -> None:
    owner = await new_customer(gql)
    contact, invitation, link = await invited(gql, owner, ["SERVICES_READ", "TICKETS_READ"], name="Ines")
    assert invitation["permissions"] == ["SERVICES_READ", "TICKETS_READ"]
    assert await count_rows(engine, Membership, Membership.account_id == pk(owner.account.id)) == 0

    joined = await accept(gql, link, name="  Ines   Invitee ", password=OWN_PASSWORD)
    assert joined["userErrors"] == [] and joined["token"] and joined["refreshToken"] and joined["expiresAt"]
    assert joined["viewer"]["user"]["name"] == "Ines Invitee"
    assert await permissions_on(gql, joined["token"], owner.account.number) == {"SERVICES_READ", "TICKETS_READ"}
    assert await gql.login(contact["email"], OWN_PASSWORD)
    rows = await invitation_rows(gql, owner)
    assert rows[0]["status"] == "ACCEPTED" and rows[0]["acceptedAt"] and rows[0]["invitedByName"] == "Owen Owner"
    assert rows[0]["contact"] == {"id": contact["id"]}
    assert (await audit_actions(engine, owner.account.number))[-2:] == ["invitation.created", "subaccount.activated"]

    again = await accept(gql, link, name="Mallory", password="mallory's password")
    assert codes(again) == ["INVALID_TOKEN"] and again["token"] is None and again["viewer"] is None
    assert await count_rows(engine, Membership, Membership.account_id == pk(owner.account.id)) == 1
    assert await count_rows(engine, User, User.email == contact["email"]) == 1
    assert await login_refused(app, contact["email"], "mallory's password", "198.51.100.71")
    # The contact is now a sub-account: activating it again says so.
    assert codes(await invite(gql, owner.token, contact["id"], ["SERVICES_READ"])) == ["ALREADY_ACTIVATED"]


async def test_expired_revoked_tampered_and_foreign_tokens_fail(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)

    expired_contact, expired, expired_link = await invited(gql, owner, ["SERVICES_READ"])
    async with create_session_factory(engine)() as session:
        await session.execute(update(Invitation).where(Invitation.id == pk(expired["id"]))
                              .values(expires_at=utcnow() - timedelta(minutes=1)))
        await session.commit()
    assert codes(await accept(gql, expired_link)) == ["INVALID_TOKEN"]
    assert await status_of(gql, owner, expired["id"]) == "EXPIRED"

    revoked_contact, revoked, revoked_link = await invited(gql, owner, ["SERVICES_READ"])
    result = await gql.execute(REVOKE, {"input": {"invitationId": revoked["id"]}}, token=owner.token)
    assert result["data"]["revokeInvitation"]["invitation"]["status"] == "REVOKED"
    assert codes(await accept(gql, revoked_link)) == ["INVALID_TOKEN"]

    contact, _, link = await invited(gql, owner, ["SERVICES_READ"])
    tampered = link[:-5] + ("A" if link[-5] != "A" else "B") + link[-4:]
    sign_up_email = unique_email("signup")
    await gql.execute(SIGN_UP, {"input": {"email": sign_up_email, "password": PASSWORD, "name": "S",
                                          "accountName": "Signup"}})
    sign_up_link = await emailed_token(engine, sign_up_email, "confirm-sign-up")
    other = await sign_up_and_confirm(gql)
    foreign = [tampered, link.upper(), link + "x", sign_up_link, other["refreshToken"], other["token"],
               owner.account.enrollment_token, "lgs_" + link.removeprefix("lgi_")]
    for token in foreign:
        answer = await accept(gql, token)
        assert codes(answer) == ["INVALID_TOKEN"], token
        assert "invalid" in answer["userErrors"][0]["message"] and answer["userErrors"][0]["field"] == ["token"]

    for email in (expired_contact["email"], revoked_contact["email"], contact["email"]):
        assert await count_rows(engine, User, User.email == email) == 0
    assert await count_rows(engine, Membership, Membership.account_id == pk(owner.account.id)) == 0
    # Nothing was spent along the way: the sign-up link and the real invitation still work.
    assert (await gql.execute(
        "mutation($t: String!, $p: String!) { confirmSignUp(input: {token: $t, password: $p}) { userErrors { code } } }",
        {"t": sign_up_link, "p": PASSWORD}))["data"]["confirmSignUp"]["userErrors"] == []
    assert (await accept(gql, " " + link + "\n"))["userErrors"] == []


async def test_an_existing_login_accepts_only_signed_in_as_itself(
    gql: GraphQLClient, app: Any, engine: AsyncEngine
) -> None:
    owner = await new_customer(gql)
    bookkeeper = await new_customer(gql, "Bookkeeping BV")
    bystander = await new_customer(gql, "Bystanders")
    contact, invitation, link = await invited(gql, owner, ["INVOICES_READ"], email=bookkeeper.email.upper())
    assert contact["email"] == bookkeeper.email

    signed_out = await accept(gql, link, name="Someone Else", password="another password")
    assert codes(signed_out) == ["SIGN_IN_REQUIRED"] and signed_out["token"] is None
    assert "sign in as that user" in signed_out["userErrors"][0]["message"]
    wrong = await accept(gql, link, token=bystander.token)
    assert codes(wrong) == ["WRONG_USER"] and wrong["viewer"] is None
    assert await status_of(gql, owner, invitation["id"]) == "PENDING"
    assert await count_rows(engine, Membership, Membership.account_id == pk(owner.account.id)) == 0

    joined = await accept(gql, link, token=bookkeeper.token, name="Ignored", password="another password")
    assert joined["userErrors"] == [] and joined["token"] is None and joined["refreshToken"] is None
    assert joined["viewer"]["user"]["id"] == bookkeeper.user_id
    assert joined["viewer"]["user"]["name"] == "Owen Owner"  # untouched
    assert joined["account"]["number"] == owner.account.number
    assert await status_of(gql, owner, invitation["id"]) == "ACCEPTED"
    # One login, two accounts with different rights; the password is the one it had.
    assert await login_refused(app, bookkeeper.email, "another password", "198.51.100.81")
    token = await gql.login(bookkeeper.email, PASSWORD)
    assert await permissions_on(gql, token, owner.account.number) == {"INVOICES_READ"}
    assert "LINKS_MANAGE" in (await permissions_on(gql, token, bookkeeper.account.number) or set())

    # An email without a login, accepted while signed in as someone: refused, nothing made.
    fresh, fresh_invitation, fresh_link = await invited(gql, owner, ["INVOICES_READ"])
    assert codes(await accept(gql, fresh_link, token=bystander.token)) == ["WRONG_USER"]
    assert await count_rows(engine, User, User.email == fresh["email"]) == 0
    assert await status_of(gql, owner, fresh_invitation["id"]) == "PENDING"


async def test_staff_and_members_cannot_accept_and_nothing_changes(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    # Inviting a staff address is answered like any other (the inviter learns nothing)...
    _, staff_invitation, staff_link = await invited(gql, owner, ["SERVICES_READ"], email=PERSONAS["agent"])
    # ...its holder cannot join.
    refused = await accept(gql, staff_link, token=await gql.login(PERSONAS["agent"]))
    assert codes(refused) == ["STAFF_USER"]
    assert await status_of(gql, owner, staff_invitation["id"]) == "PENDING"

    member = await new_customer(gql, "Member Co")
    _, invitation, link = await invited(gql, owner, ["SERVICES_READ"], email=member.email)
    async with create_session_factory(engine)() as session:  # a membership from before invitations
        session.add(Membership(user_id=pk(member.user_id), account_id=pk(owner.account.id),
                               permissions=["TICKETS_READ"]))
        await session.commit()
    assert codes(await accept(gql, link, token=member.token)) == ["ALREADY_ACTIVATED"]
    assert await count_rows(engine, Membership, Membership.user_id == pk(member.user_id)) == 1
    assert await permissions_on(gql, member.token, owner.account.number) == {"TICKETS_READ"}
    assert await status_of(gql, owner, invitation["id"]) == "PENDING"


async def test_who_may_invite_revoke_and_list(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    account_pk = pk(owner.account.id)
    contact, invitation, _ = await invited(gql, owner, ["SERVICES_READ"])

    # No escalation: a contacts manager without billing rights cannot hand them out.
    manager = await new_sub_account(gql, owner.token, owner.account.id, ["CONTACTS_MANAGE", "SERVICES_READ"])
    target = (await add_contact(gql, manager.token, owner.account.id))["contact"]
    before = await count_rows(engine, Invitation, Invitation.account_id == account_pk)
    escalation = await invite(gql, manager.token, target["id"], ["SERVICES_READ", "INVOICES_READ"])
    assert codes(escalation) == ["PERMISSION_NOT_HELD"] and escalation["invitation"] is None
    assert await count_rows(engine, Invitation, Invitation.account_id == account_pk) == before
    assert await emailed_token(engine, target["email"], "accept-invitation") is None
    # The manager lists invitations, but the contacts behind them need CONTACTS_READ.
    listed = await gql.execute(INVITATIONS, {"n": owner.account.number}, token=manager.token)
    rows = listed["data"]["viewer"]["account"]["invitations"]
    assert invitation["id"] in [row["id"] for row in rows] and all(row["contact"] is None for row in rows)
    assert {error["extensions"]["permission"] for error in listed["errors"]} == {"CONTACTS_READ"}

    reader = await new_sub_account(gql, owner.token, owner.account.id, ["CONTACTS_READ", "SERVICES_READ"])
    stranger = await new_customer(gql)
    revoke = {"input": {"invitationId": invitation["id"]}}
    for token, code in ((reader.token, "FORBIDDEN"), (stranger.token, "NOT_FOUND")):
        activated = await gql.execute(ACTIVATE, {"input": {"contactId": contact["id"], "permissions": []}}, token=token)
        assert activated["errors"][0]["extensions"]["code"] == code
        revoked = await gql.execute(REVOKE, revoke, token=token)
        assert revoked["errors"][0]["extensions"]["code"] == code
        assert revoked["data"] is None or revoked["data"]["revokeInvitation"] is None
        node = await gql.execute(NODE, {"id": invitation["id"]}, token=token)
        assert node["data"]["node"] is None and node["errors"][0]["extensions"]["code"] == code
    listed = await gql.execute(INVITATIONS, {"n": owner.account.number}, token=reader.token)
    assert listed["data"]["viewer"]["account"]["invitations"] is None
    assert listed["errors"][0]["extensions"] == {"code": "FORBIDDEN", "permission": "CONTACTS_MANAGE"}
    assert (await gql.execute(INVITATIONS, {"n": owner.account.number}, token=stranger.token)
            )["data"]["viewer"]["account"] is None
    unknown = await gql.execute(REVOKE, {"input": {"invitationId": encode_global_id("Invitation", 10**15)}},
                                token=owner.token)
    assert unknown["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert await status_of(gql, owner, invitation["id"]) == "PENDING"
    owners_view = await gql.execute(NODE, {"id": invitation["id"]}, token=owner.token)
    assert owners_view["data"]["node"] == {"id": invitation["id"], "email": contact["email"], "status": "PENDING"}
    # Signed out, none of it.
    assert (await gql.execute(REVOKE, revoke))["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_revoking_and_resending(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    contact, first, first_link = await invited(gql, owner, ["SERVICES_READ"])

    # Activating again is a resend: the old link dies, the new one works.
    resent = await invite(gql, owner.token, contact["id"], ["TICKETS_READ"])
    assert resent["userErrors"] == [] and resent["invitation"]["id"] != first["id"]
    second_link = await emailed_token(engine, contact["email"], "accept-invitation")
    assert second_link != first_link
    assert await status_of(gql, owner, first["id"]) == "REVOKED"
    assert codes(await accept(gql, first_link)) == ["INVALID_TOKEN"]

    revoke = {"input": {"invitationId": resent["invitation"]["id"]}}
    revoked = (await gql.execute(REVOKE, revoke, token=owner.token))["data"]["revokeInvitation"]
    assert revoked["userErrors"] == [] and revoked["invitation"]["status"] == "REVOKED"
    twice = (await gql.execute(REVOKE, revoke, token=owner.token))["data"]["revokeInvitation"]
    assert twice == revoked  # idempotent
    assert codes(await accept(gql, second_link)) == ["INVALID_TOKEN"]
    assert await count_rows(engine, User, User.email == contact["email"]) == 0
    assert (await audit_actions(engine, owner.account.number)).count("invitation.revoked") == 2

    third = await invite(gql, owner.token, contact["id"], ["TICKETS_READ"])
    assert (await accept(gql, await emailed_token(engine, contact["email"], "accept-invitation") or ""))["token"]
    late = (await gql.execute(REVOKE, {"input": {"invitationId": third["invitation"]["id"]}},
                              token=owner.token))["data"]["revokeInvitation"]
    assert codes(late) == ["ALREADY_ACCEPTED"] and late["invitation"] is None
    assert await status_of(gql, owner, third["invitation"]["id"]) == "ACCEPTED"


async def test_resending_is_capped_per_day(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    contact = (await add_contact(gql, owner.token, owner.account.id))["contact"]
    for _ in range(5):
        assert (await invite(gql, owner.token, contact["id"], ["SERVICES_READ"]))["userErrors"] == []
    assert codes(await invite(gql, owner.token, contact["id"], ["SERVICES_READ"])) == ["TOO_MANY_INVITATIONS"]
    assert await count_rows(engine, Notification, Notification.recipient == contact["email"]) == 5


async def test_two_concurrent_accepts_make_one_membership(gql: GraphQLClient, app: Any, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    contact, _, link = await invited(gql, owner, ["SERVICES_READ"])
    async with client_for(app, "198.51.100.91") as first, client_for(app, "198.51.100.92") as second:
        answers = await asyncio.gather(
            GraphQLClient(first).execute(ACCEPT_INVITATION, {"input": {"token": link, "name": "One", "password": OWN_PASSWORD}}),
            GraphQLClient(second).execute(ACCEPT_INVITATION, {"input": {"token": link, "name": "Two", "password": OWN_PASSWORD}}),
        )
    payloads = [answer["data"]["acceptInvitation"] for answer in answers]
    assert sorted(bool(payload["token"]) for payload in payloads) == [False, True], payloads
    assert [codes(payload) for payload in payloads if not payload["token"]] == [["INVALID_TOKEN"]]
    assert await count_rows(engine, Membership, Membership.account_id == pk(owner.account.id)) == 1
    assert await count_rows(engine, User, User.email == contact["email"]) == 1


async def test_bad_input_is_a_clear_answer_never_a_crash(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    contact, invitation, link = await invited(gql, owner, ["SERVICES_READ"])
    huge, large = "x" * 100_000, "y" * 90_000
    cases: list[tuple[dict[str, Any], set[str]]] = []
    for bad in ("\u0000", "a\u0000b" * 4, "\ud800", "abc\udfffdefgh", large):
        cases += [
            ({"token": bad, "name": "Ines", "password": OWN_PASSWORD}, {"INVALID_TOKEN"}),
            ({"token": link[:-1] + bad, "name": "Ines", "password": OWN_PASSWORD}, {"INVALID_TOKEN"}),
            ({"token": link, "name": bad, "password": OWN_PASSWORD}, {"NAME_INVALID", "NAME_TOO_LONG"}),
            ({"token": link, "name": "Ines", "password": bad}, {"PASSWORD_INVALID", "PASSWORD_TOO_LONG"}),
        ]
    cases += [({"token": link, "name": "Ines", "password": OWN_PASSWORD + "\ud800"}, {"PASSWORD_INVALID"}),
              ({"token": link, "name": "In\u0000es", "password": OWN_PASSWORD}, {"NAME_INVALID"})]
    for values in cases + [({"token": huge, "name": huge, "password": huge}, set())]:
        variables, expected = values
        # Escaped JSON, as a browser sends it: a lone surrogate cannot be encoded otherwise.
        response = await gql.http.post("/graphql", content=json.dumps({
            "query": ACCEPT_INVITATION, "variables": {"input": variables},
        }), headers={"content-type": "application/json"})
        assert response.status_code < 500, response.text[:300]
        body = response.json()
        if "errors" in body:  # the body limit (100,000 bytes) answers before GraphQL
            assert {error["extensions"]["code"] for error in body["errors"]} == {"BAD_USER_INPUT"}, body
            continue
        payload = body["data"]["acceptInvitation"]
        assert payload["token"] is None and set(codes(payload)) & expected, (variables, payload)
    assert await count_rows(engine, User, User.email == contact["email"]) == 0
    assert await status_of(gql, owner, invitation["id"]) == "PENDING"
    assert (await accept(gql, link))["token"]


# --- an invitation is worth no more than its inviter's rights at acceptance (review C) ---------

MANAGER_PERMISSIONS = ["CONTACTS_READ", "CONTACTS_MANAGE", "INVOICES_READ"]


async def planted(gql: GraphQLClient, owner: Customer, permissions: list[str]) -> tuple[Any, str, str]:
    """A CONTACTS_MANAGE sub-account that invites an address of its own (a contact it adds):
    (the sub-account, the invited address, the emailed link)."""
    manager = await new_sub_account(gql, owner.token, owner.account.id, MANAGER_PERMISSIONS)
    alias = unique_email("alias")
    contact = (await add_contact(gql, manager.token, owner.account.id, email=alias, name="Al Ias"))["contact"]
    sent = await invite(gql, manager.token, contact["id"], permissions)
    assert sent["userErrors"] == [], sent
    link = await emailed_token(gql.engine, alias, "accept-invitation")
    assert link
    return manager, alias, link


async def test_a_removed_sub_account_cannot_come_back_through_an_invitation_it_planted(
    gql: GraphQLClient, engine: AsyncEngine
) -> None:
    owner = await new_customer(gql)
    manager, alias, link = await planted(gql, owner, MANAGER_PERMISSIONS)
    # The owner removes the sub-account: deleting its contact ends its membership.
    deleted = await gql.execute(DELETE_CONTACT, {"input": {"contactId": manager.contact_id}}, token=owner.token)
    assert deleted["data"]["deleteContact"]["userErrors"] == [], deleted
    assert await permissions_on(gql, manager.token, owner.account.number) is None

    refused = await accept(gql, link)
    assert codes(refused) == ["INVALID_TOKEN"] and refused["token"] is None
    # Nothing changed: no login, no membership, the invitation not spent.
    assert await count_rows(engine, User, User.email == alias) == 0
    assert await count_rows(engine, Membership, Membership.account_id == pk(owner.account.id)) == 0
    assert await count_rows(engine, Invitation, Invitation.email == alias,
                            Invitation.accepted_at.is_not(None)) == 0
    assert "subaccount.activated" not in (await audit_actions(engine, owner.account.number))[-3:]
    # Signed in as an existing login of that address, the same answer.
    existing = await sign_up_and_confirm(gql, email=alias)
    assert codes(await accept(gql, link, token=existing["token"])) == ["INVALID_TOKEN"]
    assert await count_rows(engine, Membership, Membership.account_id == pk(owner.account.id)) == 0


async def test_a_demoted_inviter_grants_only_what_it_still_holds(
    gql: GraphQLClient, engine: AsyncEngine
) -> None:
    owner = await new_customer(gql)
    manager, alias, link = await planted(gql, owner, ["CONTACTS_READ", "INVOICES_READ"])
    demoted = await gql.execute(SET_PERMISSIONS, {"input": {
        "accountId": owner.account.id, "userId": manager.user_id,
        "permissions": ["CONTACTS_READ", "CONTACTS_MANAGE"],
    }}, token=owner.token)
    assert demoted["data"]["setSubAccountPermissions"]["userErrors"] == [], demoted

    accepted = await accept(gql, link)
    assert accepted["userErrors"] == [] and accepted["token"], accepted
    assert await permissions_on(gql, accepted["token"], owner.account.number) == {"CONTACTS_READ"}
    async with create_session_factory(engine)() as session:
        stored = await session.scalar(select(Membership.permissions).join(User, User.id == Membership.user_id)
                                      .where(User.email == alias))
        audited = await session.scalar(
            select(AuditEvent.after).where(AuditEvent.account_id == pk(owner.account.id),
                                           AuditEvent.action == "subaccount.activated")
            .order_by(AuditEvent.id.desc()).limit(1)
        )
    assert stored == ["CONTACTS_READ"]
    assert audited["permissions"] == ["CONTACTS_READ"] and audited["withheld"] == ["INVOICES_READ"]


async def test_the_cap_follows_the_address_not_the_contact(gql: GraphQLClient, engine: AsyncEngine) -> None:
    """Deleting and re-adding a contact does not reset the day's invitations to its address,
    and the mail says nothing the inviter typed in its subject."""
    owner = await new_customer(gql)
    email = unique_email("capped")
    for round_ in range(3):
        contact = (await add_contact(gql, owner.token, owner.account.id, email=email))["contact"]
        for _ in range(2):
            answer = await invite(gql, owner.token, contact["id"], ["SERVICES_READ"])
        await gql.execute("mutation($i: DeleteContactInput!) { deleteContact(input: $i) { deletedContactId } }",
                          {"i": {"contactId": contact["id"]}}, token=owner.token)
    assert codes(answer) == ["TOO_MANY_INVITATIONS"]  # the sixth of the day
    mails = await count_rows(engine, Notification, Notification.recipient == email)
    assert mails == 5
    async with create_session_factory(engine)() as session:
        subjects = set(await session.scalars(select(Notification.subject).where(Notification.recipient == email)))
    assert subjects == {"You are invited to a Linkgate account"}
