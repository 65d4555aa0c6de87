"""Forgotten passwords over HTTP: the same answer for any email, a single-use 30-minute link,
and a reset that ends every session."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from models.database import create_session_factory
from models.identity import EmailedLink
from tests.conftest import UNTYPABLE, GraphQLClient, refused_at_the_edge
from tests.customers import PASSWORD, emailed_token, new_customer, unique_email

REQUEST = "mutation($input: RequestPasswordResetInput!) { requestPasswordReset(input: $input) { ok } }"
RESET = """
mutation($input: ResetPasswordInput!) { resetPassword(input: $input) { ok userErrors { field code } } }
"""
LOGIN = """
mutation($input: LoginInput!) { login(input: $input) { token refreshToken userErrors { code } } }
"""
REFRESH = """
mutation($input: RefreshSessionInput!) { refreshSession(input: $input) { token userErrors { code } } }
"""


async def request_reset(gql: GraphQLClient, email: str) -> dict[str, Any]:
    return await gql.execute(REQUEST, {"input": {"email": email}})


async def reset(gql: GraphQLClient, token: str, password: str) -> dict[str, Any]:
    return (await gql.execute(RESET, {"input": {"token": token, "password": password}}))["data"]["resetPassword"]


async def login(gql: GraphQLClient, email: str, password: str) -> dict[str, Any]:
    return (await gql.execute(LOGIN, {"input": {"email": email, "password": password}}))["data"]["login"]


async def test_a_reset_link_sets_the_password_once_and_ends_every_session(gql: GraphQLClient) -> None:
    owner = await new_customer(gql)
    signed_in = await login(gql, owner.email, PASSWORD)
    assert await request_reset(gql, owner.email.upper()) == {"data": {"requestPasswordReset": {"ok": True}}}
    token = await emailed_token(gql.engine, owner.email, "reset-password")
    assert token and token.startswith("lgp_")
    assert await reset(gql, token, "a brand new password") == {"ok": True, "userErrors": []}
    assert (await login(gql, owner.email, PASSWORD))["userErrors"] == [{"code": "INVALID_CREDENTIALS"}]
    assert (await login(gql, owner.email, "a brand new password"))["token"]
    for old in (owner.token, signed_in["token"]):
        response = await gql.post("{ viewer { user { email } } }", token=old)
        assert response.status_code == 401
    refreshed = await gql.execute(REFRESH, {"input": {"refreshToken": signed_in["refreshToken"]}})
    assert refreshed["data"]["refreshSession"]["userErrors"] == [{"code": "INVALID_TOKEN"}]
    again = await reset(gql, token, "yet another password")
    assert again == {"ok": False, "userErrors": [{"field": ["token"], "code": "INVALID_TOKEN"}]}
    assert (await login(gql, owner.email, "a brand new password"))["token"]


async def test_an_unknown_email_gets_the_same_answer_and_no_mail(gql: GraphQLClient) -> None:
    email = unique_email()
    assert await request_reset(gql, email) == {"data": {"requestPasswordReset": {"ok": True}}}
    assert await emailed_token(gql.engine, email, "reset-password") is None
    for garbage in ("", "not-an-email", "x" * 50_000):
        assert await request_reset(gql, garbage) == {"data": {"requestPasswordReset": {"ok": True}}}
    for untypable in ("\u0000@x.example", "\ud800"):  # refused alike for every address
        refused_at_the_edge(await gql.post(REQUEST, {"input": {"email": untypable}}), "variables.input.email")


async def test_every_link_dies_with_the_reset(gql: GraphQLClient) -> None:
    owner = await new_customer(gql)
    tokens = []
    for _ in range(2):
        await request_reset(gql, owner.email)
        tokens.append(await emailed_token(gql.engine, owner.email, "reset-password"))
    assert tokens[0] != tokens[1]
    assert (await reset(gql, tokens[1], "the second link wins"))["ok"]
    assert (await reset(gql, tokens[0], "the first link is dead"))["userErrors"][0]["code"] == "INVALID_TOKEN"


async def test_mail_to_one_address_is_capped(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    for _ in range(5):
        assert (await request_reset(gql, owner.email))["data"]["requestPasswordReset"]["ok"]
    from sqlalchemy import func, select

    async with create_session_factory(engine)() as session:
        links = await session.scalar(select(func.count()).select_from(EmailedLink).where(
            EmailedLink.email == owner.email, EmailedLink.purpose == "PASSWORD_RESET"))
    assert links == 3


async def test_expired_tampered_and_foreign_tokens_change_nothing(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    await request_reset(gql, owner.email)
    token = await emailed_token(gql.engine, owner.email, "reset-password")
    assert token
    session = await login(gql, owner.email, PASSWORD)
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    foreign = [tampered, session["refreshToken"], session["token"], owner.account.enrollment_token,
               "lgs_" + token[4:], "", "x" * 50_000]
    for bad in foreign:
        result = await reset(gql, bad, "someone else's password")
        assert result["ok"] is False and result["userErrors"][0]["code"] == "INVALID_TOKEN", bad
    for untypable in UNTYPABLE:
        response = await gql.post(RESET, {"input": {"token": untypable, "password": "someone else's password"}})
        refused_at_the_edge(response, "variables.input.token")
    async with create_session_factory(engine)() as db:
        await db.execute(update(EmailedLink).where(EmailedLink.email == owner.email)
                         .values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
        await db.commit()
    assert (await reset(gql, token, "too late for this"))["userErrors"][0]["code"] == "INVALID_TOKEN"
    assert (await login(gql, owner.email, PASSWORD))["token"]


@pytest.mark.parametrize(("password", "code"), [("short", "PASSWORD_TOO_SHORT"), ("x" * 300, "PASSWORD_TOO_LONG")])
async def test_a_weak_password_leaves_the_link_usable(gql: GraphQLClient, password: str, code: str) -> None:
    owner = await new_customer(gql)
    await request_reset(gql, owner.email)
    token = await emailed_token(gql.engine, owner.email, "reset-password")
    assert token
    assert (await reset(gql, token, password))["userErrors"] == [{"field": ["password"], "code": code}]
    assert (await reset(gql, token, "long enough now"))["ok"]


async def test_one_client_cannot_flood_mailboxes_nor_use_up_an_address(
    settings: Any, engine: AsyncEngine, gql: GraphQLClient
) -> None:
    from linkgate.app import create_app
    from tests.conftest import client_for

    owners = [await new_customer(gql) for _ in range(4)]
    app = create_app(settings.model_copy(update={"mail_links_per_client": 3}), engine=engine)
    async with client_for(app, "10.14.0.1") as http:
        flooder = GraphQLClient(http)
        for owner in owners:  # all four answered alike; only three mails go out
            assert (await request_reset(flooder, owner.email))["data"]["requestPasswordReset"]["ok"]
        for _ in range(3):  # and the first owner's address is used up from here...
            await request_reset(flooder, owners[0].email)
    sent = [await emailed_token(engine, owner.email, "reset-password") for owner in owners]
    assert [token is not None for token in sent] == [True, True, True, False]
    async with client_for(app, "10.14.0.2") as http:  # ...not from the owner's own desk
        await request_reset(GraphQLClient(http), owners[0].email)
    assert await emailed_token(engine, owners[0].email, "reset-password") != sent[0]


async def test_parallel_requests_cannot_race_past_the_mail_caps(
    settings: Any, engine: AsyncEngine, gql: GraphQLClient
) -> None:
    import asyncio

    from linkgate.app import create_app
    from tests.conftest import client_for

    owner = await new_customer(gql)
    replicas = [create_app(settings.model_copy(update={"mail_links_per_client": 20}), engine=engine)
                for _ in range(2)]
    async with client_for(replicas[0], "10.16.0.1") as one, client_for(replicas[1], "10.16.0.1") as two:
        answers = await asyncio.gather(*(
            request_reset(GraphQLClient(http), owner.email) for http in [one, two] * 15
        ))
    assert all(answer["data"]["requestPasswordReset"]["ok"] for answer in answers)
    from sqlalchemy import func, select

    async with create_session_factory(engine)() as session:
        links = await session.scalar(select(func.count()).select_from(EmailedLink).where(
            EmailedLink.email == owner.email, EmailedLink.purpose == "PASSWORD_RESET"))
    assert links == 3  # RESET_MAILS_PER_ADDRESS, however many arrive at once
