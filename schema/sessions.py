"""Refreshing and ending sessions; resetting a forgotten password."""

from __future__ import annotations

import strawberry

from resolvers import password_reset, sessions
from resolvers.user_errors import UserError as UserErrorValue
from schema.payloads import UserError
from schema.sign_in import LoginPayload


@strawberry.input
class RefreshSessionInput:
    refresh_token: str


@strawberry.input
class LogoutInput:
    everywhere: bool = strawberry.field(
        default=False, description="End every session of this login, not only this one."
    )


@strawberry.type
class LogoutPayload:
    ok: bool


@strawberry.input
class RequestPasswordResetInput:
    email: str


@strawberry.type(description="Always `ok`: the answer never tells whether the email has a login.")
class RequestPasswordResetPayload:
    ok: bool


@strawberry.input
class ResetPasswordInput:
    token: str = strawberry.field(description="The token from the reset email's link.")
    password: str


@strawberry.type
class ResetPasswordPayload:
    ok: bool = False
    user_errors: list[UserError] = strawberry.field(default_factory=list)


async def refresh_session(info: strawberry.Info, input: RefreshSessionInput) -> LoginPayload:
    context = info.context
    result = await sessions.refresh(
        context.session, refresh_token=input.refresh_token, sessions=context.sessions
    )
    if isinstance(result, UserErrorValue):
        return LoginPayload.failed(result)
    return LoginPayload.signed_in(result)


async def logout(info: strawberry.Info, input: LogoutInput | None = None) -> LogoutPayload:
    context = info.context
    await sessions.logout(
        context.session, principal=context.signed_in(),
        everywhere=bool(input and input.everywhere),
    )
    return LogoutPayload(ok=True)


async def request_password_reset(
    info: strawberry.Info, input: RequestPasswordResetInput
) -> RequestPasswordResetPayload:
    context = info.context
    await password_reset.request_password_reset(
        context.session, email=input.email, client_address=context.client_address,
        tunables=context.tunables,
    )
    return RequestPasswordResetPayload(ok=True)


async def reset_password(info: strawberry.Info, input: ResetPasswordInput) -> ResetPasswordPayload:
    context = info.context
    result = await password_reset.reset_password(
        context.session, token=input.token, password=input.password
    )
    if isinstance(result, UserErrorValue):
        return ResetPasswordPayload(user_errors=UserError.list_from(result))
    return ResetPasswordPayload(ok=True)


@strawberry.type
class SessionMutations:
    refresh_session: LoginPayload = strawberry.mutation(
        resolver=refresh_session,
        description="Trade a refresh token for a new access token and refresh token. Each "
        "refresh token works once; a spent one presented again ends the whole session.",
    )
    logout: LogoutPayload = strawberry.mutation(
        resolver=logout,
        description="End this session (its access and refresh tokens stop working on every "
        "server at once), or with `everywhere: true` every session of this login.",
    )
    request_password_reset: RequestPasswordResetPayload = strawberry.mutation(
        resolver=request_password_reset,
        description="Email a single-use reset link (30 minutes) if the email has a login. "
        "Answers the same, in the same time, either way.",
    )
    reset_password: ResetPasswordPayload = strawberry.mutation(
        resolver=reset_password,
        description="Set a new password from a reset link; ends every session and token.",
    )
