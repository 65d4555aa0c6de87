"""The root Mutation: one line per mutation, the work is in ``resolvers/``."""

from __future__ import annotations

import strawberry

from schema import sign_in


@strawberry.type
class Mutation:
    login: sign_in.LoginPayload = strawberry.mutation(
        resolver=sign_in.login, description="Sign in; returns a bearer token."
    )
