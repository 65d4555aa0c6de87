"""Signing up (with an emailed confirmation), signing in, changing a password."""

from __future__ import annotations

from datetime import datetime

import strawberry

from auth.sessions import IssuedTokens
from resolvers import sign_in
from resolvers.user_errors import UserError as UserErrorValue
from schema.accounts import Account, Viewer
from schema.payloads import UserError


@strawberry.input
class LoginInput:
    email: str
    password: str
    otp: str | None = strawberry.field(
        default=None,
        description="With two-factor sign-in on: the authenticator app's current code, or one "
        "of the recovery codes (each works once).",
    )


@strawberry.type(description="A signed-in session: send `token` as `Authorization: Bearer …` "
                 "until `expiresAt`, then trade `refreshToken` for a new pair (refreshSession).")
class LoginPayload:
    token: str | None = strawberry.field(default=None, description="The access token (short-lived).")
    expires_at: datetime | None = strawberry.field(default=None, description="When `token` stops working.")
    refresh_token: str | None = strawberry.field(
        default=None,
        description="Single use: refreshSession spends it and returns the next one. Presenting "
        "a spent one again ends the session.",
    )
    viewer: Viewer | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def signed_in(cls, tokens: IssuedTokens) -> LoginPayload:
        return cls(
            token=tokens.access_token, expires_at=tokens.expires_at,
            refresh_token=tokens.refresh_token, viewer=Viewer(user_pk=tokens.user_id),
        )

    @classmethod
    def failed(cls, error: UserErrorValue) -> LoginPayload:
        return cls(user_errors=UserError.list_from(error))


@strawberry.input
class SignUpInput:
    email: str
    password: str
    name: str
    account_name: str


@strawberry.type(description="`ok` means: a confirmation link is on its way to the email "
                 "(the same answer whether or not the email already has a login).")
class SignUpPayload:
    ok: bool = False
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class ConfirmSignUpInput:
    token: str = strawberry.field(description="The token from the sign-up email's link.")
    password: str = strawberry.field(
        description="The password chosen at signUp, again: whoever opens the link must know "
        "it, so nobody can sign up someone else's address with a password of their own."
    )


@strawberry.type
class ConfirmSignUpPayload(LoginPayload):
    account: Account | None = None
    enrollment_token: str | None = strawberry.field(
        default=None,
        description="Proves control of the new account when linking it; also printed on "
        "its invoices.",
    )


@strawberry.input
class ChangePasswordInput:
    current_password: str
    new_password: str


async def login(info: strawberry.Info, input: LoginInput) -> LoginPayload:
    context = info.context
    result = await sign_in.login(
        context.session, email=input.email, password=input.password, otp=input.otp,
        client_address=context.client_address, user_agent=context.user_agent,
        sessions=context.sessions, throttle=context.throttle, tunables=context.tunables,
    )
    if isinstance(result, UserErrorValue):
        return LoginPayload.failed(result)
    return LoginPayload.signed_in(result.tokens)


async def sign_up(info: strawberry.Info, input: SignUpInput) -> SignUpPayload:
    context = info.context
    errors = await sign_in.sign_up(
        context.session, email=input.email, password=input.password, name=input.name,
        account_name=input.account_name, client_address=context.client_address,
        tunables=context.tunables,
    )
    return SignUpPayload(ok=not errors, user_errors=UserError.list_from(errors))


async def confirm_sign_up(info: strawberry.Info, input: ConfirmSignUpInput) -> ConfirmSignUpPayload:
    context = info.context
    result = await sign_in.confirm_sign_up(
        context.session, token=input.token, password=input.password,
        client_address=context.client_address, user_agent=context.user_agent,
        sessions=context.sessions, enrollment_key=context.tunables.enrollment_key,
    )
    if isinstance(result, UserErrorValue):
        return ConfirmSignUpPayload(user_errors=UserError.list_from(result))
    # The request's permissions were resolved before the account existed: the new owner
    # holds everything on it, so the payload shows it as the next request will.
    context.grant_ownership(result.account.id)
    return ConfirmSignUpPayload(
        token=result.tokens.access_token, expires_at=result.tokens.expires_at,
        refresh_token=result.tokens.refresh_token, viewer=Viewer(user_pk=result.user.id),
        account=Account.from_model(result.account), enrollment_token=result.enrollment_token,
    )


async def change_password(info: strawberry.Info, input: ChangePasswordInput) -> LoginPayload:
    context = info.context
    result = await sign_in.change_password(
        context.session, user_id=context.signed_in().user_id,
        current_password=input.current_password, new_password=input.new_password,
        client_address=context.client_address, user_agent=context.user_agent,
        sessions=context.sessions, throttle=context.throttle,
    )
    if isinstance(result, UserErrorValue):
        return LoginPayload.failed(result)
    return LoginPayload.signed_in(result.tokens)


@strawberry.type
class SignInMutations:
    sign_up: SignUpPayload = strawberry.mutation(
        resolver=sign_up,
        description="Start a new login owning a new account: emails a confirmation link "
        "(confirmSignUp). Answers the same for an email that already has a login, whose "
        "owner is told by email instead.",
    )
    confirm_sign_up: ConfirmSignUpPayload = strawberry.mutation(
        resolver=confirm_sign_up,
        description="Create the login and account from the sign-up email's link (single "
        "use) and the password chosen at signUp; signs in.",
    )
    login: LoginPayload = strawberry.mutation(
        resolver=login,
        description="Sign in; returns an access token and a refresh token. Failures are "
        "throttled per email and client, per client, and per email (growing delays); "
        "`OTP_REQUIRED`/`INVALID_OTP` with two-factor sign-in.",
    )
    change_password: LoginPayload = strawberry.mutation(
        resolver=change_password,
        description="Ends every session and token, and signs in anew.",
    )
