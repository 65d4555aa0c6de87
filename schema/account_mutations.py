"""Registering another account and renaming one."""

from __future__ import annotations

import strawberry

from resolvers import account_mutations, links
from resolvers.user_errors import UserError as UserErrorValue
from schema.accounts import Account
from schema.enums import LinkKind
from schema.links import LinkGroup
from schema.payloads import UserError
from schema.relay import decode_id_of


@strawberry.input(description="Links the new account as it is registered, as `linkAccount` "
                  "would; no proof is needed, the new account being yours.")
class RegisterAccountLinkInput:
    head_account_id: strawberry.ID
    kind: LinkKind
    friendly_name: str | None = None
    group_name: str | None = strawberry.field(
        default=None, description="Names the group when this link creates it."
    )


@strawberry.input
class RegisterAccountInput:
    name: str
    link: RegisterAccountLinkInput | None = strawberry.field(
        default=None,
        description="Join this group in the same step: LINKS_MANAGE on the head (and "
        "BILLING_MANAGE for BILLING). If the link fails, no account is created.",
    )


@strawberry.type
class RegisterAccountPayload:
    account: Account | None = None
    enrollment_token: str | None = strawberry.field(
        default=None,
        description="Proves control of the new account when linking it; shown only this once.",
    )
    link_group: LinkGroup | None = strawberry.field(
        default=None, description="The group the new account joined, when `link` was given."
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
    principal = context.signed_in()
    link = None if input.link is None else links.LinkRequest(
        head_account_id=decode_id_of(input.link.head_account_id, "Account",
                                     field="link.headAccountId"),
        kind=input.link.kind, friendly_name=input.link.friendly_name,
        group_name=input.link.group_name,
    )
    result = await account_mutations.register_account(
        context.session, context.access, principal=principal, name=input.name,
        enrollment_key=context.tunables.enrollment_key, link=link,
    )
    if isinstance(result, UserErrorValue):
        return RegisterAccountPayload(user_errors=UserError.list_from(result))
    linked = result.linked
    if linked is None:
        context.grant_ownership(result.account.id)
    else:
        await context.reload_access()  # the new account, and what flows to it from the head
    return RegisterAccountPayload(
        account=Account.from_model(result.account), enrollment_token=result.enrollment_token,
        link_group=None if linked is None
        else LinkGroup.from_model(linked.group, head_account_id=linked.head_account_id),
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
        description="Another account owned by you, with its own enrollment token; with "
        "`link`, linked into a group in the same step (the errors are `linkAccount`'s, their "
        "fields under `link`).",
    )
    rename_account: RenameAccountPayload = strawberry.mutation(
        resolver=rename_account, description="Needs PROFILE_MANAGE on the account."
    )
    rotate_enrollment_token: RotateEnrollmentTokenPayload = strawberry.mutation(
        resolver=rotate_enrollment_token,
        description="LINKS_MANAGE. A new enrollment token; the old one stops working at once.",
    )
