"""Sign-up (by emailed link), sign-in, throttling that cannot be turned against users, and
tokens, over HTTP."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import jwt
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.tokens import TokenSettings, issue_token
from linkgate.app import create_app
from linkgate.client_address import client_address
from models.database import create_session_factory
from models.notifications import Notification
from models.users import User
from tests.conftest import TEST_SECRET, UNTYPABLE, GraphQLClient, client_for, refused_at_the_edge
from tests.customers import (
    CONFIRM_SIGN_UP, PASSWORD, SIGN_UP, emailed_token, new_customer, sign_up_and_confirm,
    unique_email,
)

LOGIN = "mutation($input: LoginInput!) { login(input: $input) { token userErrors { code message } } }"
CHANGE_PASSWORD = """
mutation($input: ChangePasswordInput!) { changePassword(input: $input) { token refreshToken userErrors { code } } }
"""
REFRESH = """
mutation($input: RefreshSessionInput!) { refreshSession(input: $input) { token userErrors { code } } }
"""
WHO = "{ viewer { user { email } } }"


async def login(client: GraphQLClient, email: str, password: str) -> dict[str, Any]:
    return await client.execute(LOGIN, {"input": {"email": email, "password": password}})


def code_of(result: dict[str, Any]) -> str:
    """The login's outcome: RATE_LIMITED, a userError code, or OK."""
    if result.get("errors"):
        return result["errors"][0]["extensions"]["code"]
    payload = result["data"]["login"]
    return payload["userErrors"][0]["code"] if payload["userErrors"] else "OK"


def app_with(settings: Any, engine: AsyncEngine, **changes: Any) -> Any:
    """Another app on the same database, with some settings changed."""
    return create_app(settings.model_copy(update=changes), engine=engine)


async def mails_to(engine: AsyncEngine, recipient: str) -> list[Notification]:
    async with create_session_factory(engine)() as session:
        return list(await session.scalars(
            select(Notification).where(Notification.recipient == recipient.lower()).order_by(Notification.id)
        ))


# --- signing up ---------------------------------------------------------------------------

async def test_sign_up_emails_a_link_that_creates_the_login_and_account_once(gql: GraphQLClient) -> None:
    email = unique_email().upper()
    answer = await gql.execute(SIGN_UP, {"input": {
        "email": email, "password": PASSWORD, "name": "Ada Lovelace", "accountName": "Analytical Engines",
    }})
    assert answer["data"]["signUp"] == {"ok": True, "userErrors": []}
    # Nothing exists until the link is followed.
    assert code_of(await login(gql, email, PASSWORD)) == "INVALID_CREDENTIALS"
    token = await emailed_token(gql.engine, email, "confirm-sign-up")
    assert token and token.startswith("lgs_")
    confirmed = (await gql.execute(CONFIRM_SIGN_UP, {"input": {"token": token, "password": PASSWORD}}))["data"]["confirmSignUp"]
    assert confirmed["userErrors"] == []
    assert confirmed["account"]["name"] == "Analytical Engines"
    assert confirmed["account"]["number"].startswith("ACC-")
    assert confirmed["enrollmentToken"].startswith("ENR-")
    assert confirmed["viewer"]["user"]["email"] == email.lower()
    assert confirmed["refreshToken"].startswith("lgr_") and confirmed["expiresAt"]
    me = await gql.execute("{ viewer { accounts { edges { node { number viewerIsOwner } } } } }",
                           token=confirmed["token"])
    assert [edge["node"] for edge in me["data"]["viewer"]["accounts"]["edges"]] == [
        {"number": confirmed["account"]["number"], "viewerIsOwner": True}]
    again = (await gql.execute(CONFIRM_SIGN_UP, {"input": {"token": token, "password": PASSWORD}}))["data"]["confirmSignUp"]
    assert again["token"] is None and [e["code"] for e in again["userErrors"]] == ["INVALID_TOKEN"]
    assert code_of(await login(gql, email, PASSWORD)) == "OK"


async def test_signing_up_with_a_taken_email_answers_the_same_and_tells_the_owner(
    gql: GraphQLClient, engine: AsyncEngine
) -> None:
    owner = await new_customer(gql)
    fresh = unique_email()
    values = {"password": "attacker-password", "name": "Mallory", "accountName": "Takeover Ltd"}
    taken = await gql.execute(SIGN_UP, {"input": {"email": owner.email.upper(), **values}})
    new = await gql.execute(SIGN_UP, {"input": {"email": fresh, **values}})
    assert taken == new == {"data": {"signUp": {"ok": True, "userErrors": []}}}
    # The owner is told, with no link that could do anything; the password stays theirs.
    last = (await mails_to(engine, owner.email))[-1]
    assert last.subject == "Someone tried to sign up with your email"
    assert "#token=" not in last.body and last.account_id is None
    assert code_of(await login(gql, owner.email, "attacker-password")) == "INVALID_CREDENTIALS"
    assert code_of(await login(gql, owner.email, PASSWORD)) == "OK"


@pytest.mark.parametrize(
    ("overrides", "code", "field"),
    [
        ({"email": "not-an-email"}, "INVALID_EMAIL", "email"),
        ({"password": "short"}, "PASSWORD_TOO_SHORT", "password"),
        ({"password": "x" * 50_000}, "PASSWORD_TOO_LONG", "password"),
        ({"accountName": "   "}, "NAME_EMPTY", "accountName"),
        ({"accountName": "x" * 51}, "NAME_TOO_LONG", "accountName"),
        ({"name": ""}, "NAME_EMPTY", "name"),
    ],
)
async def test_sign_up_rejects_bad_input(
    gql: GraphQLClient, overrides: dict[str, str], code: str, field: str
) -> None:
    values = {"email": unique_email(), "password": PASSWORD, "name": "Ada", "accountName": "Engines",
              **overrides}
    payload = (await gql.execute(SIGN_UP, {"input": values}))["data"]["signUp"]
    assert payload["ok"] is False
    assert [(error["code"], error["field"]) for error in payload["userErrors"]] == [(code, [field])]


@pytest.mark.parametrize("token", ["", "lgs_", "lgs_" + "A" * 43, "\u0000", "\ud800", "x" * 50_000])
async def test_bad_sign_up_links_change_nothing(gql: GraphQLClient, token: str) -> None:
    response = await gql.post(CONFIRM_SIGN_UP, {"input": {"token": token, "password": PASSWORD}})
    if token in ("\u0000", "\ud800"):
        refused_at_the_edge(response, "variables.input.token")
        return
    assert response.status_code == 200, response.text
    payload = response.json()["data"]["confirmSignUp"]
    assert payload["token"] is None and [e["code"] for e in payload["userErrors"]] == ["INVALID_TOKEN"]


async def test_sign_up_trims_the_account_name(gql: GraphQLClient) -> None:
    payload = await sign_up_and_confirm(gql, accountName="  " + "y" * 50 + "   ")
    assert payload["account"]["name"] == "y" * 50


async def test_two_confirmed_sign_ups_for_one_email_make_one_login(gql: GraphQLClient, engine: AsyncEngine) -> None:
    email = unique_email()
    values = {"email": email, "password": PASSWORD, "name": "Twice", "accountName": "Twice"}
    for _ in range(2):
        await gql.execute(SIGN_UP, {"input": values})
    async with create_session_factory(engine)() as session:
        tokens = [row.body.split("#token=")[1].split()[0] for row in await session.scalars(
            select(Notification).where(Notification.recipient == email))]
    results = [(await gql.execute(CONFIRM_SIGN_UP, {"input": {"token": token, "password": PASSWORD}}))["data"]["confirmSignUp"]
               for token in tokens]
    assert [bool(result["token"]) for result in results] == [True, False]
    async with create_session_factory(engine)() as session:
        assert len((await session.scalars(select(User).where(User.email == email))).all()) == 1


# --- signing in ---------------------------------------------------------------------------

async def test_wrong_password_and_unknown_email_read_the_same(app: Any) -> None:
    async with client_for(app, "10.1.0.1") as http:
        client = GraphQLClient(http)
        wrong = await login(client, "olivia@northwind.example", "nope-nope")
        unknown = await login(client, unique_email(), "nope-nope")
        garbage = await login(client, "\u2028\ufeff" + "x" * 10_000, "nope-nope")
        untypable = await client.post(LOGIN, {"input": {"email": "olivia\u0000@northwind.example", "password": "x"}})
    assert wrong["data"]["login"] == unknown["data"]["login"] == garbage["data"]["login"]
    refused_at_the_edge(untypable, "variables.input.email")  # for every address alike
    assert wrong["data"]["login"]["userErrors"][0]["code"] == "INVALID_CREDENTIALS"


async def test_a_guesser_locks_out_only_itself(app: Any, gql: GraphQLClient) -> None:
    """Five wrong passwords from one client block that (email, client) pair, even for the right
    password; the owner, signing in from elsewhere, is not affected."""
    owner = await new_customer(gql)
    async with client_for(app, "10.2.0.1") as http:
        attacker = GraphQLClient(http)
        assert [code_of(await login(attacker, owner.email, "wrong-password")) for _ in range(5)] == \
            ["INVALID_CREDENTIALS"] * 5
        blocked = await login(attacker, owner.email, PASSWORD)
    assert code_of(blocked) == "RATE_LIMITED"
    assert 0 < blocked["errors"][0]["extensions"]["retryAfter"] <= 900
    async with client_for(app, "10.2.0.2") as http:
        assert code_of(await login(GraphQLClient(http), owner.email, PASSWORD)) == "OK"


async def test_one_colleagues_typos_behind_a_nat_lock_out_nobody_else(app: Any, gql: GraphQLClient) -> None:
    colleague, other = await new_customer(gql), await new_customer(gql)
    async with client_for(app, "10.3.0.1") as http:  # the office's one public address
        office = GraphQLClient(http)
        for _ in range(6):
            await login(office, colleague.email, "typo-typo")
        assert code_of(await login(office, colleague.email, PASSWORD)) == "RATE_LIMITED"
        assert code_of(await login(office, other.email, PASSWORD)) == "OK"
        assert code_of(await login(office, "olivia@northwind.example", "demo-password")) == "OK"


async def test_password_spraying_from_one_client_is_stopped(
    settings: Any, engine: AsyncEngine, gql: GraphQLClient
) -> None:
    owner = await new_customer(gql)
    app = app_with(settings, engine, login_client_max_failures=8)
    async with client_for(app, "10.4.0.1") as http:
        sprayer = GraphQLClient(http)
        codes = [code_of(await login(sprayer, unique_email(), "Summer2026!")) for _ in range(9)]
        assert codes == ["INVALID_CREDENTIALS"] * 8 + ["RATE_LIMITED"]
        # Blocked as a client: even a right password from there waits.
        assert code_of(await login(sprayer, owner.email, PASSWORD)) == "RATE_LIMITED"
    async with client_for(app, "10.4.0.2") as http:
        assert code_of(await login(GraphQLClient(http), owner.email, PASSWORD)) == "OK"


async def test_guessing_one_email_from_many_clients_slows_it_with_growing_delays(
    settings: Any, engine: AsyncEngine, gql: GraphQLClient
) -> None:
    victim = await new_customer(gql)
    app = app_with(settings, engine, login_email_max_failures=6)
    delays = []
    for n in range(9):
        async with client_for(app, f"10.5.1.{n}") as http:  # a botnet: one guess per address
            result = await login(GraphQLClient(http), victim.email, f"guess-{n}")
            if code_of(result) == "RATE_LIMITED":
                delays.append(result["errors"][0]["extensions"]["retryAfter"])
            else:
                assert code_of(result) == "INVALID_CREDENTIALS"
    # The first six failures cost nothing extra; from the sixth on each one doubles the wait
    # (1 s, 2 s, 4 s …), so guesses arriving at once find the email slowed down.
    assert delays and all(delay <= 8 for delay in delays), delays
    async with client_for(app, "10.5.2.1") as http:
        slowed = await login(GraphQLClient(http), victim.email, PASSWORD)
    assert code_of(slowed) in ("RATE_LIMITED", "OK")
    if code_of(slowed) == "RATE_LIMITED":
        assert slowed["errors"][0]["extensions"]["retryAfter"] <= 8


# --- the client behind a proxy -----------------------------------------------------------------

@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("203.0.113.9", ["198.51.100.1"], [], "203.0.113.9"),  # no proxies trusted: header ignored
        ("10.9.0.1", ["198.51.100.1"], [], "10.9.0.1"),
        ("10.9.0.1", ["1.2.3.4, 198.51.100.1"], ["10.9.0.0/16"], "198.51.100.1"),  # right-most untrusted
        ("10.9.0.1", ["198.51.100.1, 10.9.0.7"], ["10.9.0.0/16"], "198.51.100.1"),  # skips our hops
        ("10.9.0.1", ["1.2.3.4", "198.51.100.1"], ["10.9.0.0/16"], "198.51.100.1"),  # two header lines
        ("10.9.0.1", ["not-an-ip, 10.9.0.7"], ["10.9.0.0/16"], "10.9.0.7"),  # garbage: stop there
        ("10.9.0.1", [], ["10.9.0.0/16"], "10.9.0.1"),
        ("203.0.113.9", ["1.2.3.4"], ["10.9.0.0/16"], "203.0.113.9"),  # peer not trusted
        ("::ffff:10.9.0.1", ["[2001:db8::5]:443"], ["10.9.0.0/16"], "2001:db8::5"),
        ("10.9.0.1", ["198.51.100.1:51000"], ["10.9.0.0/16"], "198.51.100.1"),
    ],
)
def test_the_client_address(peer: str, forwarded: list[str], trusted: list[str], expected: str) -> None:
    assert client_address(peer, forwarded, trusted) == expected


async def test_behind_a_trusted_proxy_each_client_is_throttled_on_its_own(
    settings: Any, engine: AsyncEngine, gql: GraphQLClient
) -> None:
    """Behind a load balancer every request comes from its address: with it trusted, one
    customer's typos block that customer's address, not everybody's."""
    owner = await new_customer(gql)
    app = app_with(settings, engine, trusted_proxies=["10.6.0.0/16"])
    async with client_for(app, "10.6.0.1") as http:  # the load balancer
        balancer = GraphQLClient(http)

        async def via(client: str, password: str) -> str:
            response = await balancer.http.post("/graphql", json={
                "query": LOGIN, "variables": {"input": {"email": owner.email, "password": password}},
            }, headers={"x-forwarded-for": f"6.6.6.6, {client}"})
            return code_of(response.json())

        assert [await via("198.51.100.7", "typo-typo") for _ in range(5)] == ["INVALID_CREDENTIALS"] * 5
        assert await via("198.51.100.7", PASSWORD) == "RATE_LIMITED"
        assert await via("198.51.100.8", PASSWORD) == "OK"


async def test_an_untrusted_forwarded_for_header_cannot_dodge_the_throttle(app: Any, gql: GraphQLClient) -> None:
    owner = await new_customer(gql)
    async with client_for(app, "10.7.0.1") as http:
        for n in range(5):
            await http.post("/graphql", json={
                "query": LOGIN, "variables": {"input": {"email": owner.email, "password": "wrong-wrong"}},
            }, headers={"x-forwarded-for": f"198.51.100.{n}"})
        response = await http.post("/graphql", json={
            "query": LOGIN, "variables": {"input": {"email": owner.email, "password": PASSWORD}},
        }, headers={"x-forwarded-for": "198.51.100.200"})
    assert code_of(response.json()) == "RATE_LIMITED"


# --- tokens -----------------------------------------------------------------------------------

def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


async def _status_and_code(gql: GraphQLClient, token: str) -> tuple[int, str]:
    response = await gql.post(WHO, token=token)
    return response.status_code, response.json()["errors"][0]["extensions"]["code"]


async def test_bad_tokens_are_unauthenticated(gql: GraphQLClient, tokens: dict[str, str]) -> None:
    good = tokens["olivia"]
    header, payload, signature = good.split(".")
    claims = jwt.decode(good, options={"verify_signature": False})
    user_id, session_id = int(claims["sub"]), int(claims["sid"])
    signed = TokenSettings(secret=TEST_SECRET)
    forged = [
        "garbage",
        f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        f"{header}.{_b64({**claims, 'sub': '1'})}.{signature}",
        jwt.encode(claims, "another-key-that-is-also-long-enough-000", algorithm="HS256"),
        issue_token(user_id=user_id, token_version=1, session_id=session_id, secret=TEST_SECRET,
                    issuer="somebody-else", ttl=timedelta(hours=1)),
        issue_token(user_id=user_id, token_version=1, session_id=session_id, secret=TEST_SECRET,
                    issuer="linkgate", ttl=timedelta(seconds=-10)),
        signed.issue(user_id=999_999_999, token_version=1, session_id=session_id),
        # Validly signed, but out of every id's range, or naming another user's session.
        jwt.encode({**claims, "sub": str(2**80)}, TEST_SECRET, algorithm="HS256"),
        jwt.encode({**claims, "sid": 2**80}, TEST_SECRET, algorithm="HS256"),
        jwt.encode({**claims, "sub": "-1"}, TEST_SECRET, algorithm="HS256"),
        signed.issue(user_id=user_id, token_version=1, session_id=999_999_999),
        # Without a session at all (tokens from before sessions existed).
        jwt.encode({key: value for key, value in claims.items() if key != "sid"}, TEST_SECRET, algorithm="HS256"),
    ]
    for token in forged:
        assert await _status_and_code(gql, token) == (401, "UNAUTHENTICATED"), token
    ok = await gql.execute(WHO, token=good)
    assert ok["data"]["viewer"]["user"]["email"] == "olivia@northwind.example"


async def test_a_password_change_ends_every_session(gql: GraphQLClient) -> None:
    payload = await sign_up_and_confirm(gql, password="first-password")
    email = payload["viewer"]["user"]["email"]
    second = (await gql.execute(
        "mutation($i: LoginInput!) { login(input: $i) { token refreshToken } }",
        {"i": {"email": email, "password": "first-password"}}))["data"]["login"]
    changed = await gql.execute(
        CHANGE_PASSWORD,
        {"input": {"currentPassword": "first-password", "newPassword": "second-password"}},
        token=payload["token"],
    )
    new_token = changed["data"]["changePassword"]["token"]
    assert new_token and changed["data"]["changePassword"]["userErrors"] == []
    for old in (payload["token"], second["token"]):
        assert await _status_and_code(gql, old) == (401, "UNAUTHENTICATED")
    for old in (payload["refreshToken"], second["refreshToken"]):
        refreshed = await gql.execute(REFRESH, {"input": {"refreshToken": old}})
        assert refreshed["data"]["refreshSession"]["userErrors"] == [{"code": "INVALID_TOKEN"}]
    me = await gql.execute(WHO, token=new_token)
    assert me["data"]["viewer"]["user"]["email"] == email
    assert code_of(await login(gql, email, "second-password")) == "OK"


async def test_change_password_checks_the_current_one(gql: GraphQLClient) -> None:
    payload = await sign_up_and_confirm(gql, password="first-password")
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


async def test_a_new_client_gets_a_sign_in_alert(app: Any, gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)  # signed in from 127.0.0.1 at confirmation
    before = len(await mails_to(engine, owner.email))
    assert code_of(await login(gql, owner.email, PASSWORD)) == "OK"
    assert len(await mails_to(engine, owner.email)) == before  # a known client: no alert
    async with client_for(app, "10.8.0.1") as http:
        assert code_of(await login(GraphQLClient(http), owner.email, PASSWORD)) == "OK"
    alerts = (await mails_to(engine, owner.email))[before:]
    assert [mail.subject for mail in alerts] == ["New sign-in to your Linkgate login"]
    assert "10.8.0.1" in alerts[0].body and alerts[0].account_id is None


async def test_a_burst_of_parallel_guesses_gets_no_more_tries_than_the_limit(
    app: Any, gql: GraphQLClient, settings: Any
) -> None:
    """Each attempt is counted before its password is checked: twenty guesses sent at once
    from one client get the same five tries as twenty sent one by one."""
    import asyncio

    owner = await new_customer(gql)
    async with client_for(app, "10.9.0.1") as http:
        client = GraphQLClient(http)
        results = await asyncio.gather(*(login(client, owner.email, f"guess-{n}") for n in range(20)))
    codes = [code_of(result) for result in results]
    assert codes.count("INVALID_CREDENTIALS") == settings.login_max_failures, codes
    assert codes.count("RATE_LIMITED") == 20 - settings.login_max_failures


@pytest.mark.parametrize("password", ["\ud800\ud800\ud800\ud800", "nul\u0000nul\u0000", "x" * 50_000])
async def test_passwords_no_one_can_type_are_clear_errors(app: Any, password: str) -> None:
    async with client_for(app, "10.9.1.1") as http:
        client = GraphQLClient(http)
        response = await client.post(LOGIN, {"input": {"email": "olivia@northwind.example", "password": password}})
        signed_up = await client.post(SIGN_UP, {"input": {
            "email": unique_email(), "password": password, "name": "N", "accountName": "A"}})
    if len(password) < 1000:  # no one can type it: refused before anything runs
        refused_at_the_edge(response, "variables.input.password")
        refused_at_the_edge(signed_up, "variables.input.password")
        return
    assert response.status_code == 200 and code_of(response.json()) == "INVALID_CREDENTIALS", response.text
    assert signed_up.status_code == 200, signed_up.text
    errors = signed_up.json()["data"]["signUp"]["userErrors"]
    assert [error["code"] for error in errors] == ["PASSWORD_TOO_LONG"]


async def test_the_owner_at_a_known_desk_is_not_slowed_by_a_guess_campaign(
    settings: Any, engine: AsyncEngine, gql: GraphQLClient
) -> None:
    """Many addresses guessing one email slow it down for strangers, but not for a client
    that has signed in to it before."""
    victim = await new_customer(gql)  # confirmed from 127.0.0.1: a known desk
    app = app_with(settings, engine, login_email_max_failures=3)
    for n in range(8):
        async with client_for(app, f"10.11.1.{n}") as http:
            await login(GraphQLClient(http), victim.email, f"guess-{n}")
    async with client_for(app, "10.11.2.1") as http:
        stranger = await login(GraphQLClient(http), victim.email, PASSWORD)
    assert code_of(stranger) == "RATE_LIMITED"
    async with client_for(app, "127.0.0.1") as http:
        assert code_of(await login(GraphQLClient(http), victim.email, PASSWORD)) == "OK"


async def test_an_ipv6_network_counts_as_one_client(app: Any, gql: GraphQLClient) -> None:
    owner = await new_customer(gql)
    for n in range(5):  # five addresses of one /64
        async with client_for(app, f"2001:db8:1:2::{n + 1:x}") as http:
            assert code_of(await login(GraphQLClient(http), owner.email, "wrong-wrong")) == "INVALID_CREDENTIALS"
    async with client_for(app, "2001:db8:1:2::99") as http:
        assert code_of(await login(GraphQLClient(http), owner.email, PASSWORD)) == "RATE_LIMITED"
    async with client_for(app, "2001:db8:1:3::1") as http:  # the next /64: someone else
        assert code_of(await login(GraphQLClient(http), owner.email, PASSWORD)) == "OK"


async def test_change_password_guesses_are_throttled_and_the_change_is_mailed(
    app: Any, gql: GraphQLClient, engine: AsyncEngine
) -> None:
    owner = await new_customer(gql)
    async with client_for(app, "10.12.0.1") as http:
        thief = GraphQLClient(http)
        answers = []
        for n in range(6):
            result = await thief.execute(CHANGE_PASSWORD, {"input": {
                "currentPassword": f"guess-{n}-guess", "newPassword": "thief's password"}}, token=owner.token)
            answers.append(code_of_change(result))
        assert answers == ["INVALID_CREDENTIALS"] * 5 + ["RATE_LIMITED"]
    changed = await gql.execute(CHANGE_PASSWORD, {"input": {
        "currentPassword": PASSWORD, "newPassword": "a fresh password"}}, token=owner.token)
    assert changed["data"]["changePassword"]["userErrors"] == []
    assert (await mails_to(engine, owner.email))[-1].subject == "Your Linkgate password was changed"


async def test_a_password_change_retires_open_reset_links(gql: GraphQLClient) -> None:
    owner = await new_customer(gql)
    await gql.execute("mutation($e: String!) { requestPasswordReset(input: {email: $e}) { ok } }",
                      {"e": owner.email})
    reset_token = await emailed_token(gql.engine, owner.email, "reset-password")
    await gql.execute(CHANGE_PASSWORD, {"input": {
        "currentPassword": PASSWORD, "newPassword": "changed on purpose"}}, token=owner.token)
    late = await gql.execute(
        "mutation($i: ResetPasswordInput!) { resetPassword(input: $i) { ok userErrors { code } } }",
        {"i": {"token": reset_token, "password": "from the old link"}})
    assert late["data"]["resetPassword"] == {"ok": False, "userErrors": [{"code": "INVALID_TOKEN"}]}
    assert code_of(await login(gql, owner.email, "changed on purpose")) == "OK"


def code_of_change(result: dict[str, Any]) -> str:
    if result.get("errors"):
        return result["errors"][0]["extensions"]["code"]
    errors = result["data"]["changePassword"]["userErrors"]
    return errors[0]["code"] if errors else "OK"


@pytest.mark.parametrize("field", ["name", "accountName"])
@pytest.mark.parametrize("bad", [*UNTYPABLE, "bell\a"])
async def test_sign_up_names_no_one_can_type_read_the_same_for_any_email(
    gql: GraphQLClient, field: str, bad: str
) -> None:
    """A taken and a new email get the same answer for the same bad input (no oracle)."""
    owner = await new_customer(gql)
    answers = []
    for email in (owner.email, unique_email()):
        values = {"email": email, "password": PASSWORD, "name": "Ada", "accountName": "Engines", field: bad}
        response = await gql.post(SIGN_UP, {"input": values})
        if bad in UNTYPABLE:
            answers.append(refused_at_the_edge(response, f"variables.input.{field}"))
            continue
        assert response.status_code == 200, response.text
        answers.append(response.json()["data"]["signUp"])
    assert answers[0] == answers[1]
    if bad not in UNTYPABLE:
        assert answers[0]["ok"] is False and answers[0]["userErrors"][0]["code"] == "NAME_INVALID"


async def test_a_sign_up_planted_on_someone_elses_email_cannot_be_completed_by_its_owner(
    app: Any, gql: GraphQLClient, engine: AsyncEngine
) -> None:
    """Mallory signs up the new hire's address with her own password, over and over. The new
    hire's own sign-up still gets a link, and opening one of Mallory's links needs Mallory's
    password: nobody ends up with a login whose password someone else chose."""
    email = unique_email("newhire")
    async with client_for(app, "10.13.0.1") as http:
        mallory = GraphQLClient(http)
        for _ in range(8):
            await mallory.execute(SIGN_UP, {"input": {
                "email": email, "password": "mallory-knows-this", "name": "New Hire", "accountName": "Trap"}})
    planted = await emailed_token(engine, email, "confirm-sign-up")
    assert planted
    async with client_for(app, "10.13.0.2") as http:
        newhire = GraphQLClient(http)
        refused = (await newhire.execute(CONFIRM_SIGN_UP, {"input": {"token": planted, "password": PASSWORD}})
                   )["data"]["confirmSignUp"]
        assert refused["token"] is None and refused["userErrors"][0]["code"] == "INVALID_CREDENTIALS"
        assert (await newhire.execute(SIGN_UP, {"input": {
            "email": email, "password": PASSWORD, "name": "New Hire", "accountName": "Real"}}))["data"]["signUp"]["ok"]
        own = await emailed_token(engine, email, "confirm-sign-up")
        assert own and own != planted
        confirmed = (await newhire.execute(CONFIRM_SIGN_UP, {"input": {"token": own, "password": PASSWORD}})
                     )["data"]["confirmSignUp"]
        assert confirmed["userErrors"] == [] and confirmed["account"]["name"] == "Real"
        assert code_of(await login(newhire, email, "mallory-knows-this")) == "INVALID_CREDENTIALS"
    # Mallory's links are dead now: the address has its login.
    assert (await gql.execute(CONFIRM_SIGN_UP, {"input": {"token": planted, "password": "mallory-knows-this"}})
            )["data"]["confirmSignUp"]["userErrors"][0]["code"] == "INVALID_TOKEN"
    # Mail from one client is capped (5 to that address a day): Mallory's eight sent five.
    assert len([m for m in await mails_to(engine, email) if m.subject == "Confirm your Linkgate sign-up"]) == 6


async def test_a_guess_campaign_does_not_stop_the_signed_in_owner_changing_the_password(
    settings: Any, engine: AsyncEngine, gql: GraphQLClient
) -> None:
    victim = await new_customer(gql)
    app = app_with(settings, engine, login_email_max_failures=3)
    for n in range(8):
        async with client_for(app, f"10.15.1.{n}") as http:
            await login(GraphQLClient(http), victim.email, f"guess-{n}")
    async with client_for(app, "10.15.2.1") as http:
        assert code_of(await login(GraphQLClient(http), victim.email, PASSWORD)) == "RATE_LIMITED"
        changed = await GraphQLClient(http).execute(CHANGE_PASSWORD, {"input": {
            "currentPassword": PASSWORD, "newPassword": "rotated after the attack"}}, token=victim.token)
    assert code_of_change(changed) == "OK"
