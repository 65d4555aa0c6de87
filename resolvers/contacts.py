"""Adding, changing and deleting an account's contacts (CONTACTS_MANAGE)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.errors import NotFound
from auth.permissions import Permission, parse_permissions
from auth.policy import AccessMap
from auth.principals import Principal
from models.accounts import Account, Membership
from models.contacts import Contact, EmailPreference
from models.users import User
from resolvers.accounts import require_account
from resolvers.audit_log import record_event
from resolvers.database import begin_write
from resolvers.grants import granted_permissions
from resolvers.invitations import revoke_pending
from resolvers.outbox import queue_account_notice
from resolvers.user_errors import UserError
from resolvers.validation import clean_email, clean_optional_text, clean_person_name, clean_tax_id

MAX_PHONE = 40
ADDRESS_LIMITS = {"line1": 200, "line2": 200, "city": 100, "postal_code": 20}


@dataclass(frozen=True)
class AddressValues:
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    postal_code: str | None = None
    country: str | None = None  # ISO 3166 alpha-2


@dataclass
class ContactChanges:
    """What to set; a field left as ``None`` in ``fields`` is not given and keeps its value."""

    name: str | None = None
    email: str | None = None
    phone: str | None = None
    address: AddressValues | None = None
    tax_id: str | None = None
    is_support_contact: bool | None = None
    email_preferences: list[EmailPreference] | None = None
    # Names of the fields given, so "clear the phone" (None given) differs from "leave it".
    given: set[str] = field(default_factory=set)


def _clean(changes: ContactChanges) -> dict[str, Any] | list[UserError]:
    """Column values for the given fields, or every problem found."""
    values: dict[str, Any] = {}
    errors: list[UserError] = []

    def take(column: str, result: Any) -> None:
        if isinstance(result, UserError):
            errors.append(result)
        else:
            values[column] = result

    if "name" in changes.given:
        take("name", clean_person_name(changes.name or ""))
    if "email" in changes.given:
        take("email", clean_email(changes.email or ""))
    if "phone" in changes.given:
        take("phone", clean_optional_text(changes.phone, max_length=MAX_PHONE, field=["phone"]))
    if "address" in changes.given:
        address = changes.address or AddressValues()
        for part, limit in ADDRESS_LIMITS.items():
            take(f"address_{part}" if part.startswith("line") else part,
                 clean_optional_text(getattr(address, part), max_length=limit, field=["address", part]))
        country = (address.country or "").strip().upper() or None
        if country is not None and not (len(country) == 2 and country.isalpha() and country.isascii()):
            errors.append(UserError(
                message="Use a two-letter ISO country code.", code="INVALID_COUNTRY",
                field=["address", "country"],
            ))
        else:
            values["country"] = country
    if "tax_id" in changes.given:
        # Printed on the invoices this contact is billed on (snapshotted when each is issued).
        take("tax_id", clean_tax_id(changes.tax_id, field=["taxId"]))
    if "is_support_contact" in changes.given:
        values["is_support_contact"] = bool(changes.is_support_contact)
    if "email_preferences" in changes.given:
        values["email_preferences"] = sorted({p.value for p in changes.email_preferences or []})
    return errors or values


async def _email_taken(session: AsyncSession, account_id: int, email: str, but: int | None) -> bool:
    statement = select(func.count()).select_from(Contact).where(
        Contact.account_id == account_id, Contact.email == email
    )
    if but is not None:
        statement = statement.where(Contact.id != but)
    return bool(await session.scalar(statement))


def _email_taken_error() -> UserError:
    return UserError(
        message="The account already has a contact with this email.", code="EMAIL_TAKEN",
        field=["email"],
    )


def snapshot(contact: Contact) -> dict[str, Any]:
    """What the audit log keeps of a contact."""
    return {
        "name": contact.name, "email": contact.email, "phone": contact.phone,
        "tax_id": contact.tax_id, "is_support_contact": contact.is_support_contact,
        "is_billing_contact": contact.is_billing_contact,
        "email_preferences": list(contact.email_preferences or []), "user_id": contact.user_id,
    }


async def add_contact(
    session: AsyncSession, access: AccessMap, *, principal: Principal, account_id: int,
    changes: ContactChanges,
) -> Contact | list[UserError]:
    await begin_write(session)
    await require_account(session, access, account_id, Permission.CONTACTS_MANAGE)
    changes.given |= {"name", "email"}
    values = _clean(changes)
    if isinstance(values, list):
        return values
    if await _email_taken(session, account_id, values["email"], None):
        return [_email_taken_error()]
    contact = Contact(account_id=account_id, **values)
    session.add(contact)
    await session.flush()
    record_event(session, actor=principal, action="contact.added", account_id=account_id,
                 target=("contact", contact.id), after=snapshot(contact))
    await session.commit()
    return contact


async def require_contact(
    session: AsyncSession, access: AccessMap, contact_id: int, permission: Permission
) -> Contact:
    """The contact a mutation acts on; unknown and invisible contacts are both NotFound."""
    contact = await session.get(Contact, contact_id)
    if contact is None or not access.can_see(contact.account_id):
        raise NotFound("No such contact.")
    await require_account(session, access, contact.account_id, permission)
    return contact


async def update_contact(
    session: AsyncSession, access: AccessMap, *, principal: Principal, contact_id: int,
    changes: ContactChanges,
) -> Contact | list[UserError]:
    await begin_write(session)
    contact = await require_contact(session, access, contact_id, Permission.CONTACTS_MANAGE)
    values = _clean(changes)
    if isinstance(values, list):
        return values
    if "email" in values and await _email_taken(session, contact.account_id, values["email"], contact.id):
        return [_email_taken_error()]
    before = snapshot(contact)
    if values.get("email", contact.email) != contact.email:
        # The link went to the old address; the new one gets its own if the contact is invited.
        await revoke_pending(session, principal=principal, reason="email_changed",
                             contact_id=contact.id)
    for column, value in values.items():
        setattr(contact, column, value)
    after = snapshot(contact)
    if after != before:
        record_event(session, actor=principal, action="contact.updated",
                     account_id=contact.account_id, target=("contact", contact.id),
                     before=before, after=after)
        await session.commit()
    return contact


async def delete_contact(
    session: AsyncSession, access: AccessMap, *, principal: Principal, contact_id: int
) -> Contact | UserError:
    """Immediate; the sub-account membership the contact carried, or its pending invitation,
    goes in the same transaction (revoked first: the foreign key would only unlink it).
    Taking a membership away is taking its permissions away: the caller must hold each of
    them, as ``setSubAccountPermissions`` requires (``resolvers.grants``)."""
    await begin_write(session)
    contact = await require_contact(session, access, contact_id, Permission.CONTACTS_MANAGE)
    before = snapshot(contact)
    membership = None if contact.user_id is None else await session.scalar(select(Membership).where(
        Membership.account_id == contact.account_id, Membership.user_id == contact.user_id
    ))
    if membership is not None:
        carried = parse_permissions(membership.permissions)
        refused = granted_permissions(access, contact.account_id, carried, frozenset(), field="contactId")
        if isinstance(refused, UserError):
            return refused
    await revoke_pending(session, principal=principal, reason="contact_deleted",
                         contact_id=contact.id)
    if membership is not None:
        before["revoked_permissions"] = list(membership.permissions)
        await session.execute(delete(Membership).where(Membership.id == membership.id))
    await session.execute(delete(Contact).where(Contact.id == contact.id))
    record_event(session, actor=principal, action="contact.deleted",
                 account_id=contact.account_id, target=("contact", contact.id), before=before)
    if membership is not None:
        await _sub_account_removed(session, account_id=contact.account_id,
                                   user_id=membership.user_id,
                                   permissions=before["revoked_permissions"])
    await session.commit()
    return contact


async def _sub_account_removed(
    session: AsyncSession, *, account_id: int, user_id: int, permissions: list[str]
) -> None:
    """The GENERAL notice of a sub-account's removal: to the owner and the GENERAL contacts
    that remain (the removed contact is gone by now, so it gets no copy)."""
    account = await session.get(Account, account_id)
    user = await session.get(User, user_id)
    assert account is not None and user is not None
    await queue_account_notice(
        session, account_id=account.id, category=EmailPreference.GENERAL,
        subject=f"Sub-account removed from {account.name}",
        body=f"{user.name} ({user.email}) is no longer a sub-account of {account.name} "
        f"({account.number}).\n\nPermissions revoked: {', '.join(permissions) or 'none'}\n",
        related=("user", user.id),
    )
