"""Registering another account and renaming one."""

from __future__ import annotations

import strawberry

from resolvers import account_mutations
from resolvers.user_errors import UserError as UserErrorValue
from schema.accounts import Account
from schema.payloads import UserError
from schema.relay import decode_id_of


@strawberry.input
class RegisterAccountInput:
    name: str


@strawberry.type
class RegisterAccountPayload:
    account: Account | None = None
    enrollment_token: str | None = strawberry.field(
        default=None,
        description="Proves control of the new account when linking it; shown only this once.",
    )
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class RenameAccountInput:
    account_id: strawberry.ID
    name: str = strawberry.field(description="1–50 characters after trimming.")


@strawberry.type
class RenameAccountPayload:
    account: Account | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


async def register_account(info: strawberry.Info, input: RegisterAccountInput) -> RegisterAccountPayload:
    context = info.context
    result = await account_mutations.register_account(
        context.session, principal=context.signed_in(), name=input.name,
        enrollment_key=context.tunables.enrollment_key,
    )
    if isinstance(result, UserErrorValue):
        return RegisterAccountPayload(user_errors=UserError.list_from(result))
    context.grant_ownership(result.account.id)
    return RegisterAccountPayload(
        account=Account.from_model(result.account), enrollment_token=result.enrollment_token
    )


async def rename_account(info: strawberry.Info, input: RenameAccountInput) -> RenameAccountPayload:
    context = info.context
    result = await account_mutations.rename_account(
        context.session, context.access, principal=context.signed_in(),
        account_id=decode_id_of(input.account_id, "Account", field="accountId"), name=input.name,
    )
    if isinstance(result, UserErrorValue):
        return RenameAccountPayload(user_errors=UserError.list_from(result))
    return RenameAccountPayload(account=Account.from_model(result))


@strawberry.input
class RotateEnrollmentTokenInput:
    account_id: strawberry.ID


@strawberry.type
class RotateEnrollmentTokenPayload:
    enrollment_token: str | None = strawberry.field(
        default=None, description="The new token; the old one no longer proves anything.")
    user_errors: list[UserError] = strawberry.field(default_factory=list)


async def rotate_enrollment_token(
    info: strawberry.Info, input: RotateEnrollmentTokenInput
) -> RotateEnrollmentTokenPayload:
    context = info.context
    token = await account_mutations.rotate_enrollment_token(
        context.session, context.access, principal=context.signed_in(),
        account_id=decode_id_of(input.account_id, "Account", field="accountId"),
        enrollment_key=context.tunables.enrollment_key,
    )
    return RotateEnrollmentTokenPayload(enrollment_token=token)


@strawberry.type
class AccountMutations:
    register_account: RegisterAccountPayload = strawberry.mutation(
        resolver=register_account,
        description="Another account owned by you, with its own enrollment token.",
    )
    rename_account: RenameAccountPayload = strawberry.mutation(
        resolver=rename_account, description="Needs PROFILE_MANAGE on the account."
    )
    rotate_enrollment_token: RotateEnrollmentTokenPayload = strawberry.mutation(
        resolver=rotate_enrollment_token,
        description="LINKS_MANAGE. A new enrollment token; the old one stops working at once.",
    )
