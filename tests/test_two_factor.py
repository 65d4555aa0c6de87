"""Two-factor sign-in (TOTP and recovery codes), over HTTP.

Every test turns it on for new customers of its own: the demo personas sign in without it
in every other suite. Each test signs in from client addresses of its own (10.6x.y.z),
so the throttle's counters never mix between tests.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import jwt
import pyotp
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from linkgate.app import create_app
from linkgate.demo import DEMO_PASSWORD
from linkgate.settings import Settings
from models.accounts import Account, Membership
from models.audit import AuditEvent
from models.database import create_session_factory
from models.identity import RecoveryCode
from models.notifications import Notification
from models.users import StaffRole, User
from resolvers.staff import create_staff
from resolvers.two_factor import set_up_two_factor
from tests.conftest import PERSONAS, TEST_SECRET, GraphQLClient, client_for, refused_at_the_edge
from tests.customers import PASSWORD, Customer, count_rows, new_customer, unique_email

LOGIN = """
mutation($input: LoginInput!) { login(input: $input) { token userErrors { field message code } } }
"""
ENABLE = "mutation { enableTwoFactor { secret otpauthUri userErrors { field message code } } }"
CONFIRM = """
mutation($input: ConfirmTwoFactorInput!) {
  confirmTwoFactor(input: $input) { recoveryCodes userErrors { field message code } }
}
"""
DISABLE = """
mutation($input: DisableTwoFactorInput!) {
  disableTwoFactor(input: $input) { ok userErrors { field message code } }
}
"""
REGENERATE = """
mutation($input: RegenerateRecoveryCodesInput!) {
  regenerateRecoveryCodes(input: $input) { recoveryCodes userErrors { field message code } }
}
"""
ME = "{ viewer { user { email twoFactorEnabled } } }"
MEMBERS = """
query($n: String!) {
  viewer { account(number: $n) { members { isOwner user { email twoFactorEnabled } } } }
}
"""


class Authenticator:
    """The user's authenticator app: a fresh code each time, as the server accepts them (the
    step before, the current one or the next, each newer than the last one used)."""

    def __init__(self, secret: str) -> None:
        self.totp = pyotp.TOTP(secret)
        self.last_step: int | None = None

    async def code(self) -> str:
        if time.time() % 30 > 27:  # too close to the next step: wait for it
            await asyncio.sleep(30.05 - time.time() % 30)
        current = int(time.time() // 30)
        step = current - 1 if self.last_step is None else max(self.last_step + 1, current - 1)
        if step > current + 1:
            await asyncio.sleep((step - 1) * 30 + 0.05 - time.time())
        self.last_step = step
        return self.totp.at(step * 30)

    def wrong_code(self) -> str:
        """Six digits that no accepted step makes."""
        now = time.time()
        valid = {self.totp.at(now + drift) for drift in (-60, -30, 0, 30, 60)}
        return next(code for code in ("000000", "111111", "222222", "333333") if code not in valid)


def app_of(gql: GraphQLClient) -> Any:
    return gql.http._transport.app  # type: ignore[attr-defined]


def errors_of(payload: dict[str, Any]) -> list[str]:
    return [error["code"] for error in payload["userErrors"]]


async def login(
    gql: GraphQLClient, email: str, password: str = PASSWORD, otp: str | None = None
) -> dict[str, Any]:
    values: dict[str, Any] = {"email": email, "password": password}
    if otp is not None:
        values["otp"] = otp
    result = await gql.execute(LOGIN, {"input": values})
    assert "errors" not in result, result
    return result["data"]["login"]


async def enable(gql: GraphQLClient, token: str) -> Authenticator:
    result = await gql.execute(ENABLE, token=token)
    payload = result["data"]["enableTwoFactor"]
    assert payload["userErrors"] == [], payload
    return Authenticator(payload["secret"])


async def confirm(
    gql: GraphQLClient, token: str, code: str, password: str = PASSWORD
) -> dict[str, Any]:
    result = await gql.execute(CONFIRM, {"input": {"code": code, "password": password}}, token=token)
    assert "errors" not in result, result
    return result["data"]["confirmTwoFactor"]


async def with_two_factor(gql: GraphQLClient) -> tuple[Customer, Authenticator, list[str]]:
    """A new customer with two-factor sign-in on: its authenticator and recovery codes."""
    customer = await new_customer(gql)
    app = await enable(gql, customer.token)
    confirmed = await confirm(gql, customer.token, await app.code())
    assert confirmed["userErrors"] == [], confirmed
    return customer, app, confirmed["recoveryCodes"]


async def two_factor_enabled(gql: GraphQLClient, token: str) -> bool | None:
    result = await gql.execute(ME, token=token)
    return result["data"]["viewer"]["user"]["twoFactorEnabled"]


async def user_row(engine: AsyncEngine, email: str) -> User:
    async with create_session_factory(engine)() as session:
        user = await session.scalar(select(User).where(User.email == email))
        assert user is not None
        return user


async def subjects_mailed_to(engine: AsyncEngine, email: str) -> list[str]:
    async with create_session_factory(engine)() as session:
        return list(await session.scalars(
            select(Notification.subject).where(Notification.recipient == email).order_by(Notification.id)
        ))


async def audited(engine: AsyncEngine, user_id: int) -> list[str]:
    async with create_session_factory(engine)() as session:
        return list(await session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.target_type == "user", AuditEvent.target_id == user_id)
            .order_by(AuditEvent.id)
        ))


# --- turning it on, and signing in with it -------------------------------------------------


async def test_sign_in_with_a_code_or_a_recovery_code(gql: GraphQLClient) -> None:
    customer = await new_customer(gql)
    enabled = (await gql.execute(ENABLE, token=customer.token))["data"]["enableTwoFactor"]
    assert enabled["userErrors"] == []
    assert enabled["otpauthUri"].startswith("otpauth://totp/Linkgate:")
    assert pyotp.parse_uri(enabled["otpauthUri"]).secret == enabled["secret"]
    app = Authenticator(enabled["secret"])
    async with client_for(app_of(gql), "10.60.0.1") as http:
        client = GraphQLClient(http)
        # Pending, not in force: sign-in is unchanged until a code confirms the secret.
        assert await two_factor_enabled(gql, customer.token) is False
        assert (await login(client, customer.email))["token"]

        confirmed = await confirm(gql, customer.token, await app.code())
        assert confirmed["userErrors"] == []
        codes = confirmed["recoveryCodes"]
        assert len(codes) == len(set(codes)) == 10
        assert await two_factor_enabled(gql, customer.token) is True

        missing = await login(client, customer.email)
        assert missing["token"] is None and errors_of(missing) == ["OTP_REQUIRED"]
        wrong = await login(client, customer.email, otp=app.wrong_code())
        assert wrong["token"] is None and errors_of(wrong) == ["INVALID_OTP"]
        wrong_password = await login(client, customer.email, "not-the-password", otp=app.wrong_code())
        assert errors_of(wrong_password) == ["INVALID_CREDENTIALS"]

        code = await app.code()
        assert (await login(client, customer.email, otp=code))["token"]
        replayed = await login(client, customer.email, otp=code)
        assert replayed["token"] is None and errors_of(replayed) == ["INVALID_OTP"]

        assert (await login(client, customer.email, otp=codes[0]))["token"]
        again = await login(client, customer.email, otp=codes[0])
        assert again["token"] is None and errors_of(again) == ["INVALID_OTP"]
        # Typed from paper: case, spaces and dashes do not matter.
        assert (await login(client, customer.email, otp=codes[1].upper().replace("-", " ")))["token"]
        assert (await login(client, customer.email, otp=f"  {codes[2].replace('-', '')}\t"))["token"]

    row = await user_row(gql.engine, customer.email)
    assert await count_rows(gql.engine, RecoveryCode, RecoveryCode.user_id == row.id,
                            RecoveryCode.used_at.is_(None)) == 7
    # Only digests are stored.
    async with create_session_factory(gql.engine)() as session:
        stored = set(await session.scalars(
            select(RecoveryCode.code_hash).where(RecoveryCode.user_id == row.id)
        ))
    assert not stored & set(codes)
    mailed = await subjects_mailed_to(gql.engine, customer.email)
    assert "Two-factor sign-in is on for your Linkgate login" in mailed
    assert await audited(gql.engine, row.id) == ["user.two_factor_enabled"]


async def test_wrong_codes_are_throttled_like_wrong_passwords(gql: GraphQLClient, settings: Settings) -> None:
    customer, app, _codes = await with_two_factor(gql)
    async with client_for(app_of(gql), "10.61.0.1") as http:
        client = GraphQLClient(http)
        for _ in range(settings.login_max_failures):
            wrong = await login(client, customer.email, otp=app.wrong_code())
            assert errors_of(wrong) == ["INVALID_OTP"]
        code = await app.code()
        blocked = await client.execute(LOGIN, {"input": {
            "email": customer.email, "password": PASSWORD, "otp": code,
        }})
        assert blocked["data"] is None or blocked["data"]["login"] is None
        assert blocked["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        # The same counters guard turning it off from that client.
        disabling = await client.execute(DISABLE, {"input": {"password": PASSWORD, "code": code}},
                                         token=customer.token)
        assert disabling["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    # The user, elsewhere, is not locked out; the refused code was not spent.
    async with client_for(app_of(gql), "10.61.0.2") as http:
        assert (await login(GraphQLClient(http), customer.email, otp=code))["token"]


async def test_confirming_with_a_wrong_code_leaves_it_off(gql: GraphQLClient) -> None:
    customer = await new_customer(gql)
    not_started = await confirm(gql, customer.token, "123456")
    assert errors_of(not_started) == ["TWO_FACTOR_NOT_STARTED"]
    app = await enable(gql, customer.token)
    wrong = await confirm(gql, customer.token, app.wrong_code())
    assert wrong["recoveryCodes"] is None
    assert wrong["userErrors"] == [
        {"field": ["code"], "message": "The code is incorrect or was already used.", "code": "INVALID_OTP"}
    ]
    assert await two_factor_enabled(gql, customer.token) is False
    async with client_for(app_of(gql), "10.62.0.1") as http:
        assert (await login(GraphQLClient(http), customer.email))["token"]
    # A code of an earlier pending secret does not confirm a newer one.
    newer = await enable(gql, customer.token)
    assert newer.totp.secret != app.totp.secret
    stale = await confirm(gql, customer.token, await app.code())
    assert errors_of(stale) == ["INVALID_OTP"]
    row = await user_row(gql.engine, customer.email)
    assert row.totp_secret == newer.totp.secret and row.totp_enabled_at is None
    assert await count_rows(gql.engine, RecoveryCode, RecoveryCode.user_id == row.id) == 0


async def test_a_session_alone_cannot_turn_it_on(gql: GraphQLClient, settings: Settings) -> None:
    """Whoever holds only an access token cannot put a secret of their own in force and lock
    the owner out: confirming takes the password too, and wrong passwords count as failed
    sign-ins of that email from that client."""
    customer = await new_customer(gql)
    thief = await enable(gql, customer.token)  # the token's thief reads this secret
    async with client_for(app_of(gql), "10.62.1.1") as http:
        client = GraphQLClient(http)
        # One code for every wrong-password try: a refused confirmation spends no code.
        code = await thief.code()
        wrong = await confirm(client, customer.token, code, password="not-the-password")
        assert wrong["recoveryCodes"] is None
        assert wrong["userErrors"] == [
            {"field": ["password"], "message": "The password is incorrect.", "code": "INVALID_CREDENTIALS"}
        ]
        assert await two_factor_enabled(gql, customer.token) is False
        row = await user_row(gql.engine, customer.email)
        assert row.totp_enabled_at is None
        assert await count_rows(gql.engine, RecoveryCode, RecoveryCode.user_id == row.id) == 0
        # The owner still signs in with the password alone.
        async with client_for(app_of(gql), "10.62.1.2") as elsewhere:
            signed_in = await login(GraphQLClient(elsewhere), customer.email)
            assert signed_in["token"] and signed_in["userErrors"] == []

        for _ in range(settings.login_max_failures - 1):
            again = await confirm(client, customer.token, code, password="another guess")
            assert errors_of(again) == ["INVALID_CREDENTIALS"]
        # The guesses used up that client's sign-in budget for the email.
        blocked = await client.execute(
            CONFIRM, {"input": {"code": code, "password": PASSWORD}}, token=customer.token
        )
        assert blocked["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        signing_in = await client.execute(LOGIN, {"input": {"email": customer.email, "password": PASSWORD}})
        assert signing_in["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert await two_factor_enabled(gql, customer.token) is False
    assert "Two-factor sign-in is on for your Linkgate login" not in await subjects_mailed_to(
        gql.engine, customer.email
    )
    # With the password, from elsewhere, it turns on.
    async with client_for(app_of(gql), "10.62.1.3") as http:
        confirmed = await confirm(GraphQLClient(http), customer.token, await thief.code())
        assert confirmed["userErrors"] == [] and len(confirmed["recoveryCodes"]) == 10
    assert await two_factor_enabled(gql, customer.token) is True


async def test_turning_it_off_takes_the_password_and_a_code(gql: GraphQLClient) -> None:
    customer, app, codes = await with_two_factor(gql)
    again = (await gql.execute(ENABLE, token=customer.token))["data"]["enableTwoFactor"]
    assert again["secret"] is None and errors_of(again) == ["TWO_FACTOR_ALREADY_ENABLED"]
    assert errors_of(await confirm(gql, customer.token, await app.code())) == ["TWO_FACTOR_ALREADY_ENABLED"]

    async with client_for(app_of(gql), "10.63.0.1") as http:
        client = GraphQLClient(http)

        async def disable(password: str, code: str) -> dict[str, Any]:
            result = await client.execute(DISABLE, {"input": {"password": password, "code": code}},
                                          token=customer.token)
            assert "errors" not in result, result
            return result["data"]["disableTwoFactor"]

        wrong_password = await disable("not-the-password", codes[0])
        assert not wrong_password["ok"]
        assert wrong_password["userErrors"][0]["code"] == "INVALID_CREDENTIALS"
        assert wrong_password["userErrors"][0]["field"] == ["password"]
        wrong_code = await disable(PASSWORD, app.wrong_code())
        assert not wrong_code["ok"] and errors_of(wrong_code) == ["INVALID_OTP"]
        assert await two_factor_enabled(gql, customer.token) is True

        # The recovery code was not spent by the attempt with the wrong password.
        assert await disable(PASSWORD, codes[0]) == {"ok": True, "userErrors": []}
        assert await two_factor_enabled(gql, customer.token) is False
        assert (await login(client, customer.email))["token"]
        assert errors_of(await disable(PASSWORD, codes[1])) == ["TWO_FACTOR_NOT_ENABLED"]

    row = await user_row(gql.engine, customer.email)
    assert (row.totp_secret, row.totp_enabled_at, row.totp_last_step) == (None, None, None)
    assert await count_rows(gql.engine, RecoveryCode, RecoveryCode.user_id == row.id) == 0
    mailed = await subjects_mailed_to(gql.engine, customer.email)
    assert "Two-factor sign-in is off for your Linkgate login" in mailed
    assert await audited(gql.engine, row.id) == ["user.two_factor_enabled", "user.two_factor_disabled"]


async def test_turning_it_off_cannot_be_used_to_guess_codes(gql: GraphQLClient, settings: Settings) -> None:
    customer, app, _codes = await with_two_factor(gql)
    async with client_for(app_of(gql), "10.64.0.1") as http:
        client = GraphQLClient(http)
        for _ in range(settings.login_max_failures):
            result = await client.execute(
                DISABLE, {"input": {"password": PASSWORD, "code": app.wrong_code()}}, token=customer.token
            )
            assert errors_of(result["data"]["disableTwoFactor"]) == ["INVALID_OTP"]
        code = await app.code()
        blocked = await client.execute(DISABLE, {"input": {"password": PASSWORD, "code": code}},
                                       token=customer.token)
        assert blocked["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        signing_in = await client.execute(LOGIN, {"input": {
            "email": customer.email, "password": PASSWORD, "otp": code,
        }})
        assert signing_in["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert await two_factor_enabled(gql, customer.token) is True


async def test_new_recovery_codes_replace_the_old_ones(gql: GraphQLClient) -> None:
    customer, app, old_codes = await with_two_factor(gql)
    async with client_for(app_of(gql), "10.65.0.1") as http:
        client = GraphQLClient(http)

        async def regenerate(code: str) -> dict[str, Any]:
            result = await client.execute(REGENERATE, {"input": {"code": code}}, token=customer.token)
            assert "errors" not in result, result
            return result["data"]["regenerateRecoveryCodes"]

        # A recovery code does not make new ones, and is not spent trying.
        refused = await regenerate(old_codes[0])
        assert refused["recoveryCodes"] is None and errors_of(refused) == ["INVALID_OTP"]
        code = await app.code()
        new_codes = (await regenerate(code))["recoveryCodes"]
        assert len(set(new_codes)) == 10 and not set(new_codes) & set(old_codes)
        assert errors_of(await regenerate(code)) == ["INVALID_OTP"]  # replayed

        assert errors_of(await login(client, customer.email, otp=old_codes[0])) == ["INVALID_OTP"]
        assert errors_of(await login(client, customer.email, otp=old_codes[5])) == ["INVALID_OTP"]
        assert (await login(client, customer.email, otp=new_codes[0]))["token"]
    mailed = await subjects_mailed_to(gql.engine, customer.email)
    assert "New recovery codes for your Linkgate login" in mailed


# --- who may -------------------------------------------------------------------------------


async def test_anonymous_and_forged_callers_are_refused(gql: GraphQLClient) -> None:
    customer = await new_customer(gql)
    claims = jwt.decode(customer.token, options={"verify_signature": False})
    forged = jwt.encode(claims, "another-key-that-is-also-long-enough-000", algorithm="HS256")
    calls = [
        (ENABLE, None),
        (CONFIRM, {"input": {"code": "123456", "password": PASSWORD}}),
        (DISABLE, {"input": {"password": PASSWORD, "code": "123456"}}),
        (REGENERATE, {"input": {"code": "123456"}}),
    ]
    for query, variables in calls:
        anonymous = await gql.post(query, variables)
        assert anonymous.status_code != 500
        body = anonymous.json()
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", body
        assert not any((body.get("data") or {}).values())
        refused = await gql.post(query, variables, token=forged)
        assert refused.status_code == 401
        assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert await two_factor_enabled(gql, customer.token) is False


async def add_member(engine: AsyncEngine, account_number: str, email: str, permissions: list[str]) -> None:
    """``email`` made a sub-account of the account, straight in the database (this suite is
    about what the member sees, not how it joined)."""
    async with create_session_factory(engine)() as session:
        account_id = await session.scalar(select(Account.id).where(Account.number == account_number))
        user_id = await session.scalar(select(User.id).where(User.email == email))
        session.add(Membership(user_id=user_id, account_id=account_id, permissions=permissions))
        await session.commit()


async def test_two_factor_enabled_is_shown_only_to_the_user_themself(gql: GraphQLClient) -> None:
    owner, _app, _codes = await with_two_factor(gql)
    manager = await new_customer(gql)
    await add_member(gql.engine, owner.account.number, manager.email, ["CONTACTS_READ", "CONTACTS_MANAGE"])

    async def members_as(token: str) -> dict[str, bool | None]:
        result = await gql.execute(MEMBERS, {"n": owner.account.number}, token=token)
        members = result["data"]["viewer"]["account"]["members"]
        return {member["user"]["email"]: member["user"]["twoFactorEnabled"] for member in members}

    assert await members_as(owner.token) == {owner.email: True, manager.email: None}
    assert await members_as(manager.token) == {owner.email: None, manager.email: False}
    assert await two_factor_enabled(gql, owner.token) is True
    assert await two_factor_enabled(gql, manager.token) is False


# --- staff ---------------------------------------------------------------------------------


async def test_staff_must_sign_in_with_a_second_factor_when_required(
    database_url: str, engine: AsyncEngine, gql: GraphQLClient
) -> None:
    strict = create_app(Settings(database_url=database_url, secret_key=TEST_SECRET,
                                 staff_require_totp=True, answer_floor_seconds=0), engine=engine)
    customer = await new_customer(gql)
    email = unique_email("staff")
    async with create_session_factory(engine)() as session:
        user = await create_staff(session, email=email, name="Sam Staff", role=StaffRole.SUPPORT,
                                  password=PASSWORD)
        set_up = await set_up_two_factor(session, user=user)
    app = Authenticator(set_up.secret)
    async with client_for(strict, "10.66.0.1") as http:
        client = GraphQLClient(http)
        demo_staff = await login(client, PERSONAS["agent"], DEMO_PASSWORD)
        assert demo_staff["token"] is None and errors_of(demo_staff) == ["TWO_FACTOR_SETUP_REQUIRED"]
        # Customers are not asked for one.
        assert (await login(client, customer.email))["token"]

        assert errors_of(await login(client, email)) == ["OTP_REQUIRED"]
        token = (await login(client, email, otp=await app.code()))["token"]
        assert token
        assert (await login(client, email, otp=set_up.recovery_codes[0]))["token"]
        assert await two_factor_enabled(client, token) is True
        # Turning it off would lock the staff login out.
        refused = await client.execute(
            DISABLE, {"input": {"password": PASSWORD, "code": set_up.recovery_codes[1]}}, token=token
        )
        assert errors_of(refused["data"]["disableTwoFactor"]) == ["TWO_FACTOR_REQUIRED"]
    assert (await user_row(engine, email)).totp_enabled_at is not None


# --- bad input -----------------------------------------------------------------------------

BAD_CODES = ["12345a", "١٢٣٤٥٦", "123 456 789", "1" * 90_000]
UNTYPABLE_CODES = ["\x00", "123\x00456", "\ud800", "\udfff12345"]


async def post_raw(
    http: httpx.AsyncClient, query: str, variables: dict[str, Any], token: str | None = None
) -> httpx.Response:
    """Posts with the JSON escaped (``\\ud800``), as a client may send a lone surrogate."""
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    body = json.dumps({"query": query, "variables": variables}).encode("ascii")
    return await http.post("/graphql", content=body, headers=headers)


async def answer(
    http: httpx.AsyncClient, query: str, variables: dict[str, Any], token: str | None = None
) -> dict[str, Any]:
    """The one mutation's payload: a 200 answer without GraphQL errors."""
    response = await post_raw(http, query, variables, token)
    assert response.status_code == 200, response.text
    result = response.json()
    assert "errors" not in result, result
    (payload,) = result["data"].values()
    return payload


async def test_malformed_codes_are_user_errors(gql: GraphQLClient) -> None:
    pending = await new_customer(gql)
    await enable(gql, pending.token)
    customer, _app, _codes = await with_two_factor(gql)
    for index, bad in enumerate(BAD_CODES):
        async with client_for(app_of(gql), f"10.67.0.{index}") as http:
            confirmed = await answer(http, CONFIRM, {"input": {"code": bad, "password": PASSWORD}},
                                     pending.token)
            assert errors_of(confirmed) == ["INVALID_OTP"], bad[:10]
            signed_in = await answer(http, LOGIN, {"input": {
                "email": customer.email, "password": PASSWORD, "otp": bad,
            }})
            assert signed_in["token"] is None and errors_of(signed_in) == ["INVALID_OTP"]
            regenerated = await answer(http, REGENERATE, {"input": {"code": bad}}, customer.token)
            assert errors_of(regenerated) == ["INVALID_OTP"]
            disabled = await answer(http, DISABLE, {"input": {"password": PASSWORD, "code": bad}},
                                    customer.token)
            assert errors_of(disabled) == ["INVALID_OTP"]
    # No one can type these: each request is refused before anything runs, naming the field.
    async with client_for(app_of(gql), "10.67.1.1") as http:
        for bad in UNTYPABLE_CODES:
            for query, variables, token, field in [
                (CONFIRM, {"input": {"code": bad, "password": PASSWORD}}, pending.token, "code"),
                (LOGIN, {"input": {"email": customer.email, "password": PASSWORD, "otp": bad}}, None, "otp"),
                (REGENERATE, {"input": {"code": bad}}, customer.token, "code"),
                (DISABLE, {"input": {"password": PASSWORD, "code": bad}}, customer.token, "code"),
            ]:
                refused_at_the_edge(await post_raw(http, query, variables, token), f"variables.input.{field}")
    assert await two_factor_enabled(gql, customer.token) is True
    assert await two_factor_enabled(gql, pending.token) is False


async def test_malformed_passwords_when_turning_it_off_are_user_errors(gql: GraphQLClient) -> None:
    customer, _app, codes = await with_two_factor(gql)
    for index, bad in enumerate(["\x00", "\ud800", "x" * 90_000]):
        async with client_for(app_of(gql), f"10.68.0.{index}") as http:
            variables = {"input": {"password": bad, "code": codes[0]}}
            if len(bad) == 1:  # no one can type it: refused before anything runs
                refused_at_the_edge(await post_raw(http, DISABLE, variables, customer.token),
                                    "variables.input.password")
                continue
            disabled = await answer(http, DISABLE, variables, customer.token)
            assert errors_of(disabled) == ["INVALID_CREDENTIALS"]
    assert await two_factor_enabled(gql, customer.token) is True


async def test_a_code_over_the_body_limit_is_refused_cleanly(gql: GraphQLClient) -> None:
    customer, _app, _codes = await with_two_factor(gql)
    async with client_for(app_of(gql), "10.69.0.1") as http:
        for query, variables, token in [
            (LOGIN, {"input": {"email": customer.email, "password": PASSWORD, "otp": "1" * 100_000}}, None),
            (CONFIRM, {"input": {"code": "1" * 100_000, "password": PASSWORD}}, customer.token),
        ]:
            response = await post_raw(http, query, variables, token)
            assert response.status_code == 413
            assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
