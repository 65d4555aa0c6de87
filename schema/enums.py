"""Every enum of the API: the storage and auth enums, registered with Strawberry as they are,
and ``UserErrorCode``, generated from the registry of codes (resolvers/user_errors.py)."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence

import strawberry
from strawberry.types.enum import StrawberryEnumDefinition

from auth import permissions
from models import (
    accounts, billing, contacts, credits, links, services, tickets, users,
)
from resolvers import invitations
from resolvers.user_errors import USER_ERROR_CODES

Permission = strawberry.enum(
    permissions.Permission, description="What a user may do on one account (DESIGN §1)."
)
AccountStatus = strawberry.enum(accounts.AccountStatus)
LinkKind = strawberry.enum(
    links.LinkKind,
    description="MANAGEMENT: manage and view together; BILLING: one consolidated invoice.",
)
LinkMethod = strawberry.enum(links.LinkMethod)
StaffRole = strawberry.enum(users.StaffRole)
ServiceStatus = strawberry.enum(services.ServiceStatus)
LedgerEntryKind = strawberry.enum(credits.LedgerEntryKind)
InvoiceStatus = strawberry.enum(billing.InvoiceStatus)
EmailPreference = strawberry.enum(contacts.EmailPreference)
Department = strawberry.enum(tickets.Department)
TicketStatus = strawberry.enum(tickets.TicketStatus)
AuthorKind = strawberry.enum(tickets.AuthorKind)
InvitationStatus = strawberry.enum(
    invitations.InvitationStatus,
    description="Derived: PENDING until accepted, revoked or past `expiresAt`.",
)

# A StrEnum, so a member equals its code: ``UserErrorCode.ALREADY_PAID == "ALREADY_PAID"``.
UserErrorCode = strawberry.enum(
    enum.StrEnum(  # type: ignore[misc]
        "UserErrorCode", [(code, code) for code in sorted(USER_ERROR_CODES)]
    ),
    description="Why a mutation refused, in `userErrors`: stable, for programs to compare "
    "(the `message` is for people). It was a `String` before: the JSON carries the same "
    "string, so clients comparing strings keep working.",
)


def _definition(enum_type: type) -> StrawberryEnumDefinition:
    definition = enum_type.__strawberry_definition__  # type: ignore[attr-defined]
    assert isinstance(definition, StrawberryEnumDefinition)
    return definition


for _value in _definition(UserErrorCode).values:
    _value.description = USER_ERROR_CODES[_value.value]


def permission_description(permission: permissions.Permission, gates: Sequence[str] | None) -> str:
    """The permission's sentence (auth/permissions.py), then what it gates in the schema
    (``None``: not known yet, the schema is not built)."""
    sentence = permissions.DESCRIPTIONS[permission]
    if gates is None:
        return sentence
    if not gates:
        return f"{sentence}\n\nGates no field or type: only mutations check it."
    return f"{sentence}\n\nGates: {', '.join(gates)}."


def describe_permissions(gates: Mapping[permissions.Permission, Sequence[str]] | None) -> None:
    """Sets every ``Permission`` value's description from scratch (so building the schema
    again never adds to it); ``gates`` lists what carries each one's ``@requires``."""
    for value in _definition(Permission).values:
        permission = permissions.Permission(value.value)
        value.description = permission_description(
            permission, None if gates is None else gates.get(permission, ())
        )


describe_permissions(None)  # the sentences alone, until a schema build adds the gates
