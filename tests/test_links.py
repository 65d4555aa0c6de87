"""Linking and unlinking accounts over HTTP (DESIGN §1 "Link groups", issue 5 part 2; the
notices, updateLinkMember and search by friendly name, issue 16)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pyotp
import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.permissions import LINK_SCOPES
from models.accounts import Account, AccountStatus
from models.audit import AuditEvent
from models.database import create_session_factory
from models.base import utcnow
from models.links import LinkKind, LinkMember, LinkMethod
from models.notifications import Notification
from models.users import User
from schema.relay import decode_global_id
from linkgate.app import create_app
from tests.conftest import UNTYPABLE, GraphQLClient, client_for, refused_at_the_edge
from tests.customers import (
    PASSWORD, Customer, add_contact, audit_actions, count_rows, new_customer, new_sub_account,
    permissions_on, pk, register,
)

LINK = """
mutation($input: LinkAccountInput!) {
  linkAccount(input: $input) {
    linkGroup { id kind name head { number } members { account { number } friendlyName linkedVia } }
    userErrors { field message code }
  }
}
"""
UNLINK = """
mutation($input: UnlinkAccountInput!) {
  unlinkAccount(input: $input) {
    linkGroup { id members { account { number } } }
    userErrors { field message code }
  }
}
"""
LINK_GROUPS = """
query($n: String!) { viewer { account(number: $n) { linkGroups { id kind head { number } } } } }
"""

# Every permission that some link kind lets flow, and some that never flow.
SUB_ACCOUNT_PERMISSIONS = [
    "INVOICES_READ", "CREDITS_READ", "BILLING_MANAGE", "SERVICES_READ", "TICKETS_READ",
    "PROFILE_MANAGE", "EMAILS_READ", "CONTACTS_MANAGE", "LINKS_MANAGE", "AUDIT_READ",
]


def by_credentials(
    owner: Customer, number: str, password: str = PASSWORD, otp: str | None = None
) -> dict[str, Any]:
    credentials = {"accountNumber": number, "email": owner.email, "password": password}
    return {"credentials": credentials if otp is None else {**credentials, "otp": otp}}


def by_enrollment(number: str, token: str) -> dict[str, Any]:
    return {"enrollment": {"accountNumber": number, "enrollmentToken": token}}


async def link(
    gql: GraphQLClient, token: str, head_id: str, kind: str, proof: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    variables = {"input": {"headAccountId": head_id, "kind": kind, **proof, **extra}}
    return await gql.execute(LINK, variables, token=token)


async def unlink(gql: GraphQLClient, token: str, group_id: str, account_id: str) -> dict[str, Any]:
    return await gql.execute(
        UNLINK, {"input": {"linkGroupId": group_id, "accountId": account_id}}, token=token
    )


def codes(payload: dict[str, Any]) -> list[str]:
    return [error["code"] for error in payload["userErrors"]]


def error_codes(result: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in result.get("errors", [])]


async def link_rows(engine: AsyncEngine, number: str) -> int:
    async with create_session_factory(engine)() as session:
        account_id = await session.scalar(select(Account.id).where(Account.number == number))
    return await count_rows(engine, LinkMember, LinkMember.account_id == account_id)


# --- linking, and what flows ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["MANAGEMENT", "BILLING"])
@pytest.mark.parametrize("method", ["OWNER_CREDENTIALS", "ENROLLMENT_TOKEN"])
async def test_sub_accounts_of_the_head_get_exactly_the_flowing_half_until_unlinked(
    gql: GraphQLClient, engine: AsyncEngine, kind: str, method: str
) -> None:
    owner = await new_customer(gql, "Head Office Ltd")
    member = await register(gql, owner.token, "Branch Ltd")
    sub = await new_sub_account(gql, owner.token, owner.account.id, SUB_ACCOUNT_PERMISSIONS)
    assert await permissions_on(gql, sub.token, member.number) is None

    proof = (by_credentials(owner, member.number) if method == "OWNER_CREDENTIALS"
             else by_enrollment(member.number, member.enrollment_token))
    result = await link(gql, owner.token, owner.account.id, kind, proof,
                        friendlyName="  Branch  ", groupName="Our group")
    payload = result["data"]["linkAccount"]
    assert payload["userErrors"] == [], result
    group = payload["linkGroup"]
    assert group["kind"] == kind and group["name"] == "Our group"
    assert group["head"]["number"] == owner.account.number
    assert group["members"] == [{"account": {"number": member.number}, "friendlyName": "Branch",
                                 "linkedVia": method}]

    flowing = {p.value for p in LINK_SCOPES[LinkKind(kind)]} & set(SUB_ACCOUNT_PERMISSIONS)
    assert flowing  # the test would prove nothing with an empty half
    assert await permissions_on(gql, sub.token, member.number) == flowing
    assert not flowing & {"CONTACTS_MANAGE", "LINKS_MANAGE", "AUDIT_READ"}
    # The head's own permissions are untouched.
    assert await permissions_on(gql, sub.token, owner.account.number) == set(SUB_ACCOUNT_PERMISSIONS)

    removed = (await unlink(gql, owner.token, group["id"], member.id))["data"]["unlinkAccount"]
    assert removed["userErrors"] == [] and removed["linkGroup"] is None  # last member: dissolved
    assert await permissions_on(gql, sub.token, member.number) is None
    assert await link_rows(engine, member.number) == 0
    for number in (owner.account.number, member.number):
        actions = await audit_actions(engine, number)
        assert actions.count("link.created") == 1 and actions.count("link.removed") == 1


async def test_both_kinds_at_once_add_up_and_unlink_one_at_a_time(gql: GraphQLClient) -> None:
    owner = await new_customer(gql)
    member = await register(gql, owner.token)
    sub = await new_sub_account(gql, owner.token, owner.account.id, SUB_ACCOUNT_PERMISSIONS)
    groups = {}
    for kind in ("MANAGEMENT", "BILLING"):
        result = await link(gql, owner.token, owner.account.id, kind,
                            by_enrollment(member.number, member.enrollment_token))
        assert result["data"]["linkAccount"]["userErrors"] == [], result
        groups[kind] = result["data"]["linkAccount"]["linkGroup"]["id"]
    management = {"SERVICES_READ", "TICKETS_READ", "PROFILE_MANAGE", "EMAILS_READ"}
    billing = {"INVOICES_READ", "CREDITS_READ", "BILLING_MANAGE"}
    assert await permissions_on(gql, sub.token, member.number) == management | billing

    listed = await gql.execute(LINK_GROUPS, {"n": member.number}, token=sub.token)
    assert {g["kind"] for g in listed["data"]["viewer"]["account"]["linkGroups"]} == {"MANAGEMENT", "BILLING"}

    assert (await unlink(gql, owner.token, groups["BILLING"], member.id))["data"]["unlinkAccount"]["userErrors"] == []
    assert await permissions_on(gql, sub.token, member.number) == management
    assert (await unlink(gql, owner.token, groups["MANAGEMENT"], member.id))["data"]["unlinkAccount"]["userErrors"] == []
    assert await permissions_on(gql, sub.token, member.number) is None


async def test_linking_another_customers_account_with_its_enrollment_token(gql: GraphQLClient) -> None:
    head_owner = await new_customer(gql, "Group HQ")
    other = await new_customer(gql, "Acquired Co")
    assert await permissions_on(gql, head_owner.token, other.account.number) is None
    result = await link(gql, head_owner.token, head_owner.account.id, "MANAGEMENT",
                        by_enrollment(f" {other.account.number.lower()} ", other.account.enrollment_token))
    assert result["data"]["linkAccount"]["userErrors"] == [], result
    # The head's owner holds everything on the head; the MANAGEMENT half flows to the member.
    assert await permissions_on(gql, head_owner.token, other.account.number) == {
        p.value for p in LINK_SCOPES[LinkKind.MANAGEMENT]
    }
    # The member's own owner keeps everything, and can unlink from the member's side.
    group_id = result["data"]["linkAccount"]["linkGroup"]["id"]
    removed = await unlink(gql, other.token, group_id, other.account.id)
    assert removed["data"]["unlinkAccount"]["userErrors"] == [], removed
    assert await permissions_on(gql, head_owner.token, other.account.number) is None


async def test_a_second_member_joins_the_existing_group(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    first, second = await register(gql, owner.token, "One"), await register(gql, owner.token, "Two")
    ids = []
    for account in (first, second):
        result = await link(gql, owner.token, owner.account.id, "BILLING",
                            by_credentials(owner, account.number))
        ids.append(result["data"]["linkAccount"]["linkGroup"]["id"])
    assert ids[0] == ids[1]
    members = (await link(gql, owner.token, owner.account.id, "MANAGEMENT",
                          by_credentials(owner, first.number)))["data"]["linkAccount"]["linkGroup"]
    assert members["id"] != ids[0]
    remaining = (await unlink(gql, owner.token, ids[0], first.id))["data"]["unlinkAccount"]["linkGroup"]
    assert remaining == {"id": ids[0], "members": [{"account": {"number": second.number}}]}


# --- invariants and bad input: a clear error, nothing written -------------------------------


async def test_an_account_cannot_be_linked_to_itself(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    result = await link(gql, owner.token, owner.account.id, "MANAGEMENT",
                        by_credentials(owner, owner.account.number))
    assert codes(result["data"]["linkAccount"]) == ["SAME_ACCOUNT"]
    assert await link_rows(engine, owner.account.number) == 0


async def test_one_group_per_kind_and_no_chains(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    other_head = await register(gql, owner.token, "Second head")
    member = await register(gql, owner.token, "Member")
    third = await register(gql, owner.token, "Third")
    ok = await link(gql, owner.token, owner.account.id, "MANAGEMENT", by_credentials(owner, member.number))
    assert ok["data"]["linkAccount"]["userErrors"] == []
    before = await count_rows(engine, AuditEvent)

    # The member cannot join a second MANAGEMENT group...
    again = await link(gql, owner.token, other_head.id, "MANAGEMENT", by_credentials(owner, member.number))
    assert codes(again["data"]["linkAccount"]) == ["ALREADY_LINKED"]
    # ...nor can the head become a member of another group of that kind...
    head_in = await link(gql, owner.token, other_head.id, "MANAGEMENT",
                         by_credentials(owner, owner.account.number))
    assert codes(head_in["data"]["linkAccount"]) == ["ALREADY_LINKED"]
    # ...nor can a member head a group of its own (no chains).
    chain = await link(gql, owner.token, member.id, "MANAGEMENT", by_credentials(owner, third.number))
    assert codes(chain["data"]["linkAccount"]) == ["ALREADY_LINKED"]
    assert chain["data"]["linkAccount"]["userErrors"][0]["field"] == ["headAccountId"]

    assert await link_rows(engine, other_head.number) == 0
    assert await link_rows(engine, third.number) == 0
    assert await link_rows(engine, member.number) == 1
    assert await count_rows(engine, AuditEvent) == before
    # The other kind is a separate link.
    billing = await link(gql, owner.token, other_head.id, "BILLING", by_credentials(owner, member.number))
    assert billing["data"]["linkAccount"]["userErrors"] == []


async def test_the_database_holds_one_group_per_kind_by_itself(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    member = await register(gql, owner.token)
    result = await link(gql, owner.token, owner.account.id, "MANAGEMENT", by_credentials(owner, member.number))
    group_id = decode_global_id(result["data"]["linkAccount"]["linkGroup"]["id"])[1]
    _, member_pk = decode_global_id(member.id)
    async with create_session_factory(engine)() as session:
        session.add(LinkMember(group_id=group_id, kind=LinkKind.MANAGEMENT, account_id=member_pk,
                               linked_via=LinkMethod.STAFF))
        with pytest.raises(IntegrityError):
            await session.flush()


async def test_closed_accounts_cannot_be_linked(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    closed = await register(gql, owner.token, "Closed Co")
    async with create_session_factory(engine)() as session:
        await session.execute(update(Account).where(Account.number == closed.number)
                              .values(status=AccountStatus.CLOSED))
        await session.commit()
    result = await link(gql, owner.token, owner.account.id, "BILLING", by_credentials(owner, closed.number))
    assert codes(result["data"]["linkAccount"]) == ["ACCOUNT_CLOSED"]
    assert await link_rows(engine, closed.number) == 0
    assert await link_rows(engine, owner.account.number) == 0


async def test_wrong_proofs_read_the_same_and_write_nothing(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    member = await register(gql, owner.token)
    other = await register(gql, owner.token, "Other")
    stranger = await new_customer(gql)
    # Four wrong proofs for one account (the throttle blocks at five).
    proofs = [
        by_credentials(owner, member.number, password="wrong password!"),
        {"credentials": {"accountNumber": member.number, "email": "nobody@example.com", "password": PASSWORD}},
        # The owner of another account proves nothing about this one.
        {"credentials": {"accountNumber": member.number, "email": stranger.email, "password": PASSWORD}},
        # A real token, but of a different account.
        by_enrollment(member.number, other.enrollment_token),
    ]
    # And two more against other numbers.
    proofs += [by_enrollment(other.number, "ENR-not-the-token"),
               by_enrollment("ACC-999999999", member.enrollment_token)]
    messages = set()
    second_caller = await new_customer(gql)  # the throttle also counts per user
    for index, proof in enumerate(proofs):
        caller = owner if index < 4 else second_caller
        result = await link(gql, caller.token, caller.account.id, "MANAGEMENT", proof)
        payload = result["data"]["linkAccount"]
        assert codes(payload) == ["INVALID_PROOF"], (proof, result)
        assert payload["linkGroup"] is None
        messages.add(payload["userErrors"][0]["message"])
    assert len(messages) == 1  # never says which half was wrong
    assert await link_rows(engine, member.number) == 0
    assert await link_rows(engine, owner.account.number) == 0
    assert "link.created" not in await audit_actions(engine, owner.account.number)


async def test_exactly_one_proof_is_required(gql: GraphQLClient) -> None:
    owner = await new_customer(gql)
    member = await register(gql, owner.token)
    none = await link(gql, owner.token, owner.account.id, "MANAGEMENT", {})
    both = await link(gql, owner.token, owner.account.id, "MANAGEMENT",
                      {**by_credentials(owner, member.number),
                       **by_enrollment(member.number, member.enrollment_token)})
    assert codes(none["data"]["linkAccount"]) == codes(both["data"]["linkAccount"]) == ["PROOF_REQUIRED"]


async def test_wrong_proofs_lock_out_the_guesser_not_the_account(
    gql: GraphQLClient, engine: AsyncEngine, settings: Any
) -> None:
    """Link proofs are throttled as sign-ins are (auth/throttle.py): per (account, user), per
    user, per account. A guesser blocks itself for that account; the account's owner, and the
    guesser's own other links, are not affected."""
    attacker = await new_customer(gql)
    victim = await new_customer(gql, "Victim Ltd")
    spare = await register(gql, attacker.token, "Spare")
    wrong = by_enrollment(victim.account.number, "ENR-guess")
    for _ in range(settings.login_max_failures):
        result = await link(gql, attacker.token, attacker.account.id, "MANAGEMENT", wrong)
        assert codes(result["data"]["linkAccount"]) == ["INVALID_PROOF"]
    # Blocked now for that account, even with the right token...
    right = by_enrollment(victim.account.number, victim.account.enrollment_token)
    blocked = await link(gql, attacker.token, attacker.account.id, "MANAGEMENT", right)
    assert error_codes(blocked) == ["RATE_LIMITED"] and blocked["data"] is None
    assert blocked["errors"][0]["extensions"]["retryAfter"] > 0
    assert await link_rows(engine, victim.account.number) == 0
    # ...but not for its own spare account...
    own = await link(gql, attacker.token, attacker.account.id, "MANAGEMENT",
                     by_enrollment(spare.number, spare.enrollment_token))
    assert own["data"]["linkAccount"]["userErrors"] == []
    # ...and whoever really holds the token links the account as usual.
    other = await new_customer(gql)
    target = await link(gql, other.token, other.account.id, "MANAGEMENT", right)
    assert target["data"]["linkAccount"]["userErrors"] == []
    assert await link_rows(engine, victim.account.number) == 1


async def test_guessing_proofs_for_many_accounts_blocks_the_user(
    gql: GraphQLClient, engine: AsyncEngine, settings: Any
) -> None:
    app = create_app(settings.model_copy(update={"login_client_max_failures": 4}), engine=engine)
    async with client_for(app, "10.70.0.1") as http:
        client = GraphQLClient(http)
        sprayer = await new_customer(client)
        spare = await register(client, sprayer.token, "Spare")
        answers = [
            error_codes(result) or codes(result["data"]["linkAccount"])
            for result in [
                await link(client, sprayer.token, sprayer.account.id, "MANAGEMENT",
                           by_enrollment(f"ACC-99{n:07d}", "ENR-guess"))
                for n in range(5)
            ]
        ]
        assert answers == [["INVALID_PROOF"]] * 4 + [["RATE_LIMITED"]]
        own = await link(client, sprayer.token, sprayer.account.id, "MANAGEMENT",
                         by_enrollment(spare.number, spare.enrollment_token))
        assert error_codes(own) == ["RATE_LIMITED"]


# --- who may link and unlink -----------------------------------------------------------------


async def test_billing_links_need_billing_manage_on_the_head(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    member = await register(gql, owner.token)
    linker = await new_sub_account(gql, owner.token, owner.account.id, ["LINKS_MANAGE"])
    proof = by_enrollment(member.number, member.enrollment_token)
    denied = await link(gql, linker.token, owner.account.id, "BILLING", proof)
    assert error_codes(denied) == ["FORBIDDEN"]
    assert denied["errors"][0]["extensions"]["permission"] == "BILLING_MANAGE"
    assert await link_rows(engine, member.number) == 0
    allowed = await link(gql, linker.token, owner.account.id, "MANAGEMENT", proof)
    assert allowed["data"]["linkAccount"]["userErrors"] == []


async def test_linking_needs_links_manage_and_a_visible_head(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    member = await register(gql, owner.token)
    reader = await new_sub_account(gql, owner.token, owner.account.id, ["SERVICES_READ"])
    stranger = await new_customer(gql)
    proof = by_enrollment(member.number, member.enrollment_token)
    forbidden = await link(gql, reader.token, owner.account.id, "MANAGEMENT", proof)
    assert error_codes(forbidden) == ["FORBIDDEN"]
    assert forbidden["errors"][0]["extensions"]["permission"] == "LINKS_MANAGE"
    invisible = await link(gql, stranger.token, owner.account.id, "MANAGEMENT", proof)
    assert error_codes(invisible) == ["NOT_FOUND"]
    anonymous = await gql.execute(LINK, {"input": {"headAccountId": owner.account.id,
                                                   "kind": "MANAGEMENT", **proof}})
    assert error_codes(anonymous) == ["UNAUTHENTICATED"]
    assert await link_rows(engine, member.number) == 0


async def test_unlinking_needs_links_manage_on_the_head_or_the_member(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    member = await register(gql, owner.token)
    result = await link(gql, owner.token, owner.account.id, "MANAGEMENT", by_credentials(owner, member.number))
    group_id = result["data"]["linkAccount"]["linkGroup"]["id"]
    reader = await new_sub_account(gql, owner.token, owner.account.id, ["SERVICES_READ"])
    stranger = await new_customer(gql)

    assert error_codes(await unlink(gql, reader.token, group_id, member.id)) == ["FORBIDDEN"]
    assert error_codes(await unlink(gql, stranger.token, group_id, member.id)) == ["NOT_FOUND"]
    head = await unlink(gql, owner.token, group_id, owner.account.id)
    assert codes(head["data"]["unlinkAccount"]) == ["HEAD_ACCOUNT"]
    assert await link_rows(engine, member.number) == 1

    # LINKS_MANAGE on the member alone is enough.
    member_admin = await new_sub_account(gql, owner.token, member.id, ["LINKS_MANAGE"])
    done = await unlink(gql, member_admin.token, group_id, member.id)
    assert done["data"]["unlinkAccount"]["userErrors"] == [], done
    assert await link_rows(engine, member.number) == 0
    assert await link_rows(engine, owner.account.number) == 0  # dissolved: the head left too
    listed = await gql.execute(LINK_GROUPS, {"n": owner.account.number}, token=owner.token)
    assert listed["data"]["viewer"]["account"]["linkGroups"] == []
    # A dissolved group is gone for good; linking again starts a new one.
    again = await link(gql, owner.token, owner.account.id, "MANAGEMENT", by_credentials(owner, member.number))
    assert again["data"]["linkAccount"]["linkGroup"]["id"] != group_id


async def test_two_concurrent_links_of_one_account_leave_it_in_one_group(
    gql: GraphQLClient, engine: AsyncEngine
) -> None:
    owner = await new_customer(gql)
    second_head = await register(gql, owner.token, "Second head")
    member = await register(gql, owner.token)
    proof = by_enrollment(member.number, member.enrollment_token)
    results = await asyncio.gather(
        link(gql, owner.token, owner.account.id, "BILLING", proof),
        link(gql, owner.token, second_head.id, "BILLING", proof),
    )
    outcomes = sorted(tuple(codes(r["data"]["linkAccount"])) for r in results)
    assert outcomes == [(), ("ALREADY_LINKED",)], results
    assert await link_rows(engine, member.number) == 1


# --- owner credentials ask for what signing in asks for (security review A) ------------------

LOGIN = "mutation($input: LoginInput!) { login(input: $input) { token userErrors { code } } }"


async def turn_on_two_factor(engine: AsyncEngine, email: str) -> pyotp.TOTP:
    """Two-factor sign-in on for ``email``, straight in the database; its authenticator."""
    secret = pyotp.random_base32()
    async with create_session_factory(engine)() as session:
        await session.execute(update(User).where(User.email == email).values(
            totp_secret=secret, totp_enabled_at=utcnow(), totp_last_step=None,
        ))
        await session.commit()
    return pyotp.TOTP(secret)


def wrong_code(totp: pyotp.TOTP) -> str:
    """Six digits that no step the server accepts now makes."""
    now = time.time()
    valid = {totp.at(now + drift) for drift in (-60, -30, 0, 30, 60)}
    return next(code for code in ("000000", "111111", "222222", "333333") if code not in valid)


async def link_mails(engine: AsyncEngine, email: str) -> list[Notification]:
    """The link notices mailed to ``email``, oldest first."""
    async with create_session_factory(engine)() as session:
        return list((await session.scalars(
            select(Notification).where(Notification.recipient == email,
                                       Notification.related_type == "link_group")
            .order_by(Notification.id)
        )).all())


async def test_an_owner_with_two_factor_proves_control_only_with_a_code(
    app: Any, gql: GraphQLClient, engine: AsyncEngine
) -> None:
    """With two-factor on, the owner's password alone proves nothing; the code is spent by
    the proof it completes, and a wrong password spends none. Every miss reads the same."""
    owner = await new_customer(gql)
    first, second = await register(gql, owner.token, "One"), await register(gql, owner.token, "Two")
    totp = await turn_on_two_factor(engine, owner.email)
    async with client_for(app, "10.71.0.1") as http:
        client = GraphQLClient(http)

        async def attempt(number: str, password: str = PASSWORD, otp: str | None = None) -> dict[str, Any]:
            result = await link(client, owner.token, owner.account.id, "MANAGEMENT",
                                by_credentials(owner, number, password, otp))
            assert "errors" not in result, result
            return result["data"]["linkAccount"]

        password_only = await attempt(first.number)
        assert codes(password_only) == ["INVALID_PROOF"] and password_only["linkGroup"] is None
        wrong_otp = await attempt(first.number, otp=wrong_code(totp))
        empty_otp = await attempt(first.number, otp="")
        code = totp.now()
        wrong_password = await attempt(first.number, "not the password", otp=code)
        assert password_only == wrong_otp == empty_otp == wrong_password  # no new oracle
        assert await link_rows(engine, first.number) == 0
        assert await link_rows(engine, owner.account.number) == 0
        assert await link_mails(engine, owner.email) == []

        # The code was not spent by the wrong password: it completes the proof now...
        linked = await attempt(first.number, otp=code)
        assert linked["userErrors"] == [], linked
        assert linked["linkGroup"]["members"] == [
            {"account": {"number": first.number}, "friendlyName": None, "linkedVia": "OWNER_CREDENTIALS"}
        ]
        # ...and only once: replayed for another link, it proves nothing.
        replayed = await attempt(second.number, otp=code)
        assert replayed == password_only
        assert await link_rows(engine, second.number) == 0
    assert await link_rows(engine, first.number) == 1


async def test_wrong_owner_credentials_count_as_failed_sign_ins(
    app: Any, gql: GraphQLClient, engine: AsyncEngine, settings: Any
) -> None:
    """linkAccount is no second door for guessing a password: wrong owner credentials use up
    the email's sign-in budget from that client, as wrong logins do."""
    victim = await new_customer(gql, "Victim Ltd")
    guesser = await new_customer(gql)
    async with client_for(app, "10.72.0.1") as http:
        client = GraphQLClient(http)
        # Spread over account numbers, so the link's own (per account) throttle never stops it.
        for n in range(settings.login_max_failures):
            number = victim.account.number if n == 0 else f"ACC-98{n:07d}"
            result = await link(client, guesser.token, guesser.account.id, "MANAGEMENT",
                                by_credentials(victim, number, password=f"guess number {n}"))
            assert codes(result["data"]["linkAccount"]) == ["INVALID_PROOF"], result
        # That email is blocked from that client: for signing in...
        signing_in = await client.execute(LOGIN, {"input": {"email": victim.email, "password": PASSWORD}})
        assert error_codes(signing_in) == ["RATE_LIMITED"]
        # ...and for linking, even with the right password.
        again = await link(client, guesser.token, guesser.account.id, "MANAGEMENT",
                           by_credentials(victim, victim.account.number))
        assert error_codes(again) == ["RATE_LIMITED"]
    assert await link_rows(engine, victim.account.number) == 0
    # The owner, signing in from elsewhere, is not affected.
    async with client_for(app, "10.72.0.2") as http:
        assert await GraphQLClient(http).login(victim.email, PASSWORD)


NOTICES = """
query($n: String!) { viewer { account(number: $n) {
  notifications(first: 20) { edges { node { category recipient subject body } } }
  auditLog(first: 20) { edges { node { action before after actor } } }
} } }
"""


async def notices_and_audit(
    gql: GraphQLClient, token: str, number: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The account's email history and audit log as its owner reads them, newest first."""
    result = await gql.execute(NOTICES, {"n": number}, token=token)
    account = result["data"]["viewer"]["account"]
    return ([edge["node"] for edge in account["notifications"]["edges"]],
            [edge["node"] for edge in account["auditLog"]["edges"]])


async def opt_out_of_general(engine: AsyncEngine, email: str) -> None:
    """What the login's email settings would store, straight in the database."""
    async with create_session_factory(engine)() as session:
        await session.execute(update(User).where(User.email == email)
                              .values(email_opt_outs=["GENERAL"]))
        await session.commit()


@pytest.mark.parametrize("method", ["OWNER_CREDENTIALS", "ENROLLMENT_TOKEN"])
async def test_whoever_is_linked_is_told_and_both_audit_logs_show_it(
    gql: GraphQLClient, engine: AsyncEngine, method: str
) -> None:
    """Issue 16: eve's Contoso linked into Northwind's billing group with her credentials
    left no mail on Contoso and nothing she could find. Now the linked account's owner gets a
    GENERAL notice on the account's history (copied to its GENERAL contacts), and the link
    and the unlink are in both accounts' audit logs."""
    head_owner = await new_customer(gql, "Group HQ")
    other = await new_customer(gql, "Acquired Co")
    number = other.account.number
    general = (await add_contact(gql, other.token, other.account.id, emailPreferences=["GENERAL"]))["contact"]
    invoices_only = (await add_contact(gql, other.token, other.account.id, emailPreferences=["INVOICE"]))["contact"]
    wrong = (by_credentials(other, number, password="not the password") if method == "OWNER_CREDENTIALS"
             else by_enrollment(number, "ENR-not-the-token"))
    refused = await link(gql, head_owner.token, head_owner.account.id, "BILLING", wrong)
    assert codes(refused["data"]["linkAccount"]) == ["INVALID_PROOF"]
    assert await link_mails(engine, other.email) == []  # a wrong proof links nothing, tells nothing

    proof = (by_credentials(other, number) if method == "OWNER_CREDENTIALS"
             else by_enrollment(number, other.account.enrollment_token))
    result = await link(gql, head_owner.token, head_owner.account.id, "BILLING", proof,
                        friendlyName="Acquired")
    assert result["data"]["linkAccount"]["userErrors"] == [], result
    group_id = result["data"]["linkAccount"]["linkGroup"]["id"]
    (mail,) = await link_mails(engine, other.email)
    assert mail.category == "GENERAL" and mail.account_id == pk(other.account.id)
    assert number in mail.subject
    assert "Group HQ" in mail.body and head_owner.account.number in mail.body
    assert "BILLING" in mail.body and number in mail.body and "BILLING_MANAGE" in mail.body
    assert ("password" if method == "OWNER_CREDENTIALS" else "enrollment token") in mail.body
    # No secret travels in it.
    assert other.account.enrollment_token not in mail.body and PASSWORD not in mail.body
    assert "#token=" not in mail.body
    # The same notice to the contact who asked for GENERAL mail, none to the other.
    assert [m.body for m in await link_mails(engine, general["email"])] == [mail.body]
    assert await link_mails(engine, invoices_only["email"]) == []
    # The linker is not the owner and gets nothing.
    assert await link_mails(engine, head_owner.email) == []

    # The owner finds both on the account itself.
    notices, audit = await notices_and_audit(gql, other.token, number)
    assert [(n["category"], n["recipient"]) for n in notices if "linked" in n["subject"]] == [
        ("GENERAL", general["email"]), ("GENERAL", other.email)]
    created = json.loads(audit[0]["after"])
    assert audit[0]["action"] == "link.created" and audit[0]["actor"] == "Owen Owner"
    assert created == {"kind": "BILLING", "group_id": pk(group_id), "head": head_owner.account.number,
                       "account": number, "friendly_name": "Acquired", "linked_via": method}
    _, head_audit = await notices_and_audit(gql, head_owner.token, head_owner.account.number)
    assert head_audit[0]["action"] == "link.created" and json.loads(head_audit[0]["after"]) == created

    # Unlinked from the head's side: told again, and audited on both.
    removed = await unlink(gql, head_owner.token, group_id, other.account.id)
    assert removed["data"]["unlinkAccount"]["userErrors"] == [], removed
    unlinked = (await link_mails(engine, other.email))[-1]
    assert unlinked.category == "GENERAL" and unlinked.account_id == pk(other.account.id)
    assert "unlinked" in unlinked.subject and number in unlinked.subject
    assert head_owner.account.number in unlinked.body and "charges made before stay" in unlinked.body
    assert len(await link_mails(engine, general["email"])) == 2
    assert await link_mails(engine, head_owner.email) == []
    for token, account_number in ((other.token, number), (head_owner.token, head_owner.account.number)):
        _, audit = await notices_and_audit(gql, token, account_number)
        assert audit[0]["action"] == "link.removed"
        assert json.loads(audit[0]["before"]) == created
        assert json.loads(audit[0]["after"]) == {"group_dissolved": True}


async def test_a_link_made_with_the_owners_secret_reaches_them_despite_an_opt_out(
    gql: GraphQLClient, engine: AsyncEngine
) -> None:
    """Someone else using the owner's password or the account's token is what a sign-in
    alert is about: an owner who opted out of GENERAL mail gets it as security mail (and
    only that one mail). Links and unlinks the owner makes themselves follow the opt-out."""
    head_owner = await new_customer(gql, "Parent HQ")
    victim = await new_customer(gql, "Victim Ltd")
    general = (await add_contact(gql, victim.token, victim.account.id, emailPreferences=["GENERAL"]))["contact"]
    await opt_out_of_general(engine, victim.email)

    result = await link(gql, head_owner.token, head_owner.account.id, "MANAGEMENT",
                        by_credentials(victim, victim.account.number))
    assert result["data"]["linkAccount"]["userErrors"] == [], result
    group_id = result["data"]["linkAccount"]["linkGroup"]["id"]
    (mail,) = await link_mails(engine, victim.email)
    assert mail.category == "SECURITY" and mail.account_id is None
    assert "password" in mail.body and head_owner.account.number in mail.body
    (copy,) = await link_mails(engine, general["email"])  # the contact still has the notice
    assert copy.category == "GENERAL" and copy.body == mail.body

    # The owner unlinks it: no mail for them (opted out), the contact is told.
    removed = await unlink(gql, victim.token, group_id, victim.account.id)
    assert removed["data"]["unlinkAccount"]["userErrors"] == [], removed
    assert len(await link_mails(engine, victim.email)) == 1
    assert len(await link_mails(engine, general["email"])) == 2

    # The owner links their own account with their own token: their choice, no mail to them.
    own_head = await register(gql, victim.token, "Victim HQ")
    mine = await link(gql, victim.token, own_head.id, "MANAGEMENT",
                      by_enrollment(victim.account.number, victim.account.enrollment_token))
    assert mine["data"]["linkAccount"]["userErrors"] == [], mine
    assert len(await link_mails(engine, victim.email)) == 1
    assert len(await link_mails(engine, general["email"])) == 3


async def test_an_owner_linking_their_own_accounts_is_told_too(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql, "Own HQ")
    member = await register(gql, owner.token, "Own Branch")
    result = await link(gql, owner.token, owner.account.id, "MANAGEMENT",
                        by_credentials(owner, member.number))
    assert result["data"]["linkAccount"]["userErrors"] == [], result
    (mail,) = await link_mails(engine, owner.email)
    assert mail.category == "GENERAL" and mail.account_id == pk(member.id)
    assert member.number in mail.subject and "MANAGEMENT" in mail.body


# --- friendly names: updateLinkMember, and account search ------------------------------------

UPDATE_MEMBER = """
mutation($input: UpdateLinkMemberInput!) {
  updateLinkMember(input: $input) {
    linkGroup { id members { account { number } friendlyName } }
    userErrors { field message code }
  }
}
"""


async def rename_member(
    gql: GraphQLClient, token: str, group_id: str, account_id: str, name: str | None
) -> dict[str, Any]:
    return await gql.execute(UPDATE_MEMBER, {"input": {
        "linkGroupId": group_id, "accountId": account_id, "friendlyName": name}}, token=token)


async def friendly_name_of(engine: AsyncEngine, account_id: str) -> str | None:
    async with create_session_factory(engine)() as session:
        return await session.scalar(select(LinkMember.friendly_name)
                                    .where(LinkMember.account_id == pk(account_id)))


async def test_the_heads_manager_renames_a_member_and_both_logs_show_it(
    gql: GraphQLClient, engine: AsyncEngine
) -> None:
    owner = await new_customer(gql, "Parent Office Ltd")
    member = await register(gql, owner.token, "Sub Branch Ltd")
    linked = await link(gql, owner.token, owner.account.id, "MANAGEMENT",
                        by_credentials(owner, member.number), friendlyName="Branch")
    group_id = linked["data"]["linkAccount"]["linkGroup"]["id"]

    renamed = (await rename_member(gql, owner.token, group_id, member.id, "  North   branch "))["data"]["updateLinkMember"]
    assert renamed == {"linkGroup": {"id": group_id, "members": [
        {"account": {"number": member.number}, "friendlyName": "North branch"}]}, "userErrors": []}
    for account_number in (owner.account.number, member.number):
        _, audit = await notices_and_audit(gql, owner.token, account_number)
        assert audit[0]["action"] == "link.updated"
        assert json.loads(audit[0]["before"])["friendly_name"] == "Branch"
        assert json.loads(audit[0]["after"]) == {
            "kind": "MANAGEMENT", "group_id": pk(group_id), "head": owner.account.number,
            "account": member.number, "friendly_name": "North branch", "linked_via": "OWNER_CREDENTIALS"}
    before = await count_rows(engine, AuditEvent)
    same = await rename_member(gql, owner.token, group_id, member.id, "North branch")
    assert same["data"]["updateLinkMember"]["userErrors"] == []
    assert await count_rows(engine, AuditEvent) == before  # nothing changed, nothing audited

    # Too long, or no name anyone could type: a clear error, nothing changed.
    for bad, code in (("x" * 101, "NAME_TOO_LONG"), ("tab\tbell\a", "TEXT_INVALID")):
        payload = (await rename_member(gql, owner.token, group_id, member.id, bad))["data"]["updateLinkMember"]
        assert payload["linkGroup"] is None
        assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [(code, ["friendlyName"])]
    assert await friendly_name_of(engine, member.id) == "North branch"
    exactly = await rename_member(gql, owner.token, group_id, member.id, "y" * 100)
    assert exactly["data"]["updateLinkMember"]["userErrors"] == []

    # Null, or only white space, clears it.
    for cleared in (None, "   "):
        payload = (await rename_member(gql, owner.token, group_id, member.id, cleared))["data"]["updateLinkMember"]
        assert payload["linkGroup"]["members"][0]["friendlyName"] is None, payload
    assert await friendly_name_of(engine, member.id) is None
    assert (await audit_actions(engine, member.number)).count("link.updated") == 3

    # The head itself has no friendly name to set, and a stranger account is not a member.
    head = await rename_member(gql, owner.token, group_id, owner.account.id, "HQ")
    assert codes(head["data"]["updateLinkMember"]) == ["HEAD_ACCOUNT"]
    outsider = await register(gql, owner.token, "Outsider")
    assert codes((await rename_member(gql, owner.token, group_id, outsider.id, "X"))["data"]["updateLinkMember"]) == ["NOT_LINKED"]


async def test_renaming_a_member_needs_links_manage_on_the_head(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    member = await register(gql, owner.token)
    linked = await link(gql, owner.token, owner.account.id, "BILLING",
                        by_credentials(owner, member.number), friendlyName="Shops")
    group_id = linked["data"]["linkAccount"]["linkGroup"]["id"]
    reader = await new_sub_account(gql, owner.token, owner.account.id, ["INVOICES_READ", "BILLING_MANAGE"])
    member_admin = await new_sub_account(gql, owner.token, member.id, ["LINKS_MANAGE", "PROFILE_MANAGE"])
    head_admin = await new_sub_account(gql, owner.token, owner.account.id, ["LINKS_MANAGE"])
    stranger = await new_customer(gql)

    for token in (reader.token, member_admin.token):
        denied = await rename_member(gql, token, group_id, member.id, "Taken over")
        assert error_codes(denied) == ["FORBIDDEN"], denied
        assert denied["errors"][0]["extensions"]["permission"] == "LINKS_MANAGE"
    hidden = await rename_member(gql, stranger.token, group_id, member.id, "Mine")
    assert error_codes(hidden) == ["NOT_FOUND"]
    anonymous = await gql.execute(UPDATE_MEMBER, {"input": {
        "linkGroupId": group_id, "accountId": member.id, "friendlyName": "Anyone"}})
    assert error_codes(anonymous) == ["UNAUTHENTICATED"]
    assert await friendly_name_of(engine, member.id) == "Shops"
    assert "link.updated" not in await audit_actions(engine, member.number)

    allowed = await rename_member(gql, head_admin.token, group_id, member.id, "Shops & stores")
    assert allowed["data"]["updateLinkMember"]["userErrors"] == [], allowed
    assert await friendly_name_of(engine, member.id) == "Shops & stores"


SEARCH = """
query($s: String) { viewer { accounts(search: $s, first: 50) { totalCount edges { node { number } } } } }
"""


async def search(gql: GraphQLClient, token: str, text: str) -> list[str]:
    result = await gql.execute(SEARCH, {"s": text}, token=token)
    return sorted(edge["node"]["number"] for edge in result["data"]["viewer"]["accounts"]["edges"])


async def test_account_search_matches_friendly_names(gql: GraphQLClient, tokens: dict[str, str]) -> None:
    from linkgate.demo import LOGISTICS, RETAIL

    # Northwind Logistics is "Warehouse & fleet" in both of Northwind's groups: found once.
    assert await search(gql, tokens["olivia"], "Warehouse") == [LOGISTICS]
    assert await search(gql, tokens["olivia"], "warehouse & FLEET") == [LOGISTICS]
    assert await search(gql, tokens["olivia"], "shops") == [RETAIL]
    # Only accounts the viewer sees: eve sees none of Northwind's.
    assert await search(gql, tokens["eve"], "Warehouse") == []


async def test_search_wildcards_in_friendly_names_are_literal(gql: GraphQLClient) -> None:
    owner = await new_customer(gql, "Wild Cards HQ")
    percent, underscore = await register(gql, owner.token, "Site A"), await register(gql, owner.token, "Site B")
    for member, name in ((percent, "50% off"), (underscore, "snake_case")):
        result = await link(gql, owner.token, owner.account.id, "MANAGEMENT",
                            by_credentials(owner, member.number), friendlyName=name)
        assert result["data"]["linkAccount"]["userErrors"] == [], result
    assert await search(gql, owner.token, "%") == [percent.number]
    assert await search(gql, owner.token, "0% O") == [percent.number]
    assert await search(gql, owner.token, "_") == [underscore.number]
    assert await search(gql, owner.token, "e_c") == [underscore.number]
    assert await search(gql, owner.token, "50_") == []
    assert await search(gql, owner.token, "s%c") == []


async def test_search_skips_a_heads_friendly_name(gql: GraphQLClient, engine: AsyncEngine) -> None:
    """The demo's heads carry one ("Head office"), but the API shows it nowhere, so searching
    for it would answer about something hidden."""
    owner = await new_customer(gql, "Plain HQ")
    member = await register(gql, owner.token, "Plain Branch")
    result = await link(gql, owner.token, owner.account.id, "MANAGEMENT",
                        by_credentials(owner, member.number), friendlyName="Visible label")
    assert result["data"]["linkAccount"]["userErrors"] == [], result
    async with create_session_factory(engine)() as session:
        await session.execute(update(LinkMember).where(LinkMember.account_id == pk(owner.account.id))
                              .values(friendly_name="Hidden label"))
        await session.commit()
    assert await search(gql, owner.token, "label") == [member.number]


@pytest.mark.parametrize("number", ["ACC-\u0000", "ACC-\ud800", "x" * 50_000])
async def test_account_numbers_no_account_can_have_are_wrong_proofs(gql: GraphQLClient, number: str) -> None:
    owner = await new_customer(gql)
    for kind, proof in (("enrollment", by_enrollment(number, "ENR-x")),
                        ("credentials", {"credentials": {"accountNumber": number, "email": owner.email,
                                                         "password": PASSWORD}})):
        response = await gql.post(LINK, {"input": {"headAccountId": owner.account.id, "kind": "MANAGEMENT", **proof}},
                                  token=owner.token)
        if number.startswith("ACC-"):  # no one can type it: refused before anything runs
            refused_at_the_edge(response, f"variables.input.{kind}.accountNumber")
            continue
        assert response.status_code == 200, response.text
        assert codes(response.json()["data"]["linkAccount"]) == ["INVALID_PROOF"]


@pytest.mark.parametrize("field", ["friendlyName", "groupName"])
@pytest.mark.parametrize("bad", [*UNTYPABLE, "tab\tbell\a"])
async def test_names_no_one_can_type_are_clear_errors(gql: GraphQLClient, engine: AsyncEngine, field: str, bad: str) -> None:
    owner = await new_customer(gql)
    member = await register(gql, owner.token)
    response = await gql.post(LINK, {"input": {
        "headAccountId": owner.account.id, "kind": "MANAGEMENT", field: bad,
        **by_enrollment(member.number, member.enrollment_token)}}, token=owner.token)
    if bad in UNTYPABLE:
        refused_at_the_edge(response, f"variables.input.{field}")
    else:  # typable, storable, but no name: a control character (the tab folds to a space)
        assert response.status_code == 200, response.text
        payload = response.json()["data"]["linkAccount"]
        assert [(error["code"], error["field"]) for error in payload["userErrors"]] == [("TEXT_INVALID", [field])]
    assert await link_rows(engine, member.number) == 0


# --- a proof stops proving the moment its secret changes (security review C) ------------------

ROTATE = """
mutation($input: RotateEnrollmentTokenInput!) {
  rotateEnrollmentToken(input: $input) { enrollmentToken userErrors { code } }
}
"""
CHANGE_PASSWORD = """
mutation($input: ChangePasswordInput!) { changePassword(input: $input) { token userErrors { code } } }
"""


def between_check_and_write(monkeypatch: pytest.MonkeyPatch, change: Any) -> None:
    """Runs ``change`` once, after ``linkAccount`` checked its proof and committed, just before
    the transaction that writes the link begins: what a replica sees when a rotation commits
    while its link waits for the head's row lock, without waiting for anything."""
    import resolvers.links

    real = resolvers.links.begin_write
    calls = 0

    async def begin_write(session: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:  # the first is the checking transaction
            await change()
        await real(session)

    monkeypatch.setattr(resolvers.links, "begin_write", begin_write)


async def test_a_token_rotated_while_a_link_is_in_flight_stops_it(
    gql: GraphQLClient, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    eve = await new_customer(gql, "Eve Ltd")
    olivia = await new_customer(gql, "Olivia Ltd")
    old = olivia.account.enrollment_token
    rotated: list[str] = []

    async def rotate() -> None:
        result = await gql.execute(ROTATE, {"input": {"accountId": olivia.account.id}},
                                   token=olivia.token)
        assert result["data"]["rotateEnrollmentToken"]["userErrors"] == [], result
        rotated.append(result["data"]["rotateEnrollmentToken"]["enrollmentToken"])

    between_check_and_write(monkeypatch, rotate)
    result = await link(gql, eve.token, eve.account.id, "MANAGEMENT",
                        by_enrollment(olivia.account.number, old))
    assert rotated, "the rotation did not run between the check and the write"
    payload = result["data"]["linkAccount"]
    assert codes(payload) == ["INVALID_PROOF"] and payload["linkGroup"] is None, result
    assert await link_rows(engine, olivia.account.number) == 0
    assert await link_rows(engine, eve.account.number) == 0  # no group was started either
    assert "link.created" not in await audit_actions(engine, eve.account.number)
    assert await link_mails(engine, olivia.email) == []

    monkeypatch.undo()
    again = await link(gql, eve.token, eve.account.id, "MANAGEMENT",
                       by_enrollment(olivia.account.number, old))
    assert codes(again["data"]["linkAccount"]) == ["INVALID_PROOF"]
    # The new token links as usual.
    fresh = await link(gql, eve.token, eve.account.id, "MANAGEMENT",
                       by_enrollment(olivia.account.number, rotated[0]))
    assert fresh["data"]["linkAccount"]["userErrors"] == [], fresh
    assert await link_rows(engine, olivia.account.number) == 1


async def test_a_password_changed_while_a_link_is_in_flight_stops_it(
    gql: GraphQLClient, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    eve = await new_customer(gql, "Eve Ltd")
    olivia = await new_customer(gql, "Olivia Ltd")
    changed: list[str] = []

    async def change_password() -> None:
        result = await gql.execute(CHANGE_PASSWORD, {"input": {
            "currentPassword": PASSWORD, "newPassword": "a brand new passphrase 42"}},
            token=olivia.token)
        assert result["data"]["changePassword"]["userErrors"] == [], result
        changed.append(result["data"]["changePassword"]["token"])

    between_check_and_write(monkeypatch, change_password)
    result = await link(gql, eve.token, eve.account.id, "BILLING",
                        by_credentials(olivia, olivia.account.number))
    assert changed
    assert codes(result["data"]["linkAccount"]) == ["INVALID_PROOF"], result
    assert await link_rows(engine, olivia.account.number) == 0
    assert await link_rows(engine, eve.account.number) == 0
    assert await link_mails(engine, olivia.email) == []


@pytest.mark.parametrize("method", ["OWNER_CREDENTIALS", "ENROLLMENT_TOKEN"])
async def test_the_linked_accounts_row_is_locked_while_the_link_is_written(
    gql: GraphQLClient, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    """The other half: once the proof is re-checked, a rotation (which locks the account's
    row) cannot commit before the link does. On PostgreSQL the row is seen locked from
    another connection; SQLite serialises every writer anyway (``begin_write``)."""
    import resolvers.links

    head_owner = await new_customer(gql, "Group HQ")
    other = await new_customer(gql, "Acquired Co")
    target_pk = decode_global_id(other.account.id)[1]
    real = resolvers.links._still_proven
    seen: list[bool] = []

    async def still_proven(*args: Any, **kwargs: Any) -> bool:
        proven = await real(*args, **kwargs)
        seen.append(proven)
        if engine.dialect.name == "postgresql":
            async with create_session_factory(engine)() as elsewhere:
                with pytest.raises(DBAPIError, match="could not obtain lock"):
                    await elsewhere.execute(
                        select(Account.id).where(Account.id == target_pk)
                        .with_for_update(key_share=True, nowait=True)
                    )
        return proven

    monkeypatch.setattr(resolvers.links, "_still_proven", still_proven)
    proof = (by_credentials(other, other.account.number) if method == "OWNER_CREDENTIALS"
             else by_enrollment(other.account.number, other.account.enrollment_token))
    result = await link(gql, head_owner.token, head_owner.account.id, "MANAGEMENT", proof)
    assert result["data"]["linkAccount"]["userErrors"] == [], result
    assert seen == [True]
    assert await link_rows(engine, other.account.number) == 1
