"""Signing in."""

from __future__ import annotations

import strawberry

from resolvers import sign_in
from resolvers.user_errors import UserError as UserErrorValue
from schema.accounts import Viewer
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


async def login(info: strawberry.Info, input: LoginInput) -> LoginPayload:
    context = info.context
    result = await sign_in.login(
        context.session, email=input.email, password=input.password,
        client_address=context.client_address, tokens=context.tokens, throttle=context.throttle,
    )
    if isinstance(result, UserErrorValue):
        return LoginPayload(user_errors=[UserError.from_value(result)])
    return LoginPayload(token=result.token, viewer=Viewer(user_pk=result.user.id))
