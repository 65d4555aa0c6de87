"""Activating a contact as a sub-account (an emailed invitation), and setting a sub-account's
permissions."""

from __future__ import annotations

import strawberry

from auth.permissions import Permission
from resolvers import sub_accounts
from resolvers.user_errors import UserError as UserErrorValue
from schema.accounts import Membership
from schema.contacts import Contact
from schema.invitations import Invitation, InvitationMutations
from schema.payloads import UserError
from schema.relay import decode_id_of


@strawberry.input
class ActivateSubAccountInput:
    contact_id: strawberry.ID
    permissions: list[Permission] = strawberry.field(
        description="At most what you hold on the account yourself; granted on acceptance."
    )


@strawberry.type(
    description="The invitation emailed to the contact. The answer is the same whether or not "
    "the email has a login: the invitee decides when accepting."
)
class ActivateSubAccountPayload:
    contact: Contact | None = None
    invitation: Invitation | None = None
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
        permissions=frozenset(input.permissions), tunables=context.tunables,
    )
    if isinstance(result, UserErrorValue):
        return ActivateSubAccountPayload(user_errors=UserError.list_from(result))
    return ActivateSubAccountPayload(
        contact=Contact.from_model(result.contact),
        invitation=Invitation.from_model(result.invitation),
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
class SubAccountMutations(InvitationMutations):
    """With acceptInvitation and revokeInvitation, the other half of activateSubAccount."""

    activate_sub_account: ActivateSubAccountPayload = strawberry.mutation(
        resolver=activate_sub_account,
        description="Emails the contact a single-use invitation to join with the chosen "
        "permissions (acceptInvitation); again for a contact with a pending invitation, it "
        "replaces it with a new link. Needs CONTACTS_MANAGE; grants at most what you hold.",
    )
    set_sub_account_permissions: SetSubAccountPermissionsPayload = strawberry.mutation(
        resolver=set_sub_account_permissions,
        description="Needs CONTACTS_MANAGE; no escalation; the owner cannot be restricted.",
    )


# Payloads handing out guarded objects: listed in ``schema.GUARDED_TYPES``.
PAYLOAD_TYPES: list[type] = [ActivateSubAccountPayload]
