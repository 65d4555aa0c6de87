"""Enrollment tokens: derived (so invoices can print them), rotatable, and the old one dead at
once (issue 13, part 5)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.enrollment import (
    enrollment_key, enrollment_token, enrollment_token_matches, hash_enrollment_token,
)
from models.accounts import Account
from models.database import create_session_factory
from tests.conftest import TEST_SECRET, GraphQLClient
from tests.customers import audit_actions, new_customer, new_sub_account, pk, register
from tests.test_links import by_enrollment, codes, link

ROTATE = """
mutation($input: RotateEnrollmentTokenInput!) {
  rotateEnrollmentToken(input: $input) { enrollmentToken userErrors { code } }
}
"""
TOKEN_OF = "query($n: String!) { viewer { account(number: $n) { enrollmentToken } } }"
KEY = enrollment_key(TEST_SECRET)


def test_tokens_are_derived_typeable_and_forgiving_to_type() -> None:
    token = enrollment_token(KEY, 42, 1)
    assert token == enrollment_token(KEY, 42, 1)  # printable again on any invoice, any day
    assert token.startswith("ENR-") and len(token) == 23 and token.count("-") == 4
    assert not set(token.removeprefix("ENR-").replace("-", "")) & set("ILOU")
    assert len({enrollment_token(KEY, 42, v) for v in range(1, 50)}) == 49
    assert enrollment_token(KEY, 43, 1) != token
    assert enrollment_token(enrollment_key("another secret key, also long enough!"), 42, 1) != token
    for typed in (token, token.lower(), f"  {token.replace('-', ' ')} \n", token.replace("-", "")):
        assert enrollment_token_matches(typed, key=KEY, account_id=42, version=1), typed
    body = token.removeprefix("ENR-")
    wrong = "ENR-" + ("1" if body[0] != "1" else "2") + body[1:]
    assert not enrollment_token_matches(wrong, key=KEY, account_id=42, version=1)
    assert not enrollment_token_matches(token, key=KEY, account_id=42, version=2)
    assert not enrollment_token_matches(token, key=KEY, account_id=41, version=1)
    assert not enrollment_token_matches("", key=KEY, account_id=42, version=1)
    with pytest.raises(ValueError):
        enrollment_token(b"", 42, 1)


async def rotate(gql: GraphQLClient, token: str, account_id: str) -> dict[str, Any]:
    return await gql.execute(ROTATE, {"input": {"accountId": account_id}}, token=token)


async def test_rotating_kills_the_old_token_at_once(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql, "Rotating Head Ltd")
    member = await register(gql, owner.token, "Rotating Branch")
    shown = await gql.execute(TOKEN_OF, {"n": member.number}, token=owner.token)
    assert shown["data"]["viewer"]["account"]["enrollmentToken"] == member.enrollment_token

    rotated = (await rotate(gql, owner.token, member.id))["data"]["rotateEnrollmentToken"]
    new = rotated["enrollmentToken"]
    assert rotated["userErrors"] == [] and new and new != member.enrollment_token
    shown = await gql.execute(TOKEN_OF, {"n": member.number}, token=owner.token)
    assert shown["data"]["viewer"]["account"]["enrollmentToken"] == new
    old_proof = await link(gql, owner.token, owner.account.id, "MANAGEMENT",
                           by_enrollment(member.number, member.enrollment_token))
    assert codes(old_proof["data"]["linkAccount"]) == ["INVALID_PROOF"]
    new_proof = await link(gql, owner.token, owner.account.id, "MANAGEMENT", by_enrollment(member.number, new))
    assert new_proof["data"]["linkAccount"]["userErrors"] == []
    assert "enrollment_token.rotated" in await audit_actions(engine, member.number)


async def test_a_token_made_before_derivation_works_until_the_first_rotation(
    gql: GraphQLClient, engine: AsyncEngine
) -> None:
    owner = await new_customer(gql, "Legacy Head Ltd")
    member = await register(gql, owner.token, "Legacy Branch")
    legacy = "ENR-legacyRandomToken1"
    async with create_session_factory(engine)() as session:
        await session.execute(update(Account).where(Account.id == pk(member.id))
                              .values(enrollment_token_hash=hash_enrollment_token(legacy)))
        await session.commit()
    other = await register(gql, owner.token, "Legacy Other Head")
    works = await link(gql, owner.token, other.id, "MANAGEMENT", by_enrollment(member.number, legacy))
    assert works["data"]["linkAccount"]["userErrors"] == []
    await rotate(gql, owner.token, member.id)
    dead = await link(gql, owner.token, owner.account.id, "BILLING", by_enrollment(member.number, legacy))
    assert codes(dead["data"]["linkAccount"]) == ["INVALID_PROOF"]


async def test_who_may_see_and_rotate_the_token(gql: GraphQLClient, tokens: dict[str, str]) -> None:
    owner = await new_customer(gql, "Guarded Token Ltd")
    manager = await new_sub_account(gql, owner.token, owner.account.id, ["LINKS_MANAGE"])
    billing = await new_sub_account(gql, owner.token, owner.account.id, ["INVOICES_READ", "BILLING_MANAGE"])
    stranger = await new_customer(gql, "Token Thief Ltd")

    seen = await gql.execute(TOKEN_OF, {"n": owner.account.number}, token=manager.token)
    assert seen["data"]["viewer"]["account"]["enrollmentToken"] == owner.account.enrollment_token
    hidden = await gql.execute(TOKEN_OF, {"n": owner.account.number}, token=billing.token)
    assert hidden["data"]["viewer"]["account"]["enrollmentToken"] is None
    assert hidden["errors"][0]["extensions"] == {"code": "FORBIDDEN", "permission": "LINKS_MANAGE"}
    assert (await gql.execute(TOKEN_OF, {"n": owner.account.number}, token=stranger.token))[
        "data"]["viewer"]["account"] is None

    refused = await rotate(gql, billing.token, owner.account.id)
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert (await rotate(gql, stranger.token, owner.account.id))["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    forged = await gql.post(ROTATE, {"input": {"accountId": owner.account.id}}, token=owner.token[:-3] + "xyz")
    assert forged.status_code == 401 and forged.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    # Support staff hold no LINKS_MANAGE; nothing changed after the refusals.
    assert (await rotate(gql, tokens["agent"], owner.account.id))["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    still = await gql.execute(TOKEN_OF, {"n": owner.account.number}, token=owner.token)
    assert still["data"]["viewer"]["account"]["enrollmentToken"] == owner.account.enrollment_token
    # The manager may rotate it.
    assert (await rotate(gql, manager.token, owner.account.id))["data"]["rotateEnrollmentToken"]["enrollmentToken"]
