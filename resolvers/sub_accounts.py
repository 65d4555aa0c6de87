"""Sub-accounts: activating a contact as a login, and changing what it may do.

A ``CONTACTS_MANAGE`` holder grants only what it holds itself on the account (its effective
permissions from the ``AccessMap``), and cannot take away what it does not hold either; the
owner holds everything and cannot be restricted.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.errors import NotFound
from auth.passwords import hash_password
from auth.permissions import Permission, Permissions, sorted_permissions, parse_permissions
from auth.policy import AccessMap
from auth.principals import Principal
from models.accounts import Account, Membership
from models.contacts import Contact
from models.users import User
from resolvers.accounts import require_account
from resolvers.audit_log import record_event
from resolvers.database import begin_write
from resolvers.contacts import require_contact
from resolvers.user_errors import UserError
from resolvers.validation import clean_password


@dataclass(frozen=True)
class Activated:
    contact: Contact
    membership: Membership
    created_user: bool


def _names(permissions: Permissions) -> list[str]:
    return [permission.value for permission in sorted_permissions(permissions)]


def _not_held(missing: Permissions) -> UserError:
    return UserError(
        message="You can only grant (or take away) permissions you hold on this account "
        f"yourself: {', '.join(_names(missing))}.",
        code="PERMISSION_NOT_HELD", field=["permissions"],
    )


OWNER_NOT_RESTRICTABLE = UserError(
    message="The owner holds every permission and cannot be restricted.",
    code="OWNER_NOT_RESTRICTABLE", field=["userId"],
)


def granted_permissions(
    access: AccessMap, account_id: int, current: Permissions, requested: Permissions
) -> Permissions | UserError:
    """The new set: the caller decides within what it holds; the rest stays as it was."""
    held = access.permissions_on(account_id)
    added = requested - current
    removed = current - requested
    if (added | removed) - held:
        return _not_held((added | removed) - held)
    return requested


async def activate_sub_account(
    session: AsyncSession, access: AccessMap, *, principal: Principal, contact_id: int,
    password: str | None, permissions: Permissions,
) -> Activated | UserError:
    """Creates a login for the contact's email (or attaches the existing one) and a membership."""
    await begin_write(session)
    contact = await require_contact(session, access, contact_id, Permission.CONTACTS_MANAGE)
    account = await session.get(Account, contact.account_id)
    assert account is not None
    granted = granted_permissions(access, account.id, frozenset(), permissions)
    if isinstance(granted, UserError):
        return granted
    user = await session.scalar(select(User).where(User.email == contact.email))
    if user is not None and user.id == account.owner_id:
        return OWNER_NOT_RESTRICTABLE
    if user is not None and user.staff_role is not None:
        return UserError(
            message="Staff logins cannot be sub-accounts.", code="STAFF_USER", field=["contactId"],
        )
    already = contact.user_id is not None or (user is not None and await session.scalar(
        select(Membership.id).where(Membership.user_id == user.id, Membership.account_id == account.id)
    ) is not None)
    if already:
        return UserError(
            message="This contact is already a sub-account here.", code="ALREADY_ACTIVATED",
            field=["contactId"],
        )
    created = user is None
    if user is None:
        checked = clean_password(password or "")
        if isinstance(checked, UserError):
            return checked
        user = User(email=contact.email, name=contact.name, password_hash=hash_password(checked))
        session.add(user)
        await session.flush()
    names = _names(granted)
    membership = Membership(user_id=user.id, account_id=account.id, permissions=names)
    session.add(membership)
    contact.user_id = user.id
    await session.flush()
    record_event(
        session, actor=principal, action="subaccount.activated", account_id=account.id,
        target=("user", user.id), before={"permissions": []},
        after={"permissions": names, "contact_id": contact.id, "user_created": created},
    )
    await session.commit()
    return Activated(contact=contact, membership=membership, created_user=created)


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
        membership.permissions = _names(granted)
        record_event(
            session, actor=principal, action="subaccount.permissions_changed",
            account_id=account_id, target=("user", user_id),
            before={"permissions": _names(current)}, after={"permissions": _names(granted)},
        )
        await session.commit()
    return membership
