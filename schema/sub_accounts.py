"""Activating a contact as a sub-account, and setting a sub-account's permissions."""

from __future__ import annotations

import strawberry

from auth.permissions import Permission
from resolvers import sub_accounts
from resolvers.user_errors import UserError as UserErrorValue
from schema.accounts import Membership
from schema.contacts import Contact
from schema.payloads import UserError
from schema.relay import decode_id_of


@strawberry.input
class ActivateSubAccountInput:
    contact_id: strawberry.ID
    password: str | None = strawberry.field(
        default=None,
        description="The new login's password; ignored when a user with the contact's email "
        "exists (that user is attached).",
    )
    permissions: list[Permission] = strawberry.field(
        description="At most what you hold on the account yourself."
    )


@strawberry.type
class ActivateSubAccountPayload:
    contact: Contact | None = None
    membership: Membership | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class SetSubAccountPermissionsInput:
    account_id: strawberry.ID
    user_id: strawberry.ID
    permissions: list[Permission] = strawberry.field(
        description="The whole new set. You can add or remove only permissions you hold here."
    )


@strawberry.type
class SetSubAccountPermissionsPayload:
    membership: Membership | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


async def activate_sub_account(
    info: strawberry.Info, input: ActivateSubAccountInput
) -> ActivateSubAccountPayload:
    context = info.context
    result = await sub_accounts.activate_sub_account(
        context.session, context.access, principal=context.signed_in(),
        contact_id=decode_id_of(input.contact_id, "Contact", field="contactId"),
        password=input.password, permissions=frozenset(input.permissions),
    )
    if isinstance(result, UserErrorValue):
        return ActivateSubAccountPayload(user_errors=UserError.list_from(result))
    await context.reload_access()
    return ActivateSubAccountPayload(
        contact=Contact.from_model(result.contact),
        membership=Membership.from_model(result.membership),
    )


async def set_sub_account_permissions(
    info: strawberry.Info, input: SetSubAccountPermissionsInput
) -> SetSubAccountPermissionsPayload:
    context = info.context
    result = await sub_accounts.set_sub_account_permissions(
        context.session, context.access, principal=context.signed_in(),
        account_id=decode_id_of(input.account_id, "Account", field="accountId"),
        user_id=decode_id_of(input.user_id, "User", field="userId"),
        permissions=frozenset(input.permissions),
    )
    if isinstance(result, UserErrorValue):
        return SetSubAccountPermissionsPayload(user_errors=UserError.list_from(result))
    await context.reload_access()
    return SetSubAccountPermissionsPayload(membership=Membership.from_model(result))


@strawberry.type
class SubAccountMutations:
    activate_sub_account: ActivateSubAccountPayload = strawberry.mutation(
        resolver=activate_sub_account,
        description="Creates (or attaches) a login for the contact with the chosen permissions. "
        "Needs CONTACTS_MANAGE; grants at most what you hold.",
    )
    set_sub_account_permissions: SetSubAccountPermissionsPayload = strawberry.mutation(
        resolver=set_sub_account_permissions,
        description="Needs CONTACTS_MANAGE; no escalation; the owner cannot be restricted.",
    )
