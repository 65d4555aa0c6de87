"""Signing up, signing in, changing a password."""

from __future__ import annotations

import strawberry

from auth.errors import Unauthenticated
from resolvers import sign_in
from resolvers.user_errors import UserError as UserErrorValue
from schema.accounts import Account, Viewer
from schema.payloads import UserError


@strawberry.input
class LoginInput:
    email: str
    password: str


@strawberry.type
class LoginPayload:
    token: str | None = None
    viewer: Viewer | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class SignUpInput:
    email: str
    password: str
    name: str
    account_name: str


@strawberry.type
class SignUpPayload:
    token: str | None = None
    viewer: Viewer | None = None
    account: Account | None = None
    enrollment_token: str | None = strawberry.field(
        default=None,
        description="Proves control of the new account when linking it; shown only this once.",
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class ChangePasswordInput:
    current_password: str
    new_password: str


async def login(info: strawberry.Info, input: LoginInput) -> LoginPayload:
    context = info.context
    result = await sign_in.login(
        context.session, email=input.email, password=input.password,
        client_address=context.client_address, tokens=context.tokens, throttle=context.throttle,
    )
    if isinstance(result, UserErrorValue):
        return LoginPayload(user_errors=[UserError.from_value(result)])
    return LoginPayload(token=result.token, viewer=Viewer(user_pk=result.user.id))


async def sign_up(info: strawberry.Info, input: SignUpInput) -> SignUpPayload:
    context = info.context
    result = await sign_in.sign_up(
        context.session, email=input.email, password=input.password, name=input.name,
        account_name=input.account_name, tokens=context.tokens,
    )
    if isinstance(result, list):
        return SignUpPayload(user_errors=[UserError.from_value(error) for error in result])
    # The request's permissions were resolved before the account existed: the new owner
    # holds everything on it, so the payload shows it as the next request will.
    context.grant_ownership(result.account.id)
    return SignUpPayload(
        token=result.token, viewer=Viewer(user_pk=result.user.id),
        account=Account.from_model(result.account), enrollment_token=result.enrollment_token,
    )


async def change_password(info: strawberry.Info, input: ChangePasswordInput) -> LoginPayload:
    context = info.context
    if context.principal is None:
        raise Unauthenticated("Sign in to change your password.")
    result = await sign_in.change_password(
        context.session, user_id=context.principal.user_id,
        current_password=input.current_password, new_password=input.new_password,
        tokens=context.tokens,
    )
    if isinstance(result, UserErrorValue):
        return LoginPayload(user_errors=[UserError.from_value(result)])
    return LoginPayload(token=result.token, viewer=Viewer(user_pk=result.user.id))


@strawberry.type
class SignInMutations:
    sign_up: SignUpPayload = strawberry.mutation(
        resolver=sign_up, description="A new user owning a new account; signs it in."
    )
    login: LoginPayload = strawberry.mutation(
        resolver=login,
        description="Sign in; returns a bearer token. Repeated failures are throttled.",
    )
    change_password: LoginPayload = strawberry.mutation(
        resolver=change_password,
        description="Revokes every earlier token and returns a new one.",
    )
