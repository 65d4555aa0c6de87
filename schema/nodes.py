"""``node(id:)`` and ``nodes(ids:)``: any object by global ID, behind the same checks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import strawberry

from auth.errors import LinkgateError, NotFound
from auth.permissions import Permission
from schema.accounts import Account
from schema.audit import AuditEvent
from schema.contacts import Contact
from schema.credits import CreditLedgerEntry
from schema.directives import deny, object_error
from schema.invitations import Invitation
from schema.invoices import Invoice
from schema.links import LinkGroup, can_see_link_group, load_link_group
from schema.notifications import Notification
from schema.payments import PaymentMethod
from schema.relay import Node, decode_global_id
from schema.services import Service
from schema.tickets import Ticket

MAX_NODES = 100

@dataclass(frozen=True)
class _Fetch:
    """How to load one ``Node`` type by primary key."""

    loader: str
    # None: the row is no object of the API (security mail, a login's own audit events).
    convert: Callable[[Any], Node | None]

_BY_LOADER: dict[str, _Fetch] = {
    "Account": _Fetch("account_by_id", Account.from_model),
    "Contact": _Fetch("contact_by_id", Contact.from_model),
    "Service": _Fetch("service_by_id", Service.from_model),
    "Invoice": _Fetch("invoice_by_id", Invoice.from_model),
    "Ticket": _Fetch("ticket_by_id", Ticket.from_model),
    "CreditLedgerEntry": _Fetch("ledger_entry_by_id", CreditLedgerEntry.from_model),
    "Notification": _Fetch("notification_by_id", Notification.from_model),
    "AuditEvent": _Fetch("audit_event_by_id", AuditEvent.from_model),
    "Invitation": _Fetch("invitation_by_id", Invitation.from_model),
    # A removed card is gone from the API, though its row stays for the payments made with it.
    "PaymentMethod": _Fetch("payment_method_by_id",
                            lambda row: None if row.removed_at else PaymentMethod.from_model(row)),
}

async def _load(info: strawberry.Info, type_name: str, pk: int) -> Node | None:
    if type_name == "LinkGroup":
        return await load_link_group(info, pk)
    fetch = _BY_LOADER.get(type_name)
    if fetch is None:
        return None
    row = await getattr(info.context.loaders, fetch.loader).load(pk)
    return None if row is None else fetch.convert(row)

async def _access_error(info: strawberry.Info, node: Node) -> Exception | None:
    """Types without a type-level ``@requires`` still need a visible account to be found."""
    context = info.context
    if not context.enforce_permissions:
        return None
    if isinstance(node, LinkGroup):
        # The same rule as ``Account.linkGroups``: the head's or any member's viewers see it.
        return None if await can_see_link_group(info, node) else NotFound("Not found.")
    if not context.access.can_see(node.account_id):
        return NotFound("Not found.")
    if isinstance(node, Contact):
        # A contact is contacts data, except the billing contact, which is billing data too.
        if context.access.has(node.account_id, Permission.CONTACTS_READ):
            return None
        if node.is_billing_contact and context.access.has(node.account_id, Permission.INVOICES_READ):
            return None
        return deny(context, node.account_id, Permission.CONTACTS_READ)
    return object_error(context, node)

async def fetch_node(info: strawberry.Info, global_id: str) -> Node:
    """The object, or the error it answers with: unknown and invisible look the same."""
    type_name, pk = decode_global_id(global_id)
    node = await _load(info, type_name, pk)
    if node is None:
        raise NotFound(f"No object has the ID `{global_id}`.")
    error = await _access_error(info, node)
    if error is not None:
        if isinstance(error, NotFound):
            raise NotFound(f"No object has the ID `{global_id}`.")
        raise error
    return node

async def fetch_nodes(info: strawberry.Info, global_ids: list[str]) -> list[Node | Exception]:
    """One entry per ID, in order; an entry that fails is null with its own error."""


    async def one(global_id: str) -> Node | Exception:
        try:
            return await fetch_node(info, global_id)
        except LinkgateError as error:
            return error

    return list(await asyncio.gather(*(one(global_id) for global_id in global_ids)))

