"""Sessions over HTTP: short access tokens, rotating refresh tokens with theft detection,
and logout that holds on every replica (two apps on one database stand in for replicas)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from linkgate.app import create_app
from models.database import create_session_factory
from models.identity import UserSession
from tests.conftest import GraphQLClient, client_for, refused_at_the_edge
from tests.customers import PASSWORD, new_customer

LOGIN = """
mutation($input: LoginInput!) {
  login(input: $input) { token expiresAt refreshToken viewer { user { email } } userErrors { code } }
}
"""
REFRESH = """
mutation($input: RefreshSessionInput!) {
  refreshSession(input: $input) { token expiresAt refreshToken viewer { user { email } } userErrors { code } }
}
"""
LOGOUT = "mutation($input: LogoutInput) { logout(input: $input) { ok } }"
WHO = "{ viewer { user { email } } }"


async def sign_in(client: GraphQLClient, email: str) -> dict[str, Any]:
    payload = (await client.execute(LOGIN, {"input": {"email": email, "password": PASSWORD}}))["data"]["login"]
    assert payload["userErrors"] == [], payload
    return payload


async def refresh(client: GraphQLClient, refresh_token: str) -> dict[str, Any]:
    return (await client.execute(REFRESH, {"input": {"refreshToken": refresh_token}}))["data"]["refreshSession"]


async def works(client: GraphQLClient, token: str) -> bool:
    response = await client.post(WHO, token=token)
    if response.status_code == 401:
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        return False
    assert response.status_code == 200, response.text
    return response.json()["data"]["viewer"] is not None


async def test_login_returns_a_short_access_token_and_a_refresh_token(gql: GraphQLClient) -> None:
    owner = await new_customer(gql)
    session = await sign_in(gql, owner.email)
    expires_at = datetime.fromisoformat(session["expiresAt"])
    left = expires_at - datetime.now(timezone.utc)
    assert timedelta(minutes=14) < left <= timedelta(minutes=15)  # LINKGATE_TOKEN_TTL_SECONDS
    assert session["refreshToken"].startswith("lgr_")
    assert await works(gql, session["token"])


async def test_refresh_tokens_rotate_and_a_replayed_one_ends_the_session(gql: GraphQLClient) -> None:
    owner = await new_customer(gql)
    first = await sign_in(gql, owner.email)
    second = await refresh(gql, first["refreshToken"])
    assert second["userErrors"] == [] and second["viewer"]["user"]["email"] == owner.email
    assert second["refreshToken"] != first["refreshToken"] and await works(gql, second["token"])
    third = await refresh(gql, second["refreshToken"])
    assert third["userErrors"] == [] and await works(gql, third["token"])
    # The first refresh token again: someone kept a copy. The whole session ends, for the
    # thief and for the rightful holder alike.
    replayed = await refresh(gql, first["refreshToken"])
    assert replayed["token"] is None and replayed["userErrors"] == [{"code": "INVALID_TOKEN"}]
    assert not await works(gql, third["token"])
    assert (await refresh(gql, third["refreshToken"]))["userErrors"] == [{"code": "INVALID_TOKEN"}]
    # Other sessions of the same login are not touched.
    other = await sign_in(gql, owner.email)
    assert await works(gql, other["token"])


async def test_two_replicas_racing_with_one_refresh_token(
    settings: Any, engine: AsyncEngine, gql: GraphQLClient
) -> None:
    """Two replicas get the same refresh token at once: at most one answers with new tokens,
    and the session is revoked, since two parties held one token."""
    owner = await new_customer(gql)
    session = await sign_in(gql, owner.email)
    replicas = [create_app(settings, engine=engine) for _ in range(2)]
    async with client_for(replicas[0]) as one, client_for(replicas[1]) as two:
        results = await asyncio.gather(
            refresh(GraphQLClient(one), session["refreshToken"]),
            refresh(GraphQLClient(two), session["refreshToken"]),
        )
        winners = [result for result in results if result["token"]]
        assert len(winners) <= 1, results
        assert sorted(str(result["userErrors"]) for result in results if not result["token"]) == \
            ["[{'code': 'INVALID_TOKEN'}]"] * (2 - len(winners))
        for winner in winners:
            assert not await works(GraphQLClient(one), winner["token"])
            assert (await refresh(GraphQLClient(two), winner["refreshToken"]))["token"] is None


async def test_logout_ends_this_session_on_every_replica(
    settings: Any, engine: AsyncEngine, gql: GraphQLClient
) -> None:
    owner = await new_customer(gql)
    laptop, phone = await sign_in(gql, owner.email), await sign_in(gql, owner.email)
    other_replica = create_app(settings, engine=engine)
    async with client_for(other_replica) as http:
        elsewhere = GraphQLClient(http)
        assert (await gql.execute(LOGOUT, {"input": {"everywhere": False}}, token=laptop["token"])) == \
            {"data": {"logout": {"ok": True}}}
        assert not await works(elsewhere, laptop["token"])
        assert (await refresh(elsewhere, laptop["refreshToken"]))["token"] is None
        assert await works(elsewhere, phone["token"])
        await gql.execute(LOGOUT, {"input": {"everywhere": True}}, token=phone["token"])
        assert not await works(elsewhere, phone["token"])
        assert (await refresh(elsewhere, phone["refreshToken"]))["token"] is None
    assert await works(gql, (await sign_in(gql, owner.email))["token"])


async def test_logout_everywhere_ends_all_sessions(gql: GraphQLClient) -> None:
    owner = await new_customer(gql)
    sessions = [await sign_in(gql, owner.email) for _ in range(3)]
    await gql.execute(LOGOUT, {"input": {"everywhere": True}}, token=sessions[0]["token"])
    for session in sessions:
        assert not await works(gql, session["token"])
        assert (await refresh(gql, session["refreshToken"]))["token"] is None
    assert not await works(gql, owner.token)  # the sign-up's own session too


async def test_logout_needs_a_signed_in_caller(gql: GraphQLClient) -> None:
    result = await gql.execute(LOGOUT)
    assert result["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_tokens_of_one_kind_are_never_accepted_as_another(gql: GraphQLClient) -> None:
    owner = await new_customer(gql)
    session = await sign_in(gql, owner.email)
    # A refresh token as a bearer token, and an access token as a refresh token.
    assert not await works(gql, session["refreshToken"])
    assert (await refresh(gql, session["token"]))["userErrors"] == [{"code": "INVALID_TOKEN"}]
    # Neither attempt spent or ended anything.
    assert await works(gql, session["token"])
    assert (await refresh(gql, session["refreshToken"]))["userErrors"] == []


async def test_an_expired_session_cannot_be_refreshed(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    session = await sign_in(gql, owner.email)
    async with create_session_factory(engine)() as db:
        await db.execute(update(UserSession).where(UserSession.user_id == await _user_id(gql, session))
                         .values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
        await db.commit()
    assert (await refresh(gql, session["refreshToken"]))["userErrors"] == [{"code": "INVALID_TOKEN"}]
    assert not await works(gql, session["token"])


async def _user_id(gql: GraphQLClient, session: dict[str, Any]) -> int:
    import jwt

    return int(jwt.decode(session["token"], options={"verify_signature": False})["sub"])


@pytest.mark.parametrize("token", ["", "lgr_", "\u0000", "\ud800", "x" * 50_000, "lgr_" + "A" * 43])
async def test_bad_refresh_tokens_are_refused_cleanly(gql: GraphQLClient, token: str) -> None:
    response = await gql.post(REFRESH, {"input": {"refreshToken": token}})
    if token in ("\u0000", "\ud800"):
        refused_at_the_edge(response, "variables.input.refreshToken")
        return
    assert response.status_code == 200, response.text
    assert response.json()["data"]["refreshSession"]["userErrors"] == [{"code": "INVALID_TOKEN"}]



async def test_a_batch_may_not_hold_mutations(gql: GraphQLClient) -> None:
    """A batch's operations share the request's one transaction and run at once: a failing
    sibling's rollback would undo a spent refresh token (theft detection) or a counted wrong
    password (the throttle). Batches with a mutation are refused before anything runs."""
    owner = await new_customer(gql)
    session = await sign_in(gql, owner.email)
    batch = [
        {"query": "mutation($e: String!) { requestPasswordReset(input: {email: $e}) { ok } }",
         "variables": {"e": "nobody@example.com"}},
        {"query": REFRESH, "variables": {"input": {"refreshToken": session["refreshToken"]}}},
    ]
    response = await gql.http.post("/graphql", json=batch)
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # Nothing ran: the refresh token is still unspent, and works exactly once.
    assert (await refresh(gql, session["refreshToken"]))["userErrors"] == []
    assert (await refresh(gql, session["refreshToken"]))["userErrors"] == [{"code": "INVALID_TOKEN"}]
    # Queries still batch.
    queries = [{"query": WHO}, {"query": WHO}]
    answered = await gql.http.post("/graphql", json=queries, headers={"authorization": f"Bearer {owner.token}"})
    assert answered.status_code == 200 and len(answered.json()) == 2
