"""The shape of the API: Strawberry types over ``resolvers/``, and the ``Schema`` object."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from schema import (
    accounts, audit, billing, contacts, credits, invitations, invoices, links, notifications, payments,
    services, sub_accounts, subscription, tickets,
)
from schema.directives import install_guards
from schema.authentication import Authenticate
from schema.errors import shape_error, without_suggestions
from schema.execution import LinkgateExecutor
from schema.input_rules import OperationChoice
from schema.mutation import Mutation
from schema.query import Query
from schema.scalars import SCALAR_OVERRIDES

# Every object type whose fields may carry ``@requires`` or return guarded objects.
GUARDED_TYPES: list[type] = [
    Query, Mutation, accounts.Viewer, accounts.Account, accounts.Membership, audit.AuditEvent,
    contacts.Contact, credits.CreditLedgerEntry, invitations.Invitation, invoices.Invoice,
    invoices.InvoiceLine, links.LinkGroup, links.LinkMember, notifications.Notification,
    services.Service, tickets.Ticket, *tickets.PAYLOAD_TYPES, *billing.PAYLOAD_TYPES,
    *invitations.PAYLOAD_TYPES, *sub_accounts.PAYLOAD_TYPES, *payments.PAYLOAD_TYPES,
    # Subscription's fields are documented from their @requires; each event is checked in
    # their generators (schema/subscription.py), so install_guards adds no extension to them.
    subscription.Subscription, subscription.TicketEvent, subscription.CreditEvent,
]


class LinkgateSchema(strawberry.Schema):
    # With introspection off, errors name no field, argument, type or enum value the caller
    # did not write ("Did you mean ...?" would describe the schema piece by piece).
    hide_suggestions: bool = False

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Every error passes here once: give it its code, log (only) the unexpected ones."""
        request_id = getattr(getattr(execution_context, "context", None), "request_id", "-")
        for error in errors:
            shape_error(error, request_id)
            if self.hide_suggestions:
                error.message = without_suggestions(error.message)


def build_schema(
    extensions: list[Any] | None = None,
    *,
    hide_suggestions: bool = False,
    max_batch_operations: int | None = None,
) -> LinkgateSchema:
    """``extensions`` run before ``Authenticate``, so their refusals cost no SQL."""
    install_guards(GUARDED_TYPES)
    config = StrawberryConfig(
        disable_field_suggestions=hide_suggestions,
        batching_config=(
            {"max_operations": max_batch_operations} if max_batch_operations else None
        ),
    )
    schema = LinkgateSchema(
        query=Query,
        mutation=Mutation,
        subscription=subscription.Subscription,
        types=[
            accounts.Account, audit.AuditEvent, contacts.Contact, credits.CreditLedgerEntry,
            invitations.Invitation, invoices.Invoice, links.LinkGroup, notifications.Notification,
            payments.PaymentMethod, services.Service, tickets.Ticket,
        ],
        # OperationChoice first: its refusal must come before ValidationCache validates.
        extensions=[OperationChoice, *(extensions or []), Authenticate],
        config=config,
        execution_context_class=LinkgateExecutor,
        scalar_overrides=SCALAR_OVERRIDES,
    )
    schema.hide_suggestions = hide_suggestions
    return schema


def print_schema_sdl() -> str:
    return build_schema().as_str() + "\n"
