"""Deny by default (DESIGN §2 "The directive"): no field exposes billing or technical data
without ``@requires``, and the printed directive is the check that runs.

The rules read the *printed* SDL (what ``schema.graphql`` documents), so they check the
documentation of who may see what; the last tests compare that SDL with the enforcement
actually attached to the Strawberry fields. Every object type of the schema must be classified
below: a new type fails here until somebody decides whether it carries billing or technical data.
"""

from __future__ import annotations

from collections.abc import Iterator

import graphql
import pytest
import strawberry
from graphql import (
    GraphQLField, GraphQLInterfaceType, GraphQLNamedType, GraphQLObjectType, GraphQLSchema,
    GraphQLUnionType, get_named_type,
)

from auth.permissions import Permission
from schema import build_schema
from schema.directives import _TYPE_REQUIREMENTS, GuardObjects, RequiresPermission, gated

# --- the declared classification ----------------------------------------------------------

# Every object of these types is billing or technical (or audit/email) data: the type itself
# must carry @requires with this permission, so it is checked by every path.
GATED_TYPES: dict[str, str] = {
    "Invoice": "INVOICES_READ",
    "CreditLedgerEntry": "CREDITS_READ",
    "Service": "SERVICES_READ",
    "Ticket": "TICKETS_READ",
    "Notification": "EMAILS_READ",
    "AuditEvent": "AUDIT_READ",
    "Invitation": "CONTACTS_MANAGE",
    "PaymentMethod": "INVOICES_PAY",
    "Payment": "INVOICES_READ",
}

# Sensitive types without a type-level @requires: every field in the schema returning one must
# sit on a gated (or another enclosed) type, or carry @requires itself.
ENCLOSED_TYPES: set[str] = {
    "InvoiceLine",        # only through Invoice.lines
    "TicketMessage",      # only through Ticket.messages
    "TicketOpener",       # only through Ticket.openedBy
    "LowCreditReminder",  # only through Account.lowCreditReminder (CREDITS_READ)
    "CardSummary",        # only through Payment.card
    "TicketAttachment",   # only through TicketMessage.attachments
    "TicketEvent",        # only through Subscription.ticketUpdated (TICKETS_READ, every event)
    "CreditEvent",        # only through Subscription.creditBalanceChanged (CREDITS_READ, every event)
}

# Types that carry no billing or technical data of their own (their gated fields, if any, are
# checked field by field below).
UNGATED_TYPES: set[str] = {
    "Query", "Mutation", "Subscription", "Node", "Viewer", "User", "Account", "LinkGroup", "LinkMember",
    "Membership", "Contact", "PageInfo", "UserError", "Address", "Money",
}

# DESIGN §2: the gated fields of the contract and their permissions.
GATED_FIELDS: dict[tuple[str, str], str] = {
    ("Account", "creditBalance"): "CREDITS_READ",
    ("Account", "creditLedger"): "CREDITS_READ",
    ("Account", "lowCreditReminder"): "CREDITS_READ",
    ("Account", "billingContact"): "INVOICES_READ",
    ("Account", "invoices"): "INVOICES_READ",
    ("Account", "services"): "SERVICES_READ",
    ("Account", "tickets"): "TICKETS_READ",
    ("Account", "contacts"): "CONTACTS_READ",
    ("Account", "members"): "CONTACTS_MANAGE",
    ("Account", "invitations"): "CONTACTS_MANAGE",
    ("Account", "notifications"): "EMAILS_READ",
    ("Account", "auditLog"): "AUDIT_READ",
    ("Service", "monthlyPrice"): "INVOICES_READ",
    ("Account", "paymentMethods"): "INVOICES_PAY",
    ("Account", "enrollmentToken"): "LINKS_MANAGE",
}

# The only Account fields that may stay ungated: anything new on Account needs @requires.
ACCOUNT_UNGATED_FIELDS: set[str] = {
    "id", "number", "name", "status", "viewerPermissions", "viewerIsOwner", "linkGroups",
}

# Names that mean billing or technical data wherever they appear (a payload, a new type...).
SENSITIVE_FIELD_NAMES: set[str] = {
    "creditBalance", "balance", "creditLedger", "ledger", "lowCreditReminder", "billingContact",
    "invoices", "invoice", "services", "service", "tickets", "ticket", "notifications",
    "auditLog", "monthlyPrice", "price", "unitPrice", "amount", "total", "subtotal", "tax",
}

MONEY = "Money"


# --- reading the printed schema -----------------------------------------------------------


def printed_schema() -> GraphQLSchema:
    return graphql.build_schema(build_schema().as_str())


def requires_of(element: GraphQLNamedType | GraphQLField) -> str | None:
    """The permission of a printed ``@requires`` on a type or field definition."""
    node = element.ast_node
    for directive in (node.directives if node is not None else None) or ():
        if directive.name.value == "requires":
            (argument,) = directive.arguments
            assert argument.name.value == "permission"
            return argument.value.value  # type: ignore[attr-defined]
    return None


def object_types(schema: GraphQLSchema) -> dict[str, GraphQLObjectType | GraphQLInterfaceType]:
    return {
        name: type_ for name, type_ in schema.type_map.items()
        if isinstance(type_, (GraphQLObjectType, GraphQLInterfaceType)) and not name.startswith("__")
    }


def edge_node_type(type_: GraphQLNamedType) -> GraphQLNamedType | None:
    """For a connection or an edge type, the type of its nodes."""
    if not isinstance(type_, GraphQLObjectType):
        return None
    fields = type_.fields
    if {"edges", "pageInfo"} <= fields.keys():
        return edge_node_type(get_named_type(fields["edges"].type))
    if {"cursor", "node"} <= fields.keys():
        return get_named_type(fields["node"].type)
    return None


def is_plumbing(type_: GraphQLNamedType) -> bool:
    return edge_node_type(type_) is not None


def data_type(field: GraphQLField) -> GraphQLNamedType:
    """What a field really hands out: lists and non-null unwrapped, connections seen through."""
    named = get_named_type(field.type)
    return edge_node_type(named) or named


def concrete_types(schema: GraphQLSchema, type_: GraphQLNamedType) -> set[str]:
    if isinstance(type_, (GraphQLInterfaceType, GraphQLUnionType)):
        return {possible.name for possible in schema.get_possible_types(type_)}
    return {type_.name}


def fields(schema: GraphQLSchema) -> Iterator[tuple[str, str, GraphQLField]]:
    """Every field of every object and interface type, connections and edges left out."""
    for type_name, type_ in object_types(schema).items():
        if is_plumbing(type_):
            continue
        for field_name, field in type_.fields.items():
            yield type_name, field_name, field


def payload_types(schema: GraphQLSchema) -> set[str]:
    if schema.mutation_type is None:
        return set()
    returned = {get_named_type(field.type).name for field in schema.mutation_type.fields.values()}
    return {name for name in returned if name.endswith("Payload")}


def type_gates(schema: GraphQLSchema) -> dict[str, str]:
    return {name: perm for name, type_ in object_types(schema).items() if (perm := requires_of(type_))}


def enclosed_types(schema: GraphQLSchema) -> set[str]:
    """Ungated types that no path reaches without passing a gate (a fixed point)."""
    gated = set(type_gates(schema))
    holders: dict[str, list[tuple[str, GraphQLField]]] = {}
    for type_name, _field_name, field in fields(schema):
        for target in concrete_types(schema, data_type(field)):
            holders.setdefault(target, []).append((type_name, field))
    enclosed: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name in object_types(schema):
            if name in gated or name in enclosed or name not in holders:
                continue
            if all(parent in gated or parent in enclosed or requires_of(field) is not None
                   for parent, field in holders[name]):
                enclosed.add(name)
                changed = True
    return enclosed


def behind_a_gate(schema: GraphQLSchema, type_name: str, field: GraphQLField) -> bool:
    """The field's own @requires, its type's, or the gate on every path into its type."""
    return (requires_of(field) is not None or type_name in type_gates(schema)
            or type_name in enclosed_types(schema))


def covered(schema: GraphQLSchema, type_name: str, field: GraphQLField) -> bool:
    """Behind a gate, or handing out only objects of gated types (each checked on its own)."""
    if behind_a_gate(schema, type_name, field):
        return True
    handed_out = concrete_types(schema, data_type(field))
    return bool(handed_out) and handed_out <= set(type_gates(schema))


# --- the rules: each returns the violations it finds --------------------------------------


def unclassified_types(schema: GraphQLSchema) -> list[str]:
    known = set(GATED_TYPES) | ENCLOSED_TYPES | UNGATED_TYPES | payload_types(schema)
    problems = []
    for name, type_ in object_types(schema).items():
        node_type = edge_node_type(type_)
        if node_type is not None:
            if node_type.name not in known:
                problems.append(f"{name}: a connection of the unclassified type {node_type.name}")
        elif name not in known:
            problems.append(f"{name}: new type; classify it in tests/test_deny_by_default.py")
    return problems


def wrong_type_gates(schema: GraphQLSchema) -> list[str]:
    printed = type_gates(schema)
    problems = [
        f"{name}: declared @requires({perm}), printed {printed.get(name)}"
        for name, perm in GATED_TYPES.items() if printed.get(name) != perm
    ]
    problems += [f"{name}: printed @requires({perm}) but not declared in GATED_TYPES"
                 for name, perm in printed.items() if name not in GATED_TYPES]
    return problems


def leaking_enclosed_types(schema: GraphQLSchema) -> list[str]:
    enclosed = enclosed_types(schema)
    problems = []
    for name in sorted(ENCLOSED_TYPES):
        if name in enclosed:
            continue
        paths = [f"{parent}.{field_name}" for parent, field_name, field in fields(schema)
                 if name in concrete_types(schema, data_type(field))
                 and not behind_a_gate(schema, parent, field)]
        problems.append(f"{name}: reachable without a gate through {paths}")
    return problems


def wrong_field_gates(schema: GraphQLSchema) -> list[str]:
    types = object_types(schema)
    problems = []
    for (type_name, field_name), perm in GATED_FIELDS.items():
        field = types[type_name].fields.get(field_name) if type_name in types else None
        if field is None:
            problems.append(f"{type_name}.{field_name}: missing from the schema")
        elif requires_of(field) != perm:
            problems.append(f"{type_name}.{field_name}: declared {perm}, printed {requires_of(field)}")
    return problems


def ungated_account_fields(schema: GraphQLSchema) -> list[str]:
    account = object_types(schema)["Account"]
    return [f"Account.{name}: new ungated field" for name, field in account.fields.items()
            if name not in ACCOUNT_UNGATED_FIELDS and not covered(schema, "Account", field)]


def ungated_money(schema: GraphQLSchema) -> list[str]:
    return [f"{type_name}.{field_name}: Money outside a gated type without @requires"
            for type_name, field_name, field in fields(schema)
            if get_named_type(field.type).name == MONEY
            and requires_of(field) is None
            and type_name not in type_gates(schema) and type_name not in enclosed_types(schema)]


def ungated_sensitive_names(schema: GraphQLSchema) -> list[str]:
    return [f"{type_name}.{field_name}: billing or technical data without @requires"
            for type_name, field_name, field in fields(schema)
            if field_name in SENSITIVE_FIELD_NAMES and not covered(schema, type_name, field)]


def ungated_sensitive_types(schema: GraphQLSchema) -> list[str]:
    """The structural rule: a field handing out a declared sensitive type is behind a gate, or
    that type carries its own printed gate (then every object is checked by itself)."""
    sensitive = set(GATED_TYPES) | ENCLOSED_TYPES
    problems = []
    for type_name, field_name, field in fields(schema):
        exposed = (concrete_types(schema, data_type(field)) & sensitive) - set(type_gates(schema))
        if exposed and not behind_a_gate(schema, type_name, field):
            problems.append(f"{type_name}.{field_name}: hands out {sorted(exposed)} unchecked")
    return problems


RULES = [
    unclassified_types, wrong_type_gates, leaking_enclosed_types, wrong_field_gates,
    ungated_account_fields, ungated_money, ungated_sensitive_names, ungated_sensitive_types,
]


@pytest.fixture(scope="module")
def printed() -> GraphQLSchema:
    return printed_schema()


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.__name__)
def test_schema_obeys(printed: GraphQLSchema, rule: object) -> None:
    assert rule(printed) == []  # type: ignore[operator]


def test_declarations_cover_the_contract(printed: GraphQLSchema) -> None:
    """The classification is not vacuous: every declared type exists, and the sets are disjoint."""
    types = object_types(printed)
    for name in set(GATED_TYPES) | ENCLOSED_TYPES | UNGATED_TYPES:
        assert name in types, f"{name} is declared here but not in the schema"
    assert not (set(GATED_TYPES) & ENCLOSED_TYPES)
    assert not ((set(GATED_TYPES) | ENCLOSED_TYPES) & UNGATED_TYPES)
    assert set(GATED_TYPES.values()) <= {permission.value for permission in Permission}
    assert enclosed_types(printed) >= ENCLOSED_TYPES


# --- the rules can fail: a schema with holes of each kind ----------------------------------

HOLES = """
type Widget { name: String }
type Statement { total: Money! lines: [InvoiceLine!]! }
extend type Query {
  widget: Widget
  lonelyLine: InvoiceLine
  statement: Statement
  fee: Money
  balance: Int
  serviceById(id: ID!): Service
}
extend type Account { spend: Money }
"""


def holed_schema() -> GraphQLSchema:
    sdl = build_schema().as_str()
    sdl = sdl.replace("creditBalance: Int @requires(permission: CREDITS_READ)", "creditBalance: Int")
    sdl = sdl.replace(
        "type Ticket implements Node @requires(permission: TICKETS_READ)", "type Ticket implements Node"
    )
    return graphql.build_schema(sdl + HOLES)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (unclassified_types, ["Widget: new type", "Statement: new type"]),
        (wrong_type_gates, ["Ticket: declared @requires(TICKETS_READ), printed None"]),
        (leaking_enclosed_types, ["InvoiceLine: reachable", "TicketMessage: reachable",
                                  "TicketOpener: reachable"]),
        (wrong_field_gates, ["Account.creditBalance: declared CREDITS_READ, printed None"]),
        (ungated_account_fields, ["Account.creditBalance", "Account.spend"]),
        (ungated_money, ["Query.fee", "Account.spend", "Statement.total"]),
        (ungated_sensitive_names, ["Query.balance", "Account.creditBalance", "Statement.total"]),
        (ungated_sensitive_types, ["Query.lonelyLine", "Query.node", "Query.nodes", "Statement.lines"]),
    ],
    ids=lambda value: getattr(value, "__name__", None) or "expected",
)
def test_rules_catch_holes(rule: object, expected: list[str]) -> None:
    problems = rule(holed_schema())  # type: ignore[operator]
    for needle in expected:
        assert any(problem.startswith(needle) for problem in problems), (needle, problems)


def test_a_gated_type_handed_out_anywhere_is_covered_by_its_own_gate() -> None:
    """``Query.serviceById`` above returns a gated type: the type's gate covers it."""
    assert not any("serviceById" in problem for rule in RULES for problem in rule(holed_schema()))


# --- printed directive ⇔ enforced check ---------------------------------------------------


@pytest.fixture(scope="module")
def runtime() -> GraphQLSchema:
    return build_schema()._schema


def strawberry_types(runtime: GraphQLSchema) -> Iterator[tuple[str, GraphQLObjectType]]:
    for name, type_ in object_types(runtime).items():
        if isinstance(type_, GraphQLObjectType) and "strawberry-definition" in (type_.extensions or {}):
            yield name, type_


def enforced_permissions(field: GraphQLField) -> list[str]:
    definition = field.extensions["strawberry-definition"]
    return [extension.permission.value for extension in definition.extensions
            if isinstance(extension, RequiresPermission)]


def test_every_printed_field_directive_is_enforced_and_nothing_else_is(
    printed: GraphQLSchema, runtime: GraphQLSchema
) -> None:
    checked = 0
    for type_name, type_ in strawberry_types(runtime):
        printed_type = printed.type_map[type_name]
        assert isinstance(printed_type, (GraphQLObjectType, GraphQLInterfaceType))
        for field_name, field in type_.fields.items():
            printed_perm = requires_of(printed_type.fields[field_name])
            enforced = enforced_permissions(field)
            if field.subscribe is not None:
                # A subscription's root has no account: its generator checks every event
                # against the field's own @requires (schema/subscription.py ``_required``;
                # tests/test_subscriptions.py shows who hears what).
                assert printed_perm and enforced == [], f"{type_name}.{field_name}"
                continue
            assert enforced == ([printed_perm] if printed_perm else []), f"{type_name}.{field_name}"
            checked += bool(printed_perm)
    assert checked >= len(GATED_FIELDS)


def test_every_printed_type_directive_is_enforced(printed: GraphQLSchema, runtime: GraphQLSchema) -> None:
    registered = {cls.__strawberry_definition__.name: perm.value  # type: ignore[attr-defined]
                  for cls, perm in _TYPE_REQUIREMENTS.items()}
    assert registered == type_gates(printed)
    for name, perm in type_gates(printed).items():
        origin = runtime.type_map[name].extensions["strawberry-definition"].origin
        assert _TYPE_REQUIREMENTS.get(origin) is Permission(perm), name


def test_every_field_handing_out_gated_objects_checks_them(runtime: GraphQLSchema, printed: GraphQLSchema) -> None:
    """Lists, connections, single objects and ``Node`` fields all run ``GuardObjects``."""
    gated = set(type_gates(printed))
    guarded = []
    for type_name, type_ in strawberry_types(runtime):
        if is_plumbing(type_):
            continue
        for field_name, field in type_.fields.items():
            if not concrete_types(runtime, data_type(field)) & gated:
                continue
            if field.subscribe is not None:  # each event checked in its generator (above)
                continue
            extensions = field.extensions["strawberry-definition"].extensions
            assert any(isinstance(e, GuardObjects) for e in extensions), f"{type_name}.{field_name}"
            guarded.append(f"{type_name}.{field_name}")
    assert {"Query.node", "Query.nodes", "Account.invoices", "Account.services",
            "Account.tickets", "Account.creditLedger"} <= set(guarded)


def test_committed_sdl_prints_the_same_directives(printed: GraphQLSchema) -> None:
    """``schema.graphql`` (the documentation) carries the same gates as the running schema."""
    from pathlib import Path

    committed = graphql.build_schema((Path(__file__).parent.parent / "schema.graphql").read_text())

    def gates(schema: GraphQLSchema) -> dict[str, str]:
        found = {name: perm for name, perm in type_gates(schema).items()}
        for type_name, field_name, field in fields(schema):
            if perm := requires_of(field):
                found[f"{type_name}.{field_name}"] = perm
        return found

    assert gates(committed) == gates(printed)


@strawberry.type
class Forgotten:
    """A type whose ``@requires`` field never went through ``install_guards``."""

    account_id: strawberry.Private[int]

    @gated(Permission.CREDITS_READ)
    def secret(self) -> int:
        return 1


@strawberry.type
class ForgottenQuery:
    @strawberry.field
    def forgotten(self) -> Forgotten:
        return Forgotten(account_id=1)


def test_the_enforcement_comparison_notices_a_directive_without_its_check() -> None:
    """Printed ``@requires`` without the check: the comparison above sees the difference."""
    schema = strawberry.Schema(query=ForgottenQuery)
    printed_field = graphql.build_schema(schema.as_str()).type_map["Forgotten"].fields["secret"]  # type: ignore[union-attr]
    assert requires_of(printed_field) == "CREDITS_READ"
    assert enforced_permissions(schema._schema.type_map["Forgotten"].fields["secret"]) == []  # type: ignore[union-attr]
