"""Sign-up, sign-in, throttling and tokens, over HTTP."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta
from typing import Any

import jwt
import pytest

from auth.tokens import TokenSettings, issue_token
from tests.conftest import TEST_SECRET, GraphQLClient, client_for

SIGN_UP = """
mutation($input: SignUpInput!) {
  signUp(input: $input) {
    token enrollmentToken
    account { number name viewerIsOwner viewerPermissions }
    viewer { user { email name } }
    userErrors { field message code }
  }
}
"""
LOGIN = "mutation($input: LoginInput!) { login(input: $input) { token userErrors { code message } } }"
CHANGE_PASSWORD = """
mutation($input: ChangePasswordInput!) { changePassword(input: $input) { token userErrors { code } } }
"""
WHO = "{ viewer { user { email } } }"


def unique_email() -> str:
    return f"user-{uuid.uuid4().hex[:10]}@example.com"


async def sign_up(gql: GraphQLClient, **overrides: str) -> dict[str, Any]:
    values = {
        "email": unique_email(), "password": "correct horse battery", "name": "Ada Lovelace",
        "accountName": "Analytical Engines", **overrides,
    }
    result = await gql.execute(SIGN_UP, {"input": values})
    return result["data"]["signUp"]


async def test_sign_up_creates_an_owned_account_and_signs_in(gql: GraphQLClient) -> None:
    email = unique_email().upper()
    payload = await sign_up(gql, email=email)
    assert payload["userErrors"] == []
    assert payload["account"]["name"] == "Analytical Engines"
    assert payload["account"]["number"].startswith("ACC-")
    assert payload["account"]["viewerIsOwner"] is True
    assert "LINKS_MANAGE" in payload["account"]["viewerPermissions"]
    assert payload["enrollmentToken"].startswith("ENR-")
    assert payload["viewer"]["user"]["email"] == email.lower()
    me = await gql.execute(
        "{ viewer { accounts { edges { node { number } } } } }", token=payload["token"]
    )
    numbers = [edge["node"]["number"] for edge in me["data"]["viewer"]["accounts"]["edges"]]
    assert numbers == [payload["account"]["number"]]


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"email": "not-an-email"}, "INVALID_EMAIL", "email"),
        ({"password": "short"}, "PASSWORD_TOO_SHORT", "password"),
        ({"accountName": "   "}, "NAME_EMPTY", "accountName"),
        ({"accountName": "x" * 51}, "NAME_TOO_LONG", "accountName"),
        ({"name": ""}, "NAME_EMPTY", "name"),
    ],
)
async def test_sign_up_rejects_bad_input(
    gql: GraphQLClient, overrides: dict[str, str], code: str, field: str
) -> None:
    payload = await sign_up(gql, **overrides)
    assert payload["token"] is None and payload["account"] is None
    assert [(error["code"], error["field"]) for error in payload["userErrors"]] == [(code, [field])]


async def test_sign_up_trims_the_account_name(gql: GraphQLClient) -> None:
    payload = await sign_up(gql, accountName="  " + "y" * 50 + "   ")
    assert payload["account"]["name"] == "y" * 50


async def test_email_is_unique_case_insensitively(gql: GraphQLClient) -> None:
    email = unique_email()
    await sign_up(gql, email=email)
    again = await sign_up(gql, email=email.upper())
    assert [error["code"] for error in again["userErrors"]] == ["EMAIL_TAKEN"]


async def test_wrong_password_and_unknown_email_read_the_same(gql: GraphQLClient) -> None:
    async with client_for(gql.http._transport.app, "10.1.0.1") as http:  # type: ignore[attr-defined]
        client = GraphQLClient(http)
        wrong = await client.execute(LOGIN, {"input": {"email": "olivia@northwind.example", "password": "nope-nope"}})
        unknown = await client.execute(LOGIN, {"input": {"email": unique_email(), "password": "nope-nope"}})
    assert wrong["data"]["login"] == unknown["data"]["login"]
    assert wrong["data"]["login"]["userErrors"][0]["code"] == "INVALID_CREDENTIALS"


async def test_failed_logins_are_throttled_per_email_even_for_the_right_password(app: Any) -> None:
    async with client_for(app, "10.2.0.1") as http:
        gql = GraphQLClient(http)
        email = unique_email()
        await sign_up(gql, email=email, password="the-right-password")
        for _ in range(5):
            result = await gql.execute(LOGIN, {"input": {"email": email, "password": "wrong-password"}})
            assert result["data"]["login"]["userErrors"][0]["code"] == "INVALID_CREDENTIALS"
    # Another client address: the email's own bucket still blocks it.
    async with client_for(app, "10.2.0.2") as http:
        result = await GraphQLClient(http).execute(
            LOGIN, {"input": {"email": email, "password": "the-right-password"}}
        )
    assert result["data"] is None or result["data"]["login"] is None
    error = result["errors"][0]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert 0 < error["extensions"]["retryAfter"] <= 900


async def test_failed_logins_are_throttled_per_client(app: Any) -> None:
    async with client_for(app, "10.3.0.1") as http:
        gql = GraphQLClient(http)
        for _ in range(5):
            await gql.execute(LOGIN, {"input": {"email": unique_email(), "password": "whatever-1"}})
        result = await gql.execute(
            LOGIN, {"input": {"email": "olivia@northwind.example", "password": "demo-password"}}
        )
    assert result["errors"][0]["extensions"]["code"] == "RATE_LIMITED"


async def test_a_good_login_resets_the_email_counter(app: Any) -> None:
    async with client_for(app, "10.4.0.1") as http:
        gql = GraphQLClient(http)
        email = unique_email()
        await sign_up(gql, email=email, password="the-right-password")
    for round_ in range(2):
        async with client_for(app, f"10.4.1.{round_}") as http:
            gql = GraphQLClient(http)
            for _ in range(4):
                await gql.execute(LOGIN, {"input": {"email": email, "password": "wrong-password"}})
            ok = await gql.execute(LOGIN, {"input": {"email": email, "password": "the-right-password"}})
            assert ok["data"]["login"]["token"], ok


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


async def _status_and_code(gql: GraphQLClient, token: str) -> tuple[int, str]:
    response = await gql.post(WHO, token=token)
    return response.status_code, response.json()["errors"][0]["extensions"]["code"]


async def test_bad_tokens_are_unauthenticated(gql: GraphQLClient, tokens: dict[str, str]) -> None:
    good = tokens["olivia"]
    header, payload, signature = good.split(".")
    claims = jwt.decode(good, options={"verify_signature": False})
    forged = [
        "garbage",
        f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        f"{header}.{_b64({**claims, 'sub': '1'})}.{signature}",
        jwt.encode(claims, "another-key-that-is-also-long-enough-000", algorithm="HS256"),
        issue_token(user_id=int(claims["sub"]), token_version=1, secret=TEST_SECRET,
                    issuer="somebody-else", ttl=timedelta(hours=1)),
        issue_token(user_id=int(claims["sub"]), token_version=1, secret=TEST_SECRET,
                    issuer="linkgate", ttl=timedelta(seconds=-10)),
        TokenSettings(secret=TEST_SECRET).issue(user_id=999_999_999, token_version=1),
    ]
    for token in forged:
        assert await _status_and_code(gql, token) == (401, "UNAUTHENTICATED"), token
    ok = await gql.execute(WHO, token=good)
    assert ok["data"]["viewer"]["user"]["email"] == "olivia@northwind.example"


async def test_password_change_revokes_earlier_tokens(gql: GraphQLClient) -> None:
    email = unique_email()
    payload = await sign_up(gql, email=email, password="first-password")
    old_token = payload["token"]
    changed = await gql.execute(
        CHANGE_PASSWORD,
        {"input": {"currentPassword": "first-password", "newPassword": "second-password"}},
        token=old_token,
    )
    new_token = changed["data"]["changePassword"]["token"]
    assert new_token and changed["data"]["changePassword"]["userErrors"] == []
    assert await _status_and_code(gql, old_token) == (401, "UNAUTHENTICATED")
    me = await gql.execute(WHO, token=new_token)
    assert me["data"]["viewer"]["user"]["email"] == email
    relogin = await gql.execute(LOGIN, {"input": {"email": email, "password": "second-password"}})
    assert relogin["data"]["login"]["token"]


async def test_change_password_checks_the_current_one(gql: GraphQLClient) -> None:
    payload = await sign_up(gql, password="first-password")
    wrong = await gql.execute(
        CHANGE_PASSWORD,
        {"input": {"currentPassword": "not-it-at-all", "newPassword": "second-password"}},
        token=payload["token"],
    )
    assert wrong["data"]["changePassword"]["userErrors"] == [{"code": "INVALID_CREDENTIALS"}]
    anonymous = await gql.execute(
        CHANGE_PASSWORD, {"input": {"currentPassword": "a" * 8, "newPassword": "b" * 8}}
    )
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
