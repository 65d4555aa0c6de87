"""The shape of the API: Strawberry types over ``resolvers/``, and the ``Schema`` object."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import ExecutionResult, GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext

from schema import accounts, audit, billing, contacts, credits, invoices, links, nodes, notifications, services, tickets
from schema.directives import install_guards
from schema.errors import ShapeErrors
from schema.mutation import Mutation
from schema.query import Query

# Every object type whose fields may carry ``@requires`` or return guarded objects.
GUARDED_TYPES: list[type] = [
    Query, Mutation, accounts.Viewer, accounts.Account, accounts.Membership, audit.AuditEvent,
    contacts.Contact, credits.CreditLedgerEntry, invoices.Invoice, invoices.InvoiceLine,
    links.LinkGroup, links.LinkMember, notifications.Notification, services.Service,
    tickets.Ticket, *tickets.PAYLOAD_TYPES, *billing.PAYLOAD_TYPES,
]


class LinkgateSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Logging is ShapeErrors' job: expected failures are not server errors."""


def build_schema(extensions: list[type[SchemaExtension] | SchemaExtension] | None = None) -> LinkgateSchema:
    install_guards(GUARDED_TYPES)
    return LinkgateSchema(
        query=Query,
        mutation=Mutation,
        types=[
            accounts.Account, audit.AuditEvent, contacts.Contact, credits.CreditLedgerEntry,
            invoices.Invoice, links.LinkGroup, notifications.Notification, services.Service,
            tickets.Ticket,
        ],
        extensions=[ShapeErrors, *(extensions or [])],
    )


def print_schema_sdl() -> str:
    return build_schema().as_str() + "\n"
