"""Sub-accounts: inviting a contact to become a login of the account, and changing what a
sub-account may do.

A ``CONTACTS_MANAGE`` holder grants only what it holds itself on the account (its effective
permissions from the ``AccessMap``), and cannot take away what it does not hold either; the
owner holds everything and cannot be restricted. Activating a contact only sends an
invitation (``resolvers.invitations``): the membership exists once its recipient accepts it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.errors import NotFound
from auth.permissions import Permission, Permissions, parse_permissions, permission_names
from auth.policy import AccessMap
from auth.principals import Principal
from models.accounts import Account, Membership
from models.contacts import Contact, EmailPreference
from models.identity import Invitation
from models.users import User
from resolvers.accounts import require_account
from resolvers.audit_log import record_event
from resolvers.database import begin_write
from resolvers.grants import granted_permissions
from resolvers.contacts import require_contact
from resolvers.invitations import create_invitation
from resolvers.outbox import queue_account_notice
from resolvers.tunables import Tunables
from resolvers.user_errors import UserError


@dataclass(frozen=True)
class Invited:
    contact: Contact
    invitation: Invitation


OWNER_NOT_RESTRICTABLE = UserError(
    message="The owner holds every permission and cannot be restricted.",
    code="OWNER_NOT_RESTRICTABLE", field=["userId"],
)
ALREADY_ACTIVATED = UserError(
    message="This contact is already a sub-account here.", code="ALREADY_ACTIVATED",
    field=["contactId"],
)


async def activate_sub_account(
    session: AsyncSession, access: AccessMap, *, principal: Principal, contact_id: int,
    permissions: Permissions, tunables: Tunables,
) -> Invited | UserError:
    """Invites the contact's email to join with ``permissions``; no login is created or attached.

    The answer never depends on whether the email has a login (that is decided when the
    invitation is accepted, by its recipient): only on what the account's managers can already
    see, its owner and its members (``Account.members``). Activating a contact that has a
    pending invitation is a resend: that invitation is revoked and a new link goes out.
    """
    await begin_write(session)
    contact = await require_contact(session, access, contact_id, Permission.CONTACTS_MANAGE)
    # One invitation in flight per contact, even when two managers click at once.
    await session.execute(
        select(Contact.id).where(Contact.id == contact.id).with_for_update(key_share=True)
    )
    account = await session.get(Account, contact.account_id)
    assert account is not None
    granted = granted_permissions(access, account.id, frozenset(), permissions)
    if isinstance(granted, UserError):
        return granted
    owner_email = await session.scalar(select(User.email).where(User.id == account.owner_id))
    if contact.email == owner_email:
        return UserError(
            message="This contact is the account's owner, who holds every permission and "
            "cannot be restricted.", code="OWNER_NOT_RESTRICTABLE", field=["contactId"],
        )
    member = await session.scalar(
        select(Membership.id).join(User, User.id == Membership.user_id)
        .where(Membership.account_id == account.id, User.email == contact.email)
    )
    if contact.user_id is not None or member is not None:
        return ALREADY_ACTIVATED
    invitation = await create_invitation(
        session, principal=principal, account=account, contact=contact, permissions=granted,
        tunables=tunables,
    )
    if isinstance(invitation, UserError):
        return invitation
    await session.commit()
    return Invited(contact=contact, invitation=invitation)


async def set_sub_account_permissions(
    session: AsyncSession, access: AccessMap, *, principal: Principal, account_id: int,
    user_id: int, permissions: Permissions,
) -> Membership | UserError:
    await begin_write(session)
    account = await require_account(session, access, account_id, Permission.CONTACTS_MANAGE)
    if user_id == account.owner_id:
        return OWNER_NOT_RESTRICTABLE
    membership = await session.scalar(select(Membership).where(
        Membership.account_id == account_id, Membership.user_id == user_id
    ))
    if membership is None:
        raise NotFound("No such sub-account on this account.")
    current = parse_permissions(membership.permissions)
    granted = granted_permissions(access, account_id, current, permissions)
    if isinstance(granted, UserError):
        return granted
    if granted != current:
        membership.permissions = permission_names(granted)
        record_event(
            session, actor=principal, action="subaccount.permissions_changed",
            account_id=account_id, target=("user", user_id),
            before={"permissions": permission_names(current)}, after={"permissions": permission_names(granted)},
        )
        user = await session.get(User, user_id)
        assert user is not None  # the membership goes with its user (ON DELETE CASCADE)
        await queue_account_notice(
            session, account_id=account_id, category=EmailPreference.GENERAL,
            subject=f"Sub-account permissions changed on {account.name}",
            body=f"The permissions of {user.name} ({user.email}) on {account.name} "
            f"({account.number}) changed.\n\nBefore: {', '.join(permission_names(current)) or 'none'}"
            f"\nNow: {', '.join(permission_names(granted)) or 'none'}\n",
            related=("user", user_id),
        )
        await session.commit()
    return membership
