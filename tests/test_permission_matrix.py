"""Every gated field × every permission × every kind of account, over HTTP, against the policy.

Nothing here is a hand-written table. The fields come from the printed schema (every
``@requires`` on ``Account``, every type-level ``@requires`` of a ``Node`` type listed by one of
them, and the gated fields inside those types); the personas are one sub-account per
``Permission`` (plus one with no permission and one user per staff role), each granted on the
head office (head of both demo groups); the expected answer is ``compute_effective`` over the
link groups read from the database. For each persona and target account one query asks for
everything at once, through ``viewer.account(number:)``, ``node(id:)`` and ``nodes(ids:)``, and
the response must match the policy field by field, error by error.

Objects that are no ``Node`` but carry a type-level ``@requires`` of their own (``Payment``, on
``Invoice.payments``) are asked for inside the node types that hold them, wherever those are
asked for, and must match the owner's answer.

The leak tests at the end try the usual ways around a field check: aliases, fragments, inline
fragments on ``Node``, ``nodes`` mixing IDs, and connections.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import graphql
import pytest
from graphql import GraphQLField, GraphQLObjectType, get_named_type, is_leaf_type
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from auth.errors import NotFound, PermissionDenied
from auth.permissions import STAFF_PERMISSIONS, Permission, sorted_permissions
from auth.policy import AccessMap, GroupMembership, compute_effective, load_access
from auth.principals import Principal
from linkgate.demo import BILL, CONTOSO, DEV, HEAD_OFFICE, LABS, LOGISTICS, RETAIL
from models.accounts import Account as AccountRow
from models.accounts import Membership
from models.billing import Invoice as InvoiceRow
from models.database import create_session_factory
from models.identity import Invitation as InvitationRow
from models.links import LinkMember
from models.notifications import Notification as NotificationRow
from models.payments import Payment as PaymentRow
from models.payments import PaymentKind, PaymentStatus
from models.payments import PaymentMethod as PaymentMethodRow
from models.tickets import Department, Ticket as TicketRow
from models.users import StaffRole, User
from schema import build_schema
from schema.credits import CreditLedgerEntry
from schema.directives import GuardObjects
from schema.enums import LedgerEntryKind
from schema.relay import Connection, Edge, PageInfo
from tests.conftest import GraphQLClient, token_for_user
from tests.test_deny_by_default import data_type, edge_node_type, requires_of

# --- what the schema says is gated ---------------------------------------------------------

PRINTED = graphql.build_schema(build_schema().as_str())
ACCOUNT_TYPE = PRINTED.type_map["Account"]
NODE_INTERFACE = PRINTED.type_map["Node"]
assert isinstance(ACCOUNT_TYPE, GraphQLObjectType)


def _is_node(type_: Any) -> bool:
    return isinstance(type_, GraphQLObjectType) and NODE_INTERFACE in type_.interfaces


# Account field -> the permission its @requires asks for.
ACCOUNT_GATES: dict[str, Permission] = {
    name: Permission(perm) for name, fld in ACCOUNT_TYPE.fields.items() if (perm := requires_of(fld))
}
# Node types handed out by those fields -> the gated Account fields listing them.
LISTED_BY: dict[str, list[str]] = {}
for _name in ACCOUNT_GATES:
    _handed = data_type(ACCOUNT_TYPE.fields[_name])
    if _is_node(_handed):
        LISTED_BY.setdefault(_handed.name, []).append(_name)
# Type-level @requires of those node types.
TYPE_GATES: dict[str, Permission] = {
    name: Permission(perm) for name in LISTED_BY if (perm := requires_of(PRINTED.type_map[name]))
}
# Gated fields inside those types (e.g. Service.monthlyPrice).
INNER_GATES: dict[str, dict[str, Permission]] = {
    name: {fname: Permission(perm) for fname, fld in PRINTED.type_map[name].fields.items()  # type: ignore[union-attr]
           if (perm := requires_of(fld))}
    for name in LISTED_BY
}
# Fields of those types handing out objects that are no Node but gated by their own type
# (Invoice.payments -> Payment): no ID to ask for them by, so they are asked for in place.
NESTED_GATES: dict[str, dict[str, Permission]] = {
    name: {fname: Permission(perm) for fname, fld in PRINTED.type_map[name].fields.items()  # type: ignore[union-attr]
           if not _is_node(handed := data_type(fld)) and (perm := requires_of(handed))}
    for name in LISTED_BY
}

TARGETS = {
    "direct": HEAD_OFFICE,
    "billing-member": RETAIL,
    "management-and-billing-member": LOGISTICS,
    "same-owner-unlinked": LABS,
    "unrelated": CONTOSO,
}
OWNERS = {HEAD_OFFICE: "olivia", RETAIL: "olivia", LOGISTICS: "olivia", LABS: "olivia", CONTOSO: "eve"}
PERSONAS = [permission.value for permission in Permission] + ["NOTHING"] + [
    f"STAFF_{role.value}" for role in StaffRole
]


def test_the_schema_gives_the_matrix_something_to_test() -> None:
    """The generated lists are the contract's, not empty by accident."""
    assert len(ACCOUNT_GATES) >= 11
    assert set(TYPE_GATES) >= {
        "Invoice", "CreditLedgerEntry", "Service", "Ticket", "Notification", "AuditEvent", "Invitation",
        "PaymentMethod",
    }
    assert "Contact" in LISTED_BY
    assert INNER_GATES["Service"] == {"monthlyPrice": Permission.INVOICES_READ}
    for type_name, perm in TYPE_GATES.items():
        assert all(ACCOUNT_GATES[listing] == perm for listing in LISTED_BY[type_name]), type_name
    assert NESTED_GATES["Invoice"] == {"payments": Permission.INVOICES_READ}
    # A nested gate asks for what its holder asks for, so it is seen exactly when its holder
    # is (``_check_node`` compares it with the owner's answer, and expects no error of its own).
    for type_name, nested in NESTED_GATES.items():
        assert all(perm == TYPE_GATES.get(type_name) for perm in nested.values()), type_name


# --- building the queries from the schema --------------------------------------------------


def selection(fld: GraphQLField) -> str:
    named = get_named_type(fld.type)
    if is_leaf_type(named):
        return ""
    if (node := edge_node_type(named)) is not None:
        return f" {{ totalCount edges {{ node {{ id{nested_selection(node.name)} }} }} }}"
    if _is_node(named):
        return f" {{ id{nested_selection(named.name)} }}"
    assert isinstance(named, GraphQLObjectType)
    return " { " + " ".join(_leaves(named) or ["__typename"]) + " }"


def _leaves(type_: GraphQLObjectType) -> list[str]:
    return [name for name, inner in type_.fields.items()
            if is_leaf_type(get_named_type(inner.type))
            and not any(graphql.is_required_argument(arg) for arg in inner.args.values())]


def nested_selection(type_name: str) -> str:
    """The nested gated objects of a node type (``payments { kind … amount { amount … } }``):
    their leaves, and the leaves of the plain objects inside them."""
    parts = []
    for fname in NESTED_GATES.get(type_name, {}):
        handed = data_type(PRINTED.type_map[type_name].fields[fname])  # type: ignore[union-attr]
        assert isinstance(handed, GraphQLObjectType)
        inner = [*_leaves(handed), *(
            f"{name} {{ {' '.join(_leaves(plain))} }}" for name, fld in handed.fields.items()
            if isinstance(plain := get_named_type(fld.type), GraphQLObjectType)
            and not _is_node(plain) and _leaves(plain)
        )]
        parts.append(f"{fname} {{ {' '.join(inner)} }}")
    return "".join(" " + part for part in parts)


def _nested_kinds(type_name: str) -> str:
    return "".join(f" {fname} {{ __typename }}" for fname in NESTED_GATES.get(type_name, {}))


def arguments(fld: GraphQLField) -> str:
    assert not any(graphql.is_required_argument(arg) for arg in fld.args.values())
    return "(first: 100)" if "first" in fld.args else ""


# Fields go under their own names: aliases are limited per request, and ``node`` needs them.
ACCOUNT_SELECTION = "id viewerPermissions " + " ".join(
    name + arguments(ACCOUNT_TYPE.fields[name]) + selection(ACCOUNT_TYPE.fields[name])
    for name in ACCOUNT_GATES
)
NODE_SELECTION = "id __typename " + " ".join(
    f"... on {type_name} {{ "
    + " ".join(f + selection(PRINTED.type_map[type_name].fields[f]) for f in inner)  # type: ignore[union-attr]
    + nested_selection(type_name)
    + " }"
    for type_name, inner in INNER_GATES.items() if inner or NESTED_GATES.get(type_name)
)
# With the nested gated objects' types only, to pick objects that hold some (``_collect_objects``).
IDS_SELECTION = "id " + " ".join(
    name + arguments(ACCOUNT_TYPE.fields[name])
    + (f" {{ edges {{ node {{ id __typename{_nested_kinds(type_name)} }} }} }}"
       if edge_node_type(get_named_type(ACCOUNT_TYPE.fields[name].type))
       else f" {{ id __typename{_nested_kinds(type_name)} }}")
    for type_name, names in LISTED_BY.items() for name in names
)


def matrix_query(object_count: int) -> str:
    variables = "".join(f", $id{i}: ID!" for i in range(object_count))
    singles = " ".join(f"n{i}: node(id: $id{i}) {{ {NODE_SELECTION} }}" for i in range(object_count))
    return (
        f"query Matrix($number: String!, $ids: [ID!]!{variables}) {{\n"
        f"  viewer {{ account(number: $number) {{ {ACCOUNT_SELECTION} }} }}\n"
        f"  {singles}\n"
        f"  nodes(ids: $ids) {{ {NODE_SELECTION} }}\n}}"
    )


# --- the world the matrix runs in ---------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One object to ask for by ID: its type and the gated Account fields that list it."""

    type_name: str
    id: str
    listed_by: frozenset[str]


@dataclass
class World:
    account_ids: dict[str, int]
    groups: list[GroupMembership]
    tokens: dict[str, str]
    access: dict[str, AccessMap]
    users: dict[str, tuple[int, StaffRole | None]]
    objects: dict[str, list[Target]] = field(default_factory=dict)  # account number -> objects
    owner_answers: dict[str, dict[str, Any]] = field(default_factory=dict)


async def _groups(session: AsyncSession) -> list[GroupMembership]:
    rows = (await session.scalars(select(LinkMember))).all()
    heads = {row.group_id: row.account_id for row in rows if row.is_head}
    return [GroupMembership(row.kind, heads[row.group_id], row.account_id)
            for row in rows if not row.is_head and row.group_id in heads]


def _missing_rows(tag: str, ids: dict[str, int]) -> list[Any]:
    """Objects of gated types the demo has on the head office only, so every type can be asked
    for on every target: a pre-link invoice, a ticket and an email on each member account, and
    a card on file on every account but the head office (the demo's card is there). Payments
    on those invoices come after they have IDs (``_payment_rows``)."""
    at = datetime(2026, 2, 1, 12, 0, tzinfo=timezone.utc)
    rows: list[Any] = []
    for index, number in enumerate((RETAIL, LOGISTICS, LABS)):
        account_id = ids[number]
        rows.append(TicketRow(
            account_id=account_id, number=f"TKT-M{tag[:8]}{index}", subject="Matrix ticket",
            department=Department.TECHNICAL, opened_by_name="Matrix", opened_by_email="m@test.example",
        ))
        if number != LABS:
            rows.append(NotificationRow(
                account_id=account_id, recipient="m@test.example", category="GENERAL",
                subject="Matrix email", body="-",
            ))
            rows.append(InvoiceRow(
                number=f"INV-MATRIX-{tag[:10]}-{index}", payer_account_id=account_id,
                period_start=date(2026, 1, 1), period_end=date(2026, 1, 31), issued_at=at, due_at=at,
                currency="EUR", subtotal=100, tax=21, total=121, bill_to_name="Matrix",
                bill_to_email="m@test.example", payer_number=number, payer_name="Matrix",
            ))
    for index, number in enumerate((RETAIL, LOGISTICS, LABS, CONTOSO)):
        rows.append(PaymentMethodRow(
            account_id=ids[number], gateway="test", brand="visa", last4=f"42{index:02d}",
            exp_month=12, exp_year=2040, processor_ref=f"pm_matrix_{tag[:12]}_{index}",
        ))
    # The demo has no invitations at all: one on every target.
    for number in TARGETS.values():
        rows.append(InvitationRow(
            account_id=ids[number], email="m@test.example", permissions=["SERVICES_READ"],
            token_hash=hashlib.sha256(f"matrix-{tag}-{number}".encode()).hexdigest(),
            expires_at=at + timedelta(days=7),
        ))
    return rows


def _payment_rows(tag: str, rows: Iterable[Any]) -> list[PaymentRow]:
    """A part payment on each invoice ``_missing_rows`` made (the demo's paid invoices have
    theirs): recorded offline, so no card and no gateway are involved."""
    return [
        PaymentRow(invoice_id=row.id, kind=PaymentKind.OFFLINE, status=PaymentStatus.SUCCEEDED,
                   amount=21, currency=row.currency, reference=f"MATRIX-{tag[:10]}",
                   settled_at=row.issued_at)
        for row in rows if isinstance(row, InvoiceRow)
    ]


def _assert_no_errors(result: dict[str, Any]) -> None:
    assert "errors" not in result, result.get("errors")


async def _collect_objects(gql: GraphQLClient, world: World, owner_tokens: dict[str, str]) -> None:
    query = f"query($number: String!) {{ viewer {{ account(number: $number) {{ {IDS_SELECTION} }} }} }}"
    for number in TARGETS.values():
        result = await gql.execute(query, {"number": number}, token=owner_tokens[OWNERS[number]])
        _assert_no_errors(result)
        account = result["data"]["viewer"]["account"]
        listed: dict[tuple[str, str], set[str]] = {}
        holding: set[str] = set()  # objects holding nested gated objects (an invoice with payments)
        for names in LISTED_BY.values():
            for name in names:
                value = account[name]
                items = value["edges"] if isinstance(value, dict) and "edges" in value else value
                for item in [] if items is None else items if isinstance(items, list) else [items]:
                    node = item.get("node", item)
                    listed.setdefault((node["__typename"], node["id"]), set()).add(name)
                    if any(node.get(fname) for fname in NESTED_GATES.get(node["__typename"], {})):
                        holding.add(node["id"])
        # One object per (type, listing profile): e.g. the billing contact and another contact;
        # one holding nested gated objects if there is one, so they are asked for by ID too.
        chosen: dict[tuple[str, frozenset[str]], Target] = {}
        for (type_name, global_id), names in listed.items():
            key = (type_name, frozenset(names))
            if key not in chosen or (global_id in holding and chosen[key].id not in holding):
                chosen[key] = Target(type_name, global_id, frozenset(names))
        world.objects[number] = [Target("Account", account["id"], frozenset()), *chosen.values()]


@pytest.fixture(scope="module")
async def world(engine: AsyncEngine, gql: GraphQLClient, tokens: dict[str, str]) -> AsyncIterator[World]:
    tag = uuid.uuid4().hex
    sessions = create_session_factory(engine)
    async with sessions() as session:
        rows = (await session.execute(select(AccountRow.number, AccountRow.id)
                                      .where(AccountRow.number.in_(TARGETS.values())))).all()
        account_ids = {number: account_id for number, account_id in rows}
        head = account_ids[HEAD_OFFICE]
        users = {persona: User(email=f"matrix-{persona.lower()}-{tag[:12]}@test.example",
                               name=f"Matrix {persona}", password_hash="!",
                               staff_role=StaffRole(persona.removeprefix("STAFF_")) if persona.startswith("STAFF_") else None)
                 for persona in PERSONAS}
        session.add_all(users.values())
        await session.flush()
        grants = {persona: ([] if persona == "NOTHING" else [persona])
                  for persona in PERSONAS if not persona.startswith("STAFF_")}
        session.add_all([Membership(user_id=users[persona].id, account_id=head, permissions=names)
                         for persona, names in grants.items()])
        extra = _missing_rows(tag, account_ids)
        session.add_all(extra)
        await session.flush()
        payments = _payment_rows(tag, extra)
        session.add_all(payments)
        extra += payments
        await session.commit()
        groups = await _groups(session)
        extra_keys = [(type(row), row.id) for row in extra]
    access: dict[str, AccessMap] = {}
    for persona in PERSONAS:
        if persona.startswith("STAFF_"):
            access[persona] = AccessMap({}, staff_permissions=STAFF_PERMISSIONS[StaffRole(persona.removeprefix("STAFF_"))])
        else:
            direct = {head: frozenset(Permission(name) for name in grants[persona])}
            access[persona] = AccessMap(compute_effective(direct, groups))
    world = World(
        account_ids=account_ids, groups=groups, access=access,
        users={persona: (user.id, user.staff_role) for persona, user in users.items()},
        tokens={persona: await token_for_user(engine, user.id) for persona, user in users.items()},
    )
    try:
        await _collect_objects(gql, world, tokens)
        for number in TARGETS.values():
            ids = [target.id for target in world.objects[number]]
            result = await gql.execute(matrix_query(len(ids)), _variables(number, ids), token=tokens[OWNERS[number]])
            _assert_no_errors(result)
            world.owner_answers[number] = result["data"]
        yield world
    finally:
        async with sessions() as session:
            for model, key in reversed(extra_keys):  # payments before their invoices
                await session.execute(delete(model).where(model.id == key))
            user_ids = [user.id for user in users.values()]
            await session.execute(delete(Membership).where(Membership.user_id.in_(user_ids)))
            await session.execute(delete(User).where(User.id.in_(user_ids)))
            await session.commit()


def _variables(number: str, ids: list[str]) -> dict[str, Any]:
    return {"number": number, "ids": ids, **{f"id{i}": global_id for i, global_id in enumerate(ids)}}


def test_every_gated_type_has_an_object_on_every_target(world: World) -> None:
    for number, objects in world.objects.items():
        types = {target.type_name for target in objects}
        assert set(TYPE_GATES) <= types, (number, set(TYPE_GATES) - types)
        # Every nested gated type too, in the owner's answer by ID (and so through the
        # Account field listing its holder, which ``test_matrix`` compares whole).
        owner = world.owner_answers[number]
        for type_name, nested in NESTED_GATES.items():
            for fname in nested:
                held = [owner[f"n{index}"][fname] for index, target in enumerate(objects)
                        if target.type_name == type_name]
                assert any(held), (number, type_name, fname)
    assert len(world.groups) >= 3, "the demo's BILLING group (2 members) and MANAGEMENT group (1)"


# --- what the policy expects ----------------------------------------------------------------


@dataclass
class Expected:
    errors: list[tuple[tuple[Any, ...], str, frozenset[str] | None]] = field(default_factory=list)

    def forbid(self, path: Iterable[Any], permissions: Iterable[Permission]) -> None:
        self.errors.append((tuple(path), "FORBIDDEN", frozenset(p.value for p in permissions)))

    def not_found(self, path: Iterable[Any]) -> None:
        self.errors.append((tuple(path), "NOT_FOUND", None))


def _check_errors(result: dict[str, Any], expected: Expected) -> None:
    actual = []
    for error in result.get("errors", []):
        assert "path" in error and error["path"], error
        code = error["extensions"]["code"]
        actual.append((tuple(error["path"]), code, error["extensions"].get("permission")))
    unmatched = list(actual)
    for path, code, permissions in expected.errors:
        match = next((a for a in unmatched if a[0] == path and a[1] == code
                      and (permissions is None or a[2] in permissions)), None)
        assert match is not None, f"expected {code} {sorted(permissions or [])} at {list(path)}; got {actual}"
        if permissions is None:
            assert match[2] is None, match
        unmatched.remove(match)
    assert unmatched == [], f"unexpected errors {unmatched}"


def _check_node(
    access: AccessMap, account_id: int, target: Target, value: Any, owner_value: Any,
    path: tuple[Any, ...], expected: Expected,
) -> None:
    if not access.can_see(account_id):
        assert value is None, (path, value)
        expected.not_found(path)
        return
    if target.type_name in TYPE_GATES:
        needed = [TYPE_GATES[target.type_name]]
        allowed = access.has(account_id, needed[0])
    else:  # reachable only through the gated Account fields that list it (Contact), or Account
        needed = [ACCOUNT_GATES[name] for name in target.listed_by]
        allowed = not needed or any(access.has(account_id, perm) for perm in needed)
    if not allowed:
        assert value is None, (path, value)
        expected.forbid(path, needed)
        return
    assert value is not None and value["id"] == target.id, (path, value)
    for field_name, perm in INNER_GATES.get(target.type_name, {}).items():
        if access.has(account_id, perm):
            assert value[field_name] == owner_value[field_name], (path, field_name)
        else:
            assert value[field_name] is None, (path, field_name)
            expected.forbid((*path, field_name), [perm])
    for field_name, perm in NESTED_GATES.get(target.type_name, {}).items():
        # The holder's own permission (test_the_schema_gives_the_matrix_something_to_test):
        # the holder is seen, so all of them are, as the owner sees them.
        assert access.has(account_id, perm), (path, field_name)
        assert value[field_name] == owner_value[field_name], (path, field_name)


@pytest.mark.parametrize("target_kind", list(TARGETS))
@pytest.mark.parametrize("persona", PERSONAS)
async def test_matrix(gql: GraphQLClient, world: World, persona: str, target_kind: str) -> None:
    number = TARGETS[target_kind]
    account_id = world.account_ids[number]
    access = world.access[persona]
    objects = world.objects[number]
    owner = world.owner_answers[number]
    ids = [target.id for target in objects]
    result = await gql.execute(matrix_query(len(ids)), _variables(number, ids), token=world.tokens[persona])
    data = result["data"]
    expected = Expected()

    account = data["viewer"]["account"]
    if not access.can_see(account_id):
        assert account is None
    else:
        assert account["id"] == owner["viewer"]["account"]["id"]
        assert account["viewerPermissions"] == [p.value for p in sorted_permissions(access.permissions_on(account_id))]
        for name, perm in ACCOUNT_GATES.items():
            if access.has(account_id, perm):
                assert account[name] == owner["viewer"]["account"][name], name
            else:
                assert account[name] is None, name
                expected.forbid(("viewer", "account", name), [perm])

    for index, target in enumerate(objects):
        _check_node(access, account_id, target, data[f"n{index}"], owner[f"n{index}"], (f"n{index}",), expected)
        _check_node(access, account_id, target, data["nodes"][index], owner["nodes"][index], ("nodes", index), expected)
    assert len(data["nodes"]) == len(ids)
    _check_errors(result, expected)


@pytest.mark.parametrize("persona", PERSONAS)
async def test_account_list_leaves_out_invisible_accounts_silently(
    gql: GraphQLClient, world: World, persona: str
) -> None:
    listed: set[str] = set()
    after = None
    while True:  # every page: staff see every account, the suite's own included
        result = await gql.execute(
            """query($after: String) { viewer { accounts(first: 100, after: $after) {
                totalCount edges { node { number } } pageInfo { hasNextPage endCursor } } } }""",
            {"after": after}, token=world.tokens[persona],
        )
        _assert_no_errors(result)
        page = result["data"]["viewer"]["accounts"]
        listed |= {edge["node"]["number"] for edge in page["edges"]}
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    access = world.access[persona]
    visible = {number for number, account_id in world.account_ids.items() if access.can_see(account_id)}
    assert listed & set(TARGETS.values()) == visible
    if not access.sees_every_account:
        assert len(listed) == result["data"]["viewer"]["accounts"]["totalCount"] == len(visible)


async def test_load_access_agrees_with_the_matrix_expectations(engine: AsyncEngine, world: World) -> None:
    """The server's loader gives the matrix users exactly what the matrix expects."""
    async with create_session_factory(engine)() as session:
        for persona, (user_id, staff_role) in world.users.items():
            loaded = await load_access(session, Principal(user_id=user_id, staff_role=staff_role))
            for number, account_id in world.account_ids.items():
                assert loaded.permissions_on(account_id) == world.access[persona].permissions_on(account_id), (persona, number)


# --- leak tests -----------------------------------------------------------------------------


async def _demo_access(engine: AsyncEngine, email: str) -> AccessMap:
    async with create_session_factory(engine)() as session:
        user = (await session.execute(select(User.id, User.staff_role).where(User.email == email))).one()
        return await load_access(session, Principal(user_id=user.id, staff_role=user.staff_role))


def _first_of(world: World, number: str, type_name: str) -> str:
    return next(target.id for target in world.objects[number] if target.type_name == type_name)


def _errors(result: dict[str, Any]) -> list[tuple[list[Any], str, str | None]]:
    return [(error["path"], error["extensions"]["code"], error["extensions"].get("permission"))
            for error in result.get("errors", [])]


async def test_aliases_each_get_their_own_denial(gql: GraphQLClient, tokens: dict[str, str]) -> None:
    query = """query($n: String!) { viewer { account(number: $n) {
        a: creditBalance b: creditBalance c: services { id } d: services { id } } } }"""
    dev = await gql.execute(query, {"n": HEAD_OFFICE}, token=tokens["dev"])
    account = dev["data"]["viewer"]["account"]
    assert account["a"] is None and account["b"] is None
    assert account["c"] and account["c"] == account["d"]
    assert sorted(_errors(dev)) == [
        (["viewer", "account", "a"], "FORBIDDEN", "CREDITS_READ"),
        (["viewer", "account", "b"], "FORBIDDEN", "CREDITS_READ"),
    ]
    bill = await gql.execute(query, {"n": HEAD_OFFICE}, token=tokens["bill"])
    owner = await gql.execute(query, {"n": HEAD_OFFICE}, token=tokens["olivia"])
    assert bill["data"]["viewer"]["account"]["a"] == bill["data"]["viewer"]["account"]["b"]
    assert bill["data"]["viewer"]["account"]["a"] == owner["data"]["viewer"]["account"]["a"] is not None
    assert sorted(_errors(bill)) == [
        (["viewer", "account", key], "FORBIDDEN", "SERVICES_READ") for key in ("c", "d")
    ]


async def test_named_fragments_through_a_connection_follow_each_accounts_permissions(
    gql: GraphQLClient, tokens: dict[str, str], engine: AsyncEngine
) -> None:
    query = """
    query { viewer { accounts(first: 100) { edges { node { number ...Sensitive } } } } }
    fragment Sensitive on Account { creditBalance ...Deeper }
    fragment Deeper on Account { invoices { totalCount } services { id monthlyPrice { amount } } }
    """
    for persona, email in (("bill", BILL), ("dev", DEV)):
        access = await _demo_access(engine, email)
        result = await gql.execute(query, token=tokens[persona])
        edges = result["data"]["viewer"]["accounts"]["edges"]
        ids = {}
        async with create_session_factory(engine)() as session:
            ids = dict((await session.execute(select(AccountRow.number, AccountRow.id))).all())
        expected = []
        for index, edge in enumerate(edges):
            node, account_id = edge["node"], ids[edge["node"]["number"]]
            base = ["viewer", "accounts", "edges", index, "node"]
            for name, perm in (("creditBalance", Permission.CREDITS_READ), ("invoices", Permission.INVOICES_READ),
                               ("services", Permission.SERVICES_READ)):
                if access.has(account_id, perm):
                    assert node[name] is not None
                else:
                    assert node[name] is None
                    expected.append(([*base, name], "FORBIDDEN", perm.value))
            if node["services"] is not None:
                for position, service in enumerate(node["services"]):
                    if access.has(account_id, Permission.INVOICES_READ):
                        assert service["monthlyPrice"] is not None
                    else:
                        assert service["monthlyPrice"] is None
                        expected.append(([*base, "services", position, "monthlyPrice"], "FORBIDDEN", "INVOICES_READ"))
        assert {edge["node"]["number"] for edge in edges} == {
            number for number, account_id in ids.items() if access.can_see(account_id)}
        assert sorted(_errors(result)) == sorted(expected), persona
        assert expected, "the fragments must hit at least one denied field"


async def test_inline_fragments_on_node_cannot_reach_a_denied_object(
    gql: GraphQLClient, tokens: dict[str, str], world: World
) -> None:
    invoice = _first_of(world, HEAD_OFFICE, "Invoice")
    service = _first_of(world, HEAD_OFFICE, "Service")
    queries = [
        "query($id: ID!) { node(id: $id) { ... on Invoice { total { amount } number } } }",
        "query($id: ID!) { node(id: $id) { __typename } }",
        "query($id: ID!) { node(id: $id) { ... on Node { id ... on Invoice { subtotal { amount } } } } }",
        "query($id: ID!) { node(id: $id) { ...F } } fragment F on Invoice { lines { amount { amount } } }",
    ]
    for query in queries:
        dev = await gql.execute(query, {"id": invoice}, token=tokens["dev"])
        assert dev["data"] == {"node": None}, query
        assert _errors(dev) == [(["node"], "FORBIDDEN", "INVOICES_READ")], query
        eve = await gql.execute(query, {"id": invoice}, token=tokens["eve"])
        assert eve["data"] == {"node": None}, query
        assert _errors(eve) == [(["node"], "NOT_FOUND", None)], query
        bill = await gql.execute(query, {"id": invoice}, token=tokens["bill"])
        assert bill["data"]["node"] is not None and "errors" not in bill, query
    priced = await gql.execute(
        "query($id: ID!) { node(id: $id) { ... on Service { name monthlyPrice { amount } } } }",
        {"id": service}, token=tokens["dev"],
    )
    assert priced["data"]["node"]["name"] and priced["data"]["node"]["monthlyPrice"] is None
    assert _errors(priced) == [(["node", "monthlyPrice"], "FORBIDDEN", "INVOICES_READ")]


async def test_nodes_mixing_allowed_and_denied_ids(gql: GraphQLClient, tokens: dict[str, str], world: World) -> None:
    plan = [
        (HEAD_OFFICE, "Invoice", None),
        (HEAD_OFFICE, "Service", ("FORBIDDEN", "SERVICES_READ")),
        (HEAD_OFFICE, "CreditLedgerEntry", None),
        (HEAD_OFFICE, "Ticket", ("FORBIDDEN", "TICKETS_READ")),
        (LABS, "Invoice", ("NOT_FOUND", None)),
        (CONTOSO, "Invoice", ("NOT_FOUND", None)),
        (RETAIL, "CreditLedgerEntry", None),
        (LOGISTICS, "Service", ("FORBIDDEN", "SERVICES_READ")),
        (RETAIL, "Invoice", None),
        (HEAD_OFFICE, "AuditEvent", ("FORBIDDEN", "AUDIT_READ")),
    ]
    ids = [_first_of(world, number, type_name) for number, type_name, _ in plan]
    result = await gql.execute(
        "query($ids: [ID!]!) { nodes(ids: $ids) { id __typename } }", {"ids": ids}, token=tokens["bill"]
    )
    nodes = result["data"]["nodes"]
    assert len(nodes) == len(plan)
    expected_errors = []
    for index, ((_number, type_name, denial), global_id) in enumerate(zip(plan, ids)):
        if denial is None:
            assert nodes[index] == {"id": global_id, "__typename": type_name}
        else:
            assert nodes[index] is None
            expected_errors.append((["nodes", index], *denial))
    assert sorted(_errors(result), key=str) == sorted(expected_errors, key=str)


async def test_connections_leave_out_denied_rows_silently(engine: AsyncEngine, world: World) -> None:
    """No list in the schema mixes accounts yet, so the guard attached to a real field is
    driven directly: rows of other accounts go, without an error; a single object raises."""
    runtime = build_schema()._schema
    extensions = runtime.type_map["Account"].fields["creditLedger"].extensions["strawberry-definition"].extensions
    guard = next(extension for extension in extensions if isinstance(extension, GuardObjects))
    node_guard = next(e for e in runtime.query_type.fields["node"].extensions["strawberry-definition"].extensions
                      if isinstance(e, GuardObjects))
    head, retail, labs = (world.account_ids[n] for n in (HEAD_OFFICE, RETAIL, LABS))

    def entry(pk: int, account_id: int) -> CreditLedgerEntry:
        return CreditLedgerEntry(pk=pk, account_id=account_id, kind=LedgerEntryKind.USAGE, delta=-1,
                                 balance_after=0, created_at=datetime.now(timezone.utc), note=None,
                                 transfer_id=None, actor_user_id=None)

    rows = [entry(1, head), entry(2, retail), entry(3, labs), entry(4, head)]
    access = AccessMap({head: frozenset({Permission.CREDITS_READ}), retail: frozenset({Permission.INVOICES_READ})})
    info = SimpleNamespace(context=SimpleNamespace(enforce_permissions=True, access=access))

    async def as_connection(*_: Any, **__: Any) -> Connection[CreditLedgerEntry]:
        page = SimpleNamespace(cursor=lambda index: str(rows[index].pk))  # what an Edge reads
        return Connection(edges=[Edge(node=row, _page=page, _index=index) for index, row in enumerate(rows)],
                          page_info=PageInfo(has_next_page=False, has_previous_page=False,
                                             start_cursor=None, end_cursor=None),
                          _count=lambda: len(rows))

    async def as_list(*_: Any, **__: Any) -> list[CreditLedgerEntry]:
        return list(rows)

    connection = await guard.resolve_async(as_connection, None, info)
    assert [edge.node.pk for edge in connection.edges] == [1, 4]
    assert [row.pk for row in await guard.resolve_async(as_list, None, info)] == [1, 4]

    async def single(pk: int) -> Any:
        async def one(*_: Any, **__: Any) -> CreditLedgerEntry:
            return rows[pk - 1]
        return await node_guard.resolve_async(one, None, info)

    assert (await single(4)).pk == 4
    with pytest.raises(PermissionDenied) as denied:
        await single(2)  # Retail is visible (INVOICES_READ) but not its ledger
    assert denied.value.extensions == {"permission": "CREDITS_READ"}
    with pytest.raises(NotFound):
        await single(3)  # Labs is not visible at all


@pytest.fixture
async def retail_only_token(engine: AsyncEngine) -> AsyncIterator[str]:
    """A sub-account on a *member* of the billing group, with nothing on its head."""
    sessions = create_session_factory(engine)
    async with sessions() as session:
        retail = await session.scalar(select(AccountRow.id).where(AccountRow.number == RETAIL))
        user = User(email=f"matrix-member-only-{uuid.uuid4().hex[:12]}@test.example", name="Member only",
                    password_hash="!")
        session.add(user)
        await session.flush()
        session.add(Membership(user_id=user.id, account_id=retail, permissions=["INVOICES_READ"]))
        await session.commit()
    try:
        yield await token_for_user(engine, user.id)
    finally:
        async with sessions() as session:
            await session.execute(delete(Membership).where(Membership.user_id == user.id))
            await session.execute(delete(User).where(User.id == user.id))
            await session.commit()


async def test_a_member_only_viewer_sees_its_group_but_not_the_heads_other_groups(
    gql: GraphQLClient, tokens: dict[str, str], retail_only_token: str
) -> None:
    groups_of = """query($n: String!) { viewer { account(number: $n) {
        linkGroups { id kind head { number creditBalance linkGroups { id kind } }
                     members { friendlyName account { number } } } } } }"""
    owner = await gql.execute(groups_of, {"n": HEAD_OFFICE}, token=tokens["olivia"])
    head_groups = {group["kind"]: group["id"] for group in owner["data"]["viewer"]["account"]["linkGroups"]}
    assert set(head_groups) == {"BILLING", "MANAGEMENT"}

    result = await gql.execute(groups_of, {"n": RETAIL}, token=retail_only_token)
    (group,) = result["data"]["viewer"]["account"]["linkGroups"]
    assert group["id"] == head_groups["BILLING"]
    # The head is shown (DESIGN: `head: Account!`), but it is not a way into the head's other
    # groups, and its gated fields answer as for an account that does not exist.
    assert group["head"] == {"number": HEAD_OFFICE, "creditBalance": None,
                             "linkGroups": [{"id": head_groups["BILLING"], "kind": "BILLING"}]}
    assert {member["account"]["number"] if member["account"] else None for member in group["members"]} == {RETAIL, None}
    assert _errors(result) == [(["viewer", "account", "linkGroups", 0, "head", "creditBalance"], "NOT_FOUND", None)]

    by_id = "query($id: ID!) { node(id: $id) { id ... on LinkGroup { kind } } }"
    seen = await gql.execute(by_id, {"id": head_groups["BILLING"]}, token=retail_only_token)
    assert seen == {"data": {"node": {"id": head_groups["BILLING"], "kind": "BILLING"}}}, "same answer by ID"
    hidden = await gql.execute(by_id, {"id": head_groups["MANAGEMENT"]}, token=retail_only_token)
    missing = await gql.execute(by_id, {"id": "TGlua0dyb3VwOjk5OTk5OTk5"}, token=retail_only_token)  # LinkGroup:99999999
    assert hidden["data"] == missing["data"] == {"node": None}
    assert _errors(hidden) == _errors(missing) == [(["node"], "NOT_FOUND", None)]
