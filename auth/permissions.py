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


# What each permission lets its holder do, in one sentence: the Permission enum's documentation
# (introspection, GraphiQL, schema.graphql). The schema adds which fields and types each one
# gates, read from the ``@requires`` directives themselves (schema/directives.py).
DESCRIPTIONS: dict[Permission, str] = {
    Permission.INVOICES_READ: "See invoices, payments, what services cost and the billing contact.",
    Permission.CREDITS_READ: "See credit balances, the credit ledger and low-credit reminders.",
    Permission.CREDITS_PURCHASE: "Buy prepaid credits for the account (`purchaseCredits`).",
    Permission.CREDITS_TRANSFER: "Move credits from the account to another one (`transferCredits`).",
    Permission.BILLING_MANAGE: "Manage billing: cards on file, the billing contact, low-credit "
    "reminders, and (with LINKS_MANAGE) linking accounts into a BILLING group it heads.",
    Permission.INVOICES_PAY: "Pay the account's invoices with a card on file (`payInvoice`) and "
    "see those cards.",
    Permission.SERVICES_READ: "See the account's services (their prices need INVOICES_READ).",
    Permission.TICKETS_READ: "See the account's support tickets and their messages.",
    Permission.TICKETS_WRITE: "Open, answer and close support tickets (`openTicket`, "
    "`replyToTicket`, `closeTicket`).",
    Permission.PROFILE_MANAGE: "Change the account's profile: its name (`renameAccount`).",
    Permission.CONTACTS_READ: "See the account's contacts.",
    Permission.CONTACTS_MANAGE: "Add, change and delete contacts, and manage sub-accounts: "
    "invite them, set their permissions, see members and invitations.",
    Permission.LINKS_MANAGE: "Link the account into groups and out of them, and read or rotate "
    "its enrollment token.",
    Permission.EMAILS_READ: "See the emails sent about the account.",
    Permission.AUDIT_READ: "See the account's audit log: who changed what, and when.",
}


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
