"""Every enum of the API: the storage and auth enums, registered with Strawberry as they are."""

from __future__ import annotations

import strawberry

from auth import permissions
from models import (
    accounts, billing, contacts, credits, links, services, tickets, users,
)
from resolvers import invitations

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
