"""The permission vocabulary: families, what flows through each link kind, what staff hold."""

from __future__ import annotations

import enum

from models.links import LinkKind
from models.users import StaffRole


class Permission(enum.Enum):
    # billing family
    INVOICES_READ = "INVOICES_READ"
    CREDITS_READ = "CREDITS_READ"
    CREDITS_PURCHASE = "CREDITS_PURCHASE"
    CREDITS_TRANSFER = "CREDITS_TRANSFER"
    BILLING_MANAGE = "BILLING_MANAGE"
    INVOICES_PAY = "INVOICES_PAY"
    # technical family
    SERVICES_READ = "SERVICES_READ"
    TICKETS_READ = "TICKETS_READ"
    TICKETS_WRITE = "TICKETS_WRITE"
    # admin family
    PROFILE_MANAGE = "PROFILE_MANAGE"
    CONTACTS_READ = "CONTACTS_READ"
    CONTACTS_MANAGE = "CONTACTS_MANAGE"
    LINKS_MANAGE = "LINKS_MANAGE"
    EMAILS_READ = "EMAILS_READ"
    AUDIT_READ = "AUDIT_READ"


P = Permission
Permissions = frozenset[Permission]

ALL: Permissions = frozenset(Permission)
NONE: Permissions = frozenset()
BILLING_FAMILY: Permissions = frozenset(
    {P.INVOICES_READ, P.CREDITS_READ, P.CREDITS_PURCHASE, P.CREDITS_TRANSFER, P.BILLING_MANAGE,
     P.INVOICES_PAY}
)
TECHNICAL_FAMILY: Permissions = frozenset({P.SERVICES_READ, P.TICKETS_READ, P.TICKETS_WRITE})
ADMIN_FAMILY: Permissions = ALL - BILLING_FAMILY - TECHNICAL_FAMILY

# The half of a head account's permissions that reaches the members of a group of each kind.
# CONTACTS_MANAGE, LINKS_MANAGE and AUDIT_READ are in neither: they never flow.
LINK_SCOPES: dict[LinkKind, Permissions] = {
    LinkKind.MANAGEMENT: TECHNICAL_FAMILY | {P.PROFILE_MANAGE, P.CONTACTS_READ, P.EMAILS_READ},
    LinkKind.BILLING: BILLING_FAMILY,
}

_STAFF_COMMON: Permissions = frozenset({P.EMAILS_READ, P.AUDIT_READ})
STAFF_PERMISSIONS: dict[StaffRole, Permissions] = {
    StaffRole.SUPPORT: TECHNICAL_FAMILY | {P.CONTACTS_READ} | _STAFF_COMMON,
    StaffRole.BILLING: BILLING_FAMILY | _STAFF_COMMON,
    StaffRole.ADMIN: ALL,
}


# Staff roles that may run billing operations (recordUsage, runInvoicing): DESIGN §1 says
# "staff"; usage and invoice runs are billing work, so SUPPORT is not among them.
BILLING_STAFF_ROLES: frozenset[StaffRole] = frozenset({StaffRole.BILLING, StaffRole.ADMIN})


def parse_permissions(names: list[str]) -> Permissions:
    """Stored names back to the enum; a name no longer in the vocabulary grants nothing."""
    known = Permission._value2member_map_
    return frozenset(known[name] for name in names if name in known)  # type: ignore[misc]


def sorted_permissions(permissions: Permissions) -> list[Permission]:
    """Declaration order, so clients get a stable list."""
    return [permission for permission in Permission if permission in permissions]


def permission_names(permissions: Permissions) -> list[str]:
    """What is stored and shown: the names, in declaration order."""
    return [permission.value for permission in sorted_permissions(permissions)]
