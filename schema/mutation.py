"""The root Mutation: one line per mutation, the work is in ``resolvers/``."""

from __future__ import annotations

import strawberry

from schema import sign_in


@strawberry.type
class Mutation:
    sign_up: sign_in.SignUpPayload = strawberry.mutation(
        resolver=sign_in.sign_up, description="A new user owning a new account; signs it in."
    )
    login: sign_in.LoginPayload = strawberry.mutation(
        resolver=sign_in.login,
        description="Sign in; returns a bearer token. Repeated failures are throttled.",
    )
    change_password: sign_in.LoginPayload = strawberry.mutation(
        resolver=sign_in.change_password,
        description="Revokes every earlier token and returns a new one.",
    )
