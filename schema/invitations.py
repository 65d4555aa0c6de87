"""Invitations to become a sub-account: listing, accepting (from the emailed link), revoking."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from auth.permissions import Permission, parse_permissions, sorted_permissions
from auth.policy import load_access
from auth.principals import Principal
from resolvers import invitations
from resolvers.user_errors import UserError as UserErrorValue
from schema.accounts import Account, Viewer
from schema.contacts import Contact
from schema.directives import Requires, gated
from schema.enums import InvitationStatus
from schema.payloads import UserError
from schema.relay import Node, decode_id_of
from schema.sign_in import LoginPayload
from schema.users import user_name


@strawberry.type(
    description="A sub-account offered to an email by a CONTACTS_MANAGE holder; the membership "
    "exists once its recipient accepts it (acceptInvitation). The link itself is never shown.",
    directives=[Requires(permission=Permission.CONTACTS_MANAGE)],
)
class Invitation(Node):
    email: str
    permissions: list[Permission] = strawberry.field(
        description="What the sub-account gets on acceptance."
    )
    status: InvitationStatus
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None
    revoked_at: datetime | None
    contact_pk: strawberry.Private[int | None]
    invited_by_pk: strawberry.Private[int | None]

    @strawberry.field(description="Who sent it; null once that login is gone.")
    async def invited_by_name(self, info: strawberry.Info) -> str | None:
        return await user_name(info, self.invited_by_pk)

    @gated(
        Permission.CONTACTS_READ,
        description="The contact it was sent to; null once the contact is deleted (which "
        "revokes a pending invitation).",
    )
    async def contact(self, info: strawberry.Info) -> Contact | None:
        if self.contact_pk is None:
            return None
        row = await info.context.loaders.contact_by_id.load(self.contact_pk)
        return None if row is None else Contact.from_model(row)

    @classmethod
    def from_model(cls, row: Any) -> Invitation:
        """From the ORM object or a loader's table row (the same attribute names)."""
        return cls(
            pk=row.id, account_id=row.account_id, email=row.email,
            permissions=sorted_permissions(parse_permissions(row.permissions)),
            status=invitations.status_of(row.accepted_at, row.revoked_at, row.expires_at),
            created_at=row.created_at, expires_at=row.expires_at, accepted_at=row.accepted_at,
            revoked_at=row.revoked_at, contact_pk=row.contact_id, invited_by_pk=row.invited_by_id,
        )


@strawberry.input
class AcceptInvitationInput:
    token: str = strawberry.field(description="The token from the invitation email's link.")
    name: str | None = strawberry.field(
        default=None, description="Your name, for a new login. Ignored when you accept "
        "signed in as the existing login of the invited email.",
    )
    password: str | None = strawberry.field(
        default=None, description="Your password, for a new login; ignored like `name`.",
    )


@strawberry.type(
    description="A new login is signed in (`token`, `refreshToken`); an existing login "
    "accepting while signed in keeps its session (`token` is null)."
)
class AcceptInvitationPayload(LoginPayload):
    account: Account | None = strawberry.field(default=None, description="The account joined.")


@strawberry.input
class RevokeInvitationInput:
    invitation_id: strawberry.ID


@strawberry.type
class RevokeInvitationPayload:
    invitation: Invitation | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


async def accept_invitation(
    info: strawberry.Info, input: AcceptInvitationInput
) -> AcceptInvitationPayload:
    context = info.context
    result = await invitations.accept_invitation(
        context.session, principal=context.principal, token=input.token, name=input.name,
        password=input.password, client_address=context.client_address,
        user_agent=context.user_agent, sessions=context.sessions,
    )
    if isinstance(result, (UserErrorValue, list)):
        return AcceptInvitationPayload(user_errors=UserError.list_from(result))
    if context.principal is None:
        # An anonymous request made the login: the payload shows what its next request will.
        context.access = await load_access(context.session, Principal(user_id=result.user.id))
    else:
        await context.reload_access()
    account = await context.loaders.account_by_id.load(result.membership.account_id)
    if result.tokens is None:
        payload = AcceptInvitationPayload(viewer=Viewer(user_pk=result.user.id))
    else:
        payload = AcceptInvitationPayload.signed_in(result.tokens)  # type: ignore[assignment]
    payload.account = Account.from_model(account)
    return payload


async def revoke_invitation(
    info: strawberry.Info, input: RevokeInvitationInput
) -> RevokeInvitationPayload:
    context = info.context
    result = await invitations.revoke_invitation(
        context.session, context.access, principal=context.signed_in(),
        invitation_id=decode_id_of(input.invitation_id, "Invitation", field="invitationId"),
    )
    if isinstance(result, UserErrorValue):
        return RevokeInvitationPayload(user_errors=UserError.list_from(result))
    return RevokeInvitationPayload(invitation=Invitation.from_model(result))


@strawberry.type
class InvitationMutations:
    accept_invitation: AcceptInvitationPayload = strawberry.mutation(
        resolver=accept_invitation,
        description="Join the account from an invitation email's link (single use). An email "
        "without a login gets one, with your name and password, signed in; an email with a "
        "login must accept signed in as it (`SIGN_IN_REQUIRED`, `WRONG_USER`).",
    )
    revoke_invitation: RevokeInvitationPayload = strawberry.mutation(
        resolver=revoke_invitation,
        description="Withdraw a pending invitation; its link stops working. Needs "
        "CONTACTS_MANAGE.",
    )


# Payloads handing out guarded objects: listed in ``schema.GUARDED_TYPES``.
PAYLOAD_TYPES: list[type] = [RevokeInvitationPayload]
