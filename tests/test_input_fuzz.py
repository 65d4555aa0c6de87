"""Hostile input values, over HTTP, into every argument of every operation (the input-fuzzing
issue): no answer may be a 5xx, every answer is JSON without a traceback, and an error in it
carries a known code, never INTERNAL_SERVER_ERROR. A refused value answers BAD_USER_INPUT (or
another known code) or a ``userErrors`` entry.

``tests/test_fuzz.py`` sends random *valid* operations; this file takes the operations from the
schema (every field of Query and Mutation with arguments, and the fields with arguments one
level further: ``viewer { accounts(search:) }``, ``viewer { account(number:) { invoices(filter:) } }``)
and puts hostile *values* into them, three ways:

- ``test_hostile_value_sweep_*``: from a valid baseline (real IDs, numbers and tokens of the
  caller's own data, so the value reaches the resolver and the database), one position at a time
  gets each named hostile value of its type (``tests/strings.py``: NUL, lone surrogates, control
  characters, bidi and zero-width marks, emoji, very long text, long numbers, junk and
  out-of-range IDs, naive and far-away DateTimes, out-of-range Ints, null, missing…), as a
  variable and, for text, as an escaped literal in the document. Deterministic; every failing
  position is reported, each as its own minimal reproduction.
- ``test_random_values_*``: hypothesis draws every argument at once (baseline, arbitrary text with
  surrogates and NULs, base64 of arbitrary things, arbitrary ints and dates, null, missing) and
  the persona, and shrinks a failure to a minimal example.
- ``test_raw_bodies*``, ``test_get_requests``: arbitrary bytes, arbitrary JSON, objects with
  wrong-typed members, batches of anything, deep nesting, invalid UTF-8, over POST (with several
  content types) and as GET query parameters; each known kind of broken body by name, then
  random ones.

Queries run as olivia (the demo owner; they only read) and anonymously where that is not
refused outright; mutations as a fresh customer of their own (``tests/customers.py``),
anonymously where the mutation serves anonymous callers (sign-in, sign-up, reset…), and as
finance staff where the owner is only ever refused (staff-only mutations). The random test also
sends mutations that name an object as the demo staff and sub-accounts, always with the new
customer's IDs, and never the ones acting on the caller's own login (logout, changePassword,
two-factor): the demo rows and sessions the other test files use stay as they are.

A sweep case that graphql-core refuses by itself (a document that does not validate, variables
that do not coerce to their types, checked here with the same schema) is sent once, anonymously:
it never reaches a resolver, what it meets (the HTTP layer, parsing, validation) does not
depend on the caller, and a signed-in request costs a session check. Passwords are hashed with a cheap argon2 while
this module runs (as tests/test_no_oracle.py swaps the hasher): the same calls on the same
input, without 180 ms each.

CI runs a bounded number of random examples and leaves a few near-duplicate named values out of
the sweep (``strings.EXTENDED_ONLY``). ``LINKGATE_FUZZ_EXAMPLES=500`` runs that many random
examples per operation, and every named value. ``LINKGATE_FUZZ_REPORT=path`` appends every
answer (operation, caller, position, value class, status, outcome) to ``path`` as JSON lines.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import functools
import itertools
import json
import os
import re
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import graphql
import httpx
import pytest
from graphql import (
    GraphQLEnumType, GraphQLInputObjectType, GraphQLInterfaceType, GraphQLList, GraphQLObjectType,
    GraphQLScalarType, GraphQLUnionType, get_named_type, get_nullable_type, is_non_null_type,
)
from graphql.execution.values import get_variable_values
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from schema import print_schema_sdl
from schema.relay import decode_global_id, encode_global_id
from tests import strings
from tests.billing_world import issue_invoice
from tests.conftest import GraphQLClient, client_for
from tests.customers import (
    PASSWORD, add_contact, emailed_token, new_sub_account, register, sign_up_and_confirm, unique_email,
)

SCHEMA = graphql.build_schema(print_schema_sdl())
RANDOM_EXAMPLES = int(os.environ.get("LINKGATE_FUZZ_EXAMPLES") or 6)
EXTENDED = bool(os.environ.get("LINKGATE_FUZZ_EXAMPLES"))  # every named value in the sweep
FUZZ = settings(
    max_examples=RANDOM_EXAMPLES, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.filter_too_much, HealthCheck.data_too_large,
                           HealthCheck.large_base_example],
)
KNOWN_CODES = {"BAD_USER_INPUT", "UNAUTHENTICATED", "FORBIDDEN", "NOT_FOUND", "RATE_LIMITED",
               "PERSISTED_QUERY_NOT_FOUND"}
REFUSED_CALLER = {"UNAUTHENTICATED", "FORBIDDEN"}
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "<missing>"})()
# What a leaked Python traceback always shows (no hostile value here holds either).
TRACEBACK = re.compile(r'Traceback|File "')


# --- the operations ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A field with arguments and the fields leading to it from the root."""

    operation: str  # "query" or "mutation"
    steps: tuple[tuple[str, str], ...]  # (parent type, field name), from the root

    @property
    def name(self) -> str:
        return ".".join(name for _, name in self.steps)

    @property
    def root_field(self) -> str:
        return self.steps[0][1]

    def fields(self) -> list[graphql.GraphQLField]:
        return [SCHEMA.type_map[parent].fields[name] for parent, name in self.steps]  # type: ignore[attr-defined]

    def arguments(self) -> Iterator[tuple[str, str, str, graphql.GraphQLArgument]]:
        """(variable name, owner for baselines, name, argument) of every argument on the way."""
        for level, ((parent, name), definition) in enumerate(zip(self.steps, self.fields())):
            for arg_name, argument in definition.args.items():
                yield f"{arg_name}{level}" if level else arg_name, f"{parent}.{name}", arg_name, argument

    def own_variables(self) -> set[str]:
        """The variables of the target field itself (those on the way there have targets of
        their own: ``viewer.account(number:)``)."""
        level = len(self.steps) - 1
        return {f"{name}{level}" if level else name for name in self.fields()[-1].args}


def discover_targets() -> list[Target]:
    """Every root field with arguments, and (for queries, breadth first, up to three fields
    deep) every field with arguments reachable through object fields."""
    targets: list[Target] = []
    for root, operation in (("Query", "query"), ("Mutation", "mutation")):
        seen: set[tuple[str, str]] = set()
        queue: deque[tuple[tuple[tuple[str, str], ...], GraphQLObjectType]] = deque(
            [((), SCHEMA.type_map[root])]  # type: ignore[list-item]
        )
        while queue:
            steps, parent = queue.popleft()
            for name, definition in parent.fields.items():
                if (parent.name, name) in seen:
                    continue
                seen.add((parent.name, name))
                path = (*steps, (parent.name, name))
                if definition.args:
                    targets.append(Target(operation, path))
                named = get_named_type(definition.type)
                if operation == "query" and len(path) < 3 and isinstance(named, GraphQLObjectType):
                    queue.append((path, named))
    return targets


TARGETS = discover_targets()
QUERY_TARGETS = [target for target in TARGETS if target.operation == "query"]
MUTATION_TARGETS = [target for target in TARGETS if target.operation == "mutation"]


def selection(type_: Any, depth: int) -> str:
    """Every field without required arguments: scalars, and objects ``depth`` levels down."""
    named = get_named_type(type_)
    if isinstance(named, (GraphQLScalarType, GraphQLEnumType)):
        return ""
    if isinstance(named, (GraphQLInterfaceType, GraphQLUnionType)):
        return "{ __typename ... on Node { id } }"
    parts = ["__typename"]
    for name, definition in named.fields.items():
        if any(is_non_null_type(arg.type) and arg.default_value is graphql.Undefined
               for arg in definition.args.values()):
            continue
        inner = get_named_type(definition.type)
        if isinstance(inner, (GraphQLScalarType, GraphQLEnumType)):
            parts.append(name)
        elif depth > 0:
            parts.append(f"{name} {selection(definition.type, depth - 1)}")
    return "{ " + " ".join(parts) + " }"


def literal(value: Any, type_: Any) -> str:
    """``value`` as a GraphQL literal, whether or not it fits ``type_``. Strings are JSON
    escaped (a NUL is ``\\u0000``, a lone surrogate ``\\ud800``), which is GraphQL's syntax too."""
    nullable = get_nullable_type(type_) if type_ is not None else None
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        if isinstance(nullable, GraphQLEnumType) and re.fullmatch(r"[_A-Za-z][_0-9A-Za-z]*", value) \
                and value not in ("true", "false", "null"):
            return value
        return json.dumps(value)
    if isinstance(value, list):
        inner = nullable.of_type if isinstance(nullable, GraphQLList) else None
        return "[" + ", ".join(literal(item, inner) for item in value) + "]"
    fields = nullable.fields if isinstance(nullable, GraphQLInputObjectType) else {}
    return "{" + ", ".join(
        f"{key}: {literal(item, fields[key].type if key in fields else None)}"
        for key, item in value.items() if item is not MISSING
    ) + "}"


def document(target: Target, values: dict[str, Any] | None = None) -> str:
    """The operation; arguments as variables, or inline literals when ``values`` is given."""
    declarations: list[str] = []
    names = iter(target.arguments())
    head = tail = ""
    for definition, (_, name) in zip(target.fields(), target.steps):
        arguments = []
        for _ in definition.args:
            variable, _, arg_name, argument = next(names)
            if values is None:
                declarations.append(f"${variable}: {argument.type}")
                arguments.append(f"{arg_name}: ${variable}")
            elif values.get(variable, MISSING) is not MISSING:
                arguments.append(f"{arg_name}: {literal(values[variable], argument.type)}")
        head += name + (f"({', '.join(arguments)})" if arguments else "") + " { "
        tail = " }" + tail
    last = target.fields()[-1]
    # One level under a payload (its object's scalars, userErrors); two under a connection (its
    # nodes' scalars), which is where the arguments' effect shows.
    depth = 2 if last.type and get_named_type(last.type).name.endswith("Connection") else 1
    head = head[: -len(" { ")] + " " + selection(last.type, depth)
    tail = tail[: -len(" }")]
    signature = f"({', '.join(declarations)})" if declarations else ""
    return f"{target.operation}{signature} {{ {head}{tail} }}"


# --- baselines: valid values from the caller's own data -------------------------------------


class Ctx(dict[str, Any]):
    """What baselines need from the caller's data (IDs, numbers, tokens); filled lazily."""


class Recorder:
    """Stands in for a Ctx to learn which of its keys a target's baseline uses."""

    def __init__(self) -> None:
        self.keys: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.keys.add(key)
        return f"<{key}>"


class Sentinel:
    """A baseline value decided when the request is sent: a new email for each request (an
    address taken by the previous one would hide what follows), the customer's password as it
    is now (a sweep of changePassword may have changed it)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"

    def __deepcopy__(self, memo: Any) -> Sentinel:
        return self


FRESH_EMAIL = Sentinel("fresh email")
CURRENT_PASSWORD = Sentinel("current password")


def materialized(value: Any, ctx: Any) -> Any:
    if value is FRESH_EMAIL:
        return unique_email("fuzz")
    if value is CURRENT_PASSWORD:
        return ctx.get("password", PASSWORD) if isinstance(ctx, dict) else PASSWORD
    if isinstance(value, list):
        return [materialized(item, ctx) for item in value]
    if isinstance(value, dict):
        return {key: materialized(item, ctx) for key, item in value.items()}
    return value


def _fresh_email(ctx: Any) -> Any:
    return FRESH_EMAIL


# By "InputType.field" or "Parent.field.argument", then by name alone.
SPECIFIC: dict[str, Callable[[Any], Any]] = {
    "Query.node.id": lambda ctx: ctx["account_id"],
    "Query.nodes.ids": lambda ctx: ctx["account_id"],
    "Query.invoiceDownloadUrl.ids": lambda ctx: ctx["invoice_id"],
    "UnlinkAccountInput.accountId": lambda ctx: ctx["other_account_id"],
    "TransferCreditsInput.toAccountId": lambda ctx: ctx["other_account_id"],
    "TransferCreditsInput.fromAccountId": lambda ctx: ctx["funded_account_id"],
    "OwnerCredentialsInput.accountNumber": lambda ctx: ctx["other_account_number"],
    "EnrollmentProofInput.accountNumber": lambda ctx: ctx["other_account_number"],
    "SignUpInput.email": _fresh_email,
    "AddContactInput.email": _fresh_email,
    "UpdateContactInput.email": _fresh_email,
    "ConfirmSignUpInput.token": lambda ctx: ctx["sign_up_token"],
    "AcceptInvitationInput.token": lambda ctx: ctx["invitation_token"],
    "ResetPasswordInput.token": lambda ctx: ctx["reset_token"],
    "SetSubAccountPermissionsInput.userId": lambda ctx: ctx["sub_user_id"],
    "InvoiceFilter.number": lambda ctx: "INV",
    "AddPaymentMethodInput.token": lambda ctx: "tok_visa",
    # Required there: each case is a new attempt (a replayed key would answer from the first).
    "PayInvoiceInput.idempotencyKey": lambda ctx: "fuzz-pay",
    "PayInvoiceInput.invoiceId": lambda ctx: ctx["payable_invoice_id"],
}
BY_NAME: dict[str, Callable[[Any], Any]] = {
    "accountId": lambda ctx: ctx["account_id"],
    "headAccountId": lambda ctx: ctx["account_id"],
    "contactId": lambda ctx: ctx["contact_id"],
    "ticketId": lambda ctx: ctx["ticket_id"],
    "invitationId": lambda ctx: ctx["invitation_id"],
    "linkGroupId": lambda ctx: ctx["link_group_id"],
    "userId": lambda ctx: ctx["user_id"],
    "email": lambda ctx: ctx["email"],
    "ccEmails": lambda ctx: ctx["email"],
    "recipients": lambda ctx: ctx["email"],
    "password": lambda ctx: CURRENT_PASSWORD,
    "currentPassword": lambda ctx: CURRENT_PASSWORD,
    "newPassword": lambda ctx: CURRENT_PASSWORD,
    "number": lambda ctx: ctx["account_number"],
    "accountNumber": lambda ctx: ctx["account_number"],
    "enrollmentToken": lambda ctx: ctx["other_enrollment_token"],
    "refreshToken": lambda ctx: ctx["refresh_token"],
    # Account names that sort after the demo's: staff list every account by name, and the
    # other files find the demo accounts on the first page.
    "name": lambda ctx: "Zz Fuzz Name",
    "accountName": lambda ctx: "Zz Fuzz Holdings",
    "subject": lambda ctx: "Fuzz subject",
    "body": lambda ctx: "Fuzz body text",
    "description": lambda ctx: "Fuzz usage",
    "note": lambda ctx: "Fuzz note",
    "friendlyName": lambda ctx: "Fuzz friendly name",
    "groupName": lambda ctx: "Fuzz group",
    "phone": lambda ctx: "+31 20 555 0100",
    "line1": lambda ctx: "1 Fuzz Street",
    "line2": lambda ctx: "Floor 2",
    "city": lambda ctx: "Amsterdam",
    "postalCode": lambda ctx: "1011 AA",
    "country": lambda ctx: "NL",
    "credits": lambda ctx: 1,
    "threshold": lambda ctx: 10,
    "first": lambda ctx: 5,
    "issuedFrom": lambda ctx: "2020-01-01T00:00:00+00:00",
    "issuedTo": lambda ctx: "2100-01-01T00:00:00+00:00",
    "code": lambda ctx: "123456",
    "search": lambda ctx: "North",
    "period": lambda ctx: "1999-01",  # ended long ago, before any charge: invoices nothing
    "permissions": lambda ctx: "TICKETS_READ",
    "enabled": lambda ctx: True,
    "paymentMethodId": lambda ctx: ctx["payment_method_id"],
    "amount": lambda ctx: 1,
    "reference": lambda ctx: "Fuzz transfer reference",
    "reason": lambda ctx: "Fuzz void reason",
    # Optional and better left out of a baseline (a cursor, a replay key, a one-time code).
    "after": lambda ctx: MISSING,
    "idempotencyKey": lambda ctx: MISSING,
    "otp": lambda ctx: MISSING,
}
# Input objects whose fields exclude each other: the baseline has the first, never both.
EXCLUSIVE = {"LinkAccountInput": ("credentials", "enrollment")}


def baseline_value(type_: Any, owner: str, name: str, ctx: Any) -> Any:
    nullable = get_nullable_type(type_)
    if isinstance(nullable, GraphQLList):
        item = baseline_value(nullable.of_type, owner, name, ctx)
        return [] if item is MISSING else [item]
    if isinstance(nullable, GraphQLInputObjectType):
        built = {key: baseline_value(value.type, nullable.name, key, ctx)
                 for key, value in nullable.fields.items()}
        return {key: value for key, value in built.items() if value is not MISSING}
    for key in (f"{owner}.{name}", name):
        source = SPECIFIC.get(key) or (BY_NAME.get(key) if key == name else None)
        if source is not None:
            return source(ctx)
    if isinstance(nullable, GraphQLEnumType):
        return next(iter(nullable.values))
    if nullable.name == "ID":
        return ctx["account_id"]
    return {"Boolean": False, "Int": 1, "DateTime": "2026-01-01T00:00:00+00:00",
            "Date": "2026-01-01"}.get(nullable.name, "Fuzz text")


def baseline(target: Target, ctx: Any) -> dict[str, Any]:
    values = {variable: baseline_value(argument.type, owner, name, ctx)
              for variable, owner, name, argument in target.arguments()}
    return {key: value for key, value in values.items() if value is not MISSING}


def needs(target: Target) -> set[str]:
    recorder = Recorder()
    baseline(target, recorder)
    return recorder.keys


def arranged(variables: dict[str, Any], types: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    """``variables`` with one of each EXCLUSIVE pair dropped: the one ``path`` does not go through."""
    variables = copy.deepcopy(variables)

    def visit(value: Any, type_: Any, rest: tuple[Any, ...]) -> None:
        nullable = get_nullable_type(type_)
        if isinstance(nullable, GraphQLInputObjectType) and isinstance(value, dict):
            pair = EXCLUSIVE.get(nullable.name)
            if pair:
                keep = pair[1] if rest[:1] == (pair[1],) else pair[0]
                for dropped in pair:
                    if dropped != keep:
                        value.pop(dropped, None)
            for key, item in value.items():
                if key in nullable.fields:
                    visit(item, nullable.fields[key].type, rest[1:] if rest[:1] == (key,) else ())
        elif isinstance(nullable, GraphQLList) and isinstance(value, list):
            for item in value:
                visit(item, nullable.of_type, rest[1:] if rest[:1] == (0,) else ())

    for key, value in variables.items():
        visit(value, types[key], path[1:] if path[:1] == (key,) else ())
    return variables


# --- the sweep: one position, one hostile value at a time ------------------------------------


def positions(
    type_: Any, path: tuple[Any, ...], default: Any = graphql.Undefined
) -> Iterator[tuple[tuple[Any, ...], Any, Any]]:
    """(path, type, schema default) of every value in a variable of ``type_``: the variable,
    its input fields, the first item of its lists, recursively."""
    yield path, type_, default
    nullable = get_nullable_type(type_)
    if isinstance(nullable, GraphQLList):
        yield from positions(nullable.of_type, (*path, 0))
    elif isinstance(nullable, GraphQLInputObjectType):
        for key, value in nullable.fields.items():
            yield from positions(value.type, (*path, key), value.default_value)


def value_at(root: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        try:
            root = root[key]
        except (KeyError, IndexError, TypeError):
            return MISSING
    return root


def replaced(variables: dict[str, Any], full: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """``variables`` with ``value`` at ``path`` (containers the baseline left out taken from
    ``full``, the baseline with every optional part); MISSING deletes the key."""
    result = copy.deepcopy(variables)
    node: Any = result
    for depth, key in enumerate(path[:-1]):
        try:
            node = node[key]
        except (KeyError, IndexError):
            node[key] = copy.deepcopy(value_at(full, path[: depth + 1]))
            node = node[key]
    if value is MISSING:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return result


def id_type(global_id: Any) -> str:
    """The type name in one of our IDs (what hostile IDs for its position are made of)."""
    try:
        return base64.urlsafe_b64decode(global_id + "=" * (-len(global_id) % 4)).decode().split(":")[0]
    except (TypeError, ValueError):
        return "Account"


def hostile_values(type_: Any, base: Any) -> dict[str, Any]:
    """The named hostile values for a position of ``type_`` whose baseline is ``base``."""
    nullable = get_nullable_type(type_)
    if isinstance(nullable, GraphQLList):
        item = base[0] if isinstance(base, list) and base else "x"
        found = strings.list_values(item)
    elif isinstance(nullable, GraphQLInputObjectType):
        found = strings.object_values(base if isinstance(base, dict) else {})
    elif isinstance(nullable, GraphQLEnumType):
        found = strings.enum_values(list(nullable.values))
    elif nullable.name == "ID":
        found = strings.id_values(id_type(base))
    elif nullable.name == "Int":
        found = strings.INT
    elif nullable.name == "Boolean":
        found = strings.BOOLEAN
    elif nullable.name in ("DateTime", "Date"):
        found = strings.DATETIME
    else:
        found = strings.TEXT
    return {"null": None, **found}


@dataclass
class Case:
    target: Target
    persona: str
    position: str
    label: str
    variables: dict[str, Any]
    inline: bool = False  # the values as literals in the document, not as variables
    ctx: Any = None

    def body(self) -> dict[str, Any]:
        """The request body; fixed at the first call (fresh emails are drawn then)."""
        if not hasattr(self, "_body"):
            variables = materialized(self.variables, self.ctx)
            if self.inline:
                self._body = {"query": document(self.target, variables)}
            else:
                self._body = {"query": document(self.target), "variables": variables}
        return self._body


def sweep_cases(target: Target, ctx: Any, persona: str) -> Iterator[Case]:
    """For each position of the target field's own arguments, the baseline with that one
    position given each hostile value of its type (null, missing, the named values), and, for
    text, the same values as literals in the document."""
    full = baseline(target, ctx)
    types = {variable: argument.type for variable, _, _, argument in target.arguments()}
    defaults = {variable: argument.default_value for variable, _, _, argument in target.arguments()}
    for variable, type_ in types.items():
        if variable not in target.own_variables():
            continue
        for path, position_type, default in positions(type_, (variable,), defaults[variable]):
            base = arranged(full, types, path)
            current = value_at(full, path)
            where = ".".join(str(key) for key in path)
            values = hostile_values(position_type, current)
            if not isinstance(path[-1], int):
                if is_non_null_type(position_type) and default is graphql.Undefined:
                    values["missing-required"] = MISSING
                elif default is graphql.Undefined or default is not None:
                    # Missing is null where the schema's default is null: sent once, as null.
                    values["missing"] = MISSING
            for label, value in values.items():
                if EXTENDED or label not in strings.EXTENDED_ONLY:
                    yield Case(target, persona, where, label, replaced(base, full, path, value), ctx=ctx)
            if get_named_type(position_type).name in ("String", "ID") and not isinstance(
                get_nullable_type(position_type), GraphQLList
            ):
                for label in ("nul", "lone-surrogate", "emoji-non-bmp", "control-chars"):
                    if EXTENDED or f"literal {label}" not in strings.EXTENDED_ONLY:
                        yield Case(target, persona, where, f"literal {label}",
                                   replaced(base, full, path, strings.TEXT[label]), inline=True, ctx=ctx)


# --- sending and judging ---------------------------------------------------------------------

_addresses = itertools.count(1)


def next_address() -> str:
    """A client address of its own for each request: no per-client throttle builds up."""
    n = next(_addresses)
    return f"10.{77 + n // 65025 % 100}.{n // 255 % 255}.{n % 255 + 1}"


def problems_of(response: httpx.Response) -> tuple[str, list[str]]:
    """(what the app answered, in short; what is wrong with the answer)."""
    found: list[str] = []
    if response.status_code >= 500:
        found.append(f"HTTP {response.status_code}")
    if TRACEBACK.search(response.text):
        found.append("traceback text in the body")
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code} non-JSON", [*found, "body is not JSON"]
    items = body if isinstance(body, list) else [body]
    outcome: list[str] = []
    for item in items:
        if not isinstance(item, dict):
            found.append(f"answer item is not an object: {item!r:.80}")
            continue
        for error in item.get("errors") or []:
            code = (error.get("extensions") or {}).get("code") if isinstance(error, dict) else None
            outcome.append(f"error {code}")
            if code == "INTERNAL_SERVER_ERROR":
                found.append(f"INTERNAL_SERVER_ERROR: {error.get('message')!r:.200}")
            elif code not in KNOWN_CODES:
                found.append(f"error without a known code: {json.dumps(error)[:300]}")
        outcome += [f"userError {code}" for code in _user_error_codes(item.get("data"))]
    if not outcome:
        outcome = ["ok"]
    return f"HTTP {response.status_code} " + ", ".join(sorted(set(outcome))), found


def _user_error_codes(data: Any) -> list[str]:
    if isinstance(data, dict):
        codes = [entry.get("code") for entry in data.get("userErrors") or [] if isinstance(entry, dict)]
        for value in data.values():
            codes += _user_error_codes(value)
        return codes
    if isinstance(data, list):
        return [code for item in data for code in _user_error_codes(item)]
    return []


def shown(value: Any) -> str:
    """A value for a report: huge strings and lists abbreviated."""
    if isinstance(value, str) and len(value) > 120:
        return f"{json.dumps(value[:20])} * ~{len(value)} chars"
    if isinstance(value, list) and len(value) > 10:
        return f"[{shown(value[0])}] * {len(value)}"
    if isinstance(value, list):
        return "[" + ", ".join(shown(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(key)}: {shown(item)}" for key, item in value.items()) + "}"
    return json.dumps(value)


@dataclass
class Sender:
    app: Any
    tokens: dict[str, str | None] = field(default_factory=dict)

    async def post(self, body: Any, persona: str, *, raw: bytes | None = None,
                   content_type: str = "application/json") -> httpx.Response:
        token = self.tokens.get(persona)
        headers = {"content-type": content_type}
        if token:
            headers["authorization"] = f"Bearer {token}"
        content = raw if raw is not None else json.dumps(body).encode()
        async with client_for(self.app, next_address()) as http:
            return await http.post("/graphql", content=content, headers=headers)

    async def get(self, query_string: str, persona: str) -> httpx.Response:
        """A GET as a GraphQL client sends it (asking for JSON, not the GraphiQL page)."""
        token = self.tokens.get(persona)
        headers = {"accept": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        async with client_for(self.app, next_address()) as http:
            return await http.get("/graphql?" + query_string, headers=headers)


def repro(case: Case, response: httpx.Response, problems: list[str]) -> str:
    body = case.body()
    variables = body.get("variables")
    query = body["query"]
    if len(query) > 600:
        query = re.sub(r'"(?:[^"\\]|\\.){100,}"', lambda m: m.group(0)[:40] + f'…({len(m.group(0))} chars)"', query)
    return (
        f"[{case.target.name}] as {case.persona}: {case.position} = {case.label}\n"
        f"    query: {query}\n"
        + (f"    variables: {shown(variables)}\n" if variables is not None else "")
        + f"    answer: HTTP {response.status_code} {response.text[:300]}\n"
        f"    problems: {'; '.join(problems)}"
    )


def record(case: Case, outcome: str, problems: list[str], status: int, seconds: float) -> None:
    path = os.environ.get("LINKGATE_FUZZ_REPORT")
    if not path:
        return
    line = {"target": case.target.name, "persona": case.persona, "position": case.position,
            "value": case.label, "inline": case.inline, "status": status, "outcome": outcome,
            "problems": problems, "seconds": round(seconds, 4),
            "database": "postgresql" if os.environ.get("LINKGATE_TEST_DATABASE_URL") else "sqlite"}
    with open(path, "a", encoding="utf-8") as report:
        report.write(json.dumps(line) + "\n")


# --- callers and their data ------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def cheap_password_hashing() -> Iterator[None]:
    """argon2id at its cheapest while this module runs: the server makes the same calls."""
    import auth.passwords
    from argon2 import PasswordHasher

    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    patch = pytest.MonkeyPatch()
    patch.setattr(auth.passwords, "_hasher", cheap, raising=False)
    patch.setattr(auth.passwords, "_DUMMY_HASH", cheap.hash("linkgate-timing-equaliser"), raising=False)
    yield
    patch.undo()


@pytest.fixture(scope="module")
async def demo_ctx(gql: GraphQLClient, tokens: dict[str, str]) -> Ctx:
    """Olivia's head office: its number and IDs (queries only read)."""
    result = await gql.execute("""{ viewer { user { id email } account(number: "ACC-100001") {
        id number invoices(first: 1) { edges { node { id } } } } } }""", token=tokens["olivia"])
    viewer = result["data"]["viewer"]
    account = viewer["account"]
    return Ctx(account_id=account["id"], account_number=account["number"], user_id=viewer["user"]["id"],
               email=viewer["user"]["email"],
               invoice_id=account["invoices"]["edges"][0]["node"]["id"])


MUTATE = {
    "openTicket": """mutation($input: OpenTicketInput!) { openTicket(input: $input) {
        ticket { id } userErrors { code } } }""",
    "linkAccount": """mutation($input: LinkAccountInput!) { linkAccount(input: $input) {
        linkGroup { id } userErrors { code } } }""",
    "purchaseCredits": """mutation($input: PurchaseCreditsInput!) { purchaseCredits(input: $input) {
        userErrors { code } } }""",
    "activateSubAccount": """mutation($input: ActivateSubAccountInput!) { activateSubAccount(input: $input) {
        invitation { id } userErrors { code } } }""",
    "signUp": """mutation($input: SignUpInput!) { signUp(input: $input) { ok userErrors { code } } }""",
    "addPaymentMethod": """mutation($input: AddPaymentMethodInput!) { addPaymentMethod(input: $input) {
        paymentMethod { id } userErrors { code } } }""",
    "requestPasswordReset": """mutation($input: RequestPasswordResetInput!) {
        requestPasswordReset(input: $input) { ok } }""",
}


async def customer_ctx(gql: GraphQLClient, keys: set[str]) -> Ctx:
    """A new customer (signed up over HTTP) with what ``keys`` ask for: a second account, a
    contact, a ticket, a pending invitation, a link group, credits, emailed tokens…"""
    email = unique_email("fuzz-owner")
    payload = await sign_up_and_confirm(gql, email=email, accountName="Zz Fuzz Holdings")
    token = payload["token"]
    ctx = Ctx(token=token, email=email, user_id=payload["viewer"]["user"]["id"],
              account_id=payload["account"]["id"], account_number=payload["account"]["number"],
              refresh_token=payload["refreshToken"])

    async def run(name: str, values: dict[str, Any], *, signed_in: bool = True) -> dict[str, Any]:
        result = await gql.execute(MUTATE[name], {"input": values}, token=token if signed_in else None)
        assert "errors" not in result, result
        return result["data"][name]

    if keys & {"other_account_id", "other_account_number", "other_enrollment_token", "link_group_id"}:
        other = await register(gql, token, "Zz Fuzz Second Site")
        ctx.update(other_account_id=other.id, other_account_number=other.number,
                   other_enrollment_token=other.enrollment_token)
    if "link_group_id" in keys:
        linked = await run("linkAccount", {
            "headAccountId": ctx["account_id"], "kind": "MANAGEMENT",
            "enrollment": {"accountNumber": ctx["other_account_number"],
                           "enrollmentToken": ctx["other_enrollment_token"]}})
        ctx["link_group_id"] = linked["linkGroup"]["id"]
    if "funded_account_id" in keys:
        await run("purchaseCredits", {"accountId": ctx["account_id"], "credits": 1000})
        ctx["funded_account_id"] = ctx["account_id"]
    if "contact_id" in keys:
        ctx["contact_id"] = (await add_contact(gql, token, ctx["account_id"]))["contact"]["id"]
    if "ticket_id" in keys:
        opened = await run("openTicket", {"accountId": ctx["account_id"], "subject": "Fuzz",
                                          "body": "A ticket to fuzz."})
        ctx["ticket_id"] = opened["ticket"]["id"]
    if keys & {"invitation_id", "invitation_token"}:
        contact = (await add_contact(gql, token, ctx["account_id"]))["contact"]
        invited = await run("activateSubAccount", {"contactId": contact["id"],
                                                   "permissions": ["TICKETS_READ"]})
        ctx["invitation_id"] = invited["invitation"]["id"]
        ctx["invitation_token"] = await emailed_token(gql.engine, contact["email"], "accept-invitation")
    if keys & {"payment_method_id", "payable_invoice_id"}:
        added = await run("addPaymentMethod", {"accountId": ctx["account_id"], "token": "tok_visa"})
        ctx["payment_method_id"] = added["paymentMethod"]["id"]
        invoice = await issue_invoice(gql.engine, decode_global_id(ctx["account_id"])[1])
        ctx["payable_invoice_id"] = encode_global_id("Invoice", invoice.id)
    if "sub_user_id" in keys:
        sub = await new_sub_account(gql, token, ctx["account_id"], ["TICKETS_READ"])
        ctx["sub_user_id"] = sub.user_id
    if "sign_up_token" in keys:
        pending = unique_email("fuzz-pending")
        await run("signUp", {"email": pending, "password": PASSWORD, "name": "Zz Fuzz Name",
                             "accountName": "Zz Fuzz Holdings"}, signed_in=False)
        ctx["sign_up_token"] = await emailed_token(gql.engine, pending, "confirm-sign-up")
    if "reset_token" in keys:
        await run("requestPasswordReset", {"email": email}, signed_in=False)
        ctx["reset_token"] = await emailed_token(gql.engine, email, "reset-password")
    return ctx


def refusal(response: httpx.Response) -> bool:
    """Whether the caller, not the input, is refused (signed out, or no right to this)."""
    try:
        body = response.json()
    except ValueError:
        return False
    codes = {(error.get("extensions") or {}).get("code") for error in body.get("errors") or []}
    codes |= set(_user_error_codes(body.get("data")))
    data = body.get("data") or {}
    empty = not any(value is not None for value in data.values()) if isinstance(data, dict) else True
    return bool(codes & (REFUSED_CALLER | {"SIGN_IN_REQUIRED", "NOT_FOUND"})) or empty


# Baseline values that work once: sending the baseline to probe a caller would spend them.
SINGLE_USE = {"sign_up_token", "invitation_token", "reset_token", "refresh_token"}
# Keys naming the customer's own objects: staff and the demo sub-accounts may meet only those.
OBJECT_KEYS = {"account_id", "other_account_id", "funded_account_id", "contact_id", "ticket_id",
               "invitation_id", "link_group_id", "sub_user_id"}


def adopt(case: Case, response: httpx.Response, sender: Sender) -> None:
    """Follow the customer's session through a sweep that changes it: a mutation that signs in
    anew (changePassword) hands back the token to go on with, and the password it set."""
    if case.persona != "owner" or case.ctx is None:
        return
    try:
        data = (response.json().get("data") or {}).get(case.target.root_field) or {}
    except (ValueError, AttributeError):
        return
    if isinstance(data, dict) and data.get("token") and not data.get("userErrors"):
        sender.tokens["owner"] = data["token"]
        case.ctx["token"] = data["token"]
        new_password = (case.body().get("variables") or {}).get("input", {})
        if isinstance(new_password, dict) and isinstance(new_password.get("newPassword"), str):
            case.ctx["password"] = new_password["newPassword"]


@functools.lru_cache(maxsize=512)
def _parsed(query: str) -> graphql.DocumentNode | None:
    try:
        document_node = graphql.parse(query)
    except graphql.GraphQLError:
        return None
    return None if graphql.validate(SCHEMA, document_node) else document_node


def locally_refused(body: dict[str, Any]) -> bool:
    """Whether graphql-core refuses the request before anything of the app runs: a document
    that does not parse or validate, or variables that do not coerce to their types (the
    custom scalars, DateTime and Date, always pass here: the app parses those)."""
    document_node = _parsed(body["query"])
    if document_node is None:
        return True
    operation = document_node.definitions[0]
    values = get_variable_values(SCHEMA, operation.variable_definitions or [], body.get("variables") or {})
    return isinstance(values, list)


async def _sweep_as(sender: Sender, target: Target, ctx: Any, persona: str,
                    failures: list[str], sent: set[tuple[str, str]]) -> list[str]:
    """Every case as ``persona``; the outcomes. A case graphql-core refuses by itself meets
    no code of the app but the HTTP layer and the error masking, which is the same for every
    caller: it is sent once, anonymously (a signed-in request costs a session check)."""
    outcomes = []
    for case in sweep_cases(target, ctx, persona):
        if locally_refused(case.body()):
            if (case.position, case.label) in sent:
                continue
            sent.add((case.position, case.label))
            case.persona = "anonymous"
        started = time.perf_counter()
        response = await sender.post(case.body(), case.persona)
        outcome, problems = problems_of(response)
        record(case, outcome, problems, response.status_code, time.perf_counter() - started)
        adopt(case, response, sender)
        outcomes.append(outcome)
        if problems:
            failures.append(repro(case, response, problems))
    return outcomes


async def _sweep(sender: Sender, target: Target, ctx: Any, owner: str) -> None:
    """As the owner; anonymously when the operation serves anonymous callers (first, for the
    sign-in flows whose baseline token works once; alone, where that token is the caller:
    confirmSignUp, resetPassword, refreshSession); as finance staff when the owner met only
    refusals (staff-only mutations)."""
    failures: list[str] = []
    personas = [owner]
    keys = needs(target)
    if keys & SINGLE_USE - {"invitation_token"}:
        personas = ["anonymous"]  # the link's token is the caller (confirm, reset, refresh)
    elif keys & SINGLE_USE:
        personas.insert(0, "anonymous")
    else:
        probe = Case(target, "anonymous", "baseline", "baseline", baseline(target, ctx), ctx=ctx)
        if not refusal(await sender.post(probe.body(), "anonymous")):
            personas.append("anonymous")
    count = 0
    sent: set[tuple[str, str]] = set()
    for persona in personas:
        outcomes = await _sweep_as(sender, target, ctx, persona, failures, sent)
        count += len(outcomes)
        if persona == owner and target.operation == "mutation" and "finance" in sender.tokens and all(
            re.search(r"FORBIDDEN|BAD_USER_INPUT", outcome) for outcome in outcomes
        ) and any("FORBIDDEN" in outcome for outcome in outcomes):
            count += len(await _sweep_as(sender, target, ctx, "finance", failures, sent))
    assert count > 0
    assert not failures, f"{len(failures)} of {count} hostile values failed:\n\n" + "\n\n".join(failures)


@pytest.mark.parametrize("target", QUERY_TARGETS, ids=lambda target: target.name)
async def test_hostile_value_sweep_query(
    app: Any, tokens: dict[str, str], demo_ctx: Ctx, target: Target
) -> None:
    """Every hostile value in every position of the query's arguments, as olivia on her head
    office, and anonymously where that is not refused outright."""
    sender = Sender(app, {"olivia": tokens["olivia"], "anonymous": None})
    await _sweep(sender, target, demo_ctx, "olivia")


# Mutations after which the customer's session, or the object its baseline names, is gone.
CONSUMING = {"changePassword", "logout", "resetPassword", "deleteContact", "revokeInvitation",
             "unlinkAccount", "acceptInvitation", "closeTicket", "confirmSignUp", "refreshSession"}
_swept: dict[str, Ctx] = {}


async def mutation_ctx(gql: GraphQLClient, target: Target, *, fresh: bool) -> Ctx:
    """The target's own customer: new for the sweep; the random test reuses the sweep's (to
    save sign-ups) unless the sweep spent what the baseline names, or the session."""
    ctx = None if fresh or target.root_field in CONSUMING else _swept.get(target.name)
    if ctx is not None:
        check = await gql.post("{ viewer { user { id } } }", token=ctx["token"])
        if check.status_code != 200 or not (check.json().get("data") or {}).get("viewer"):
            ctx = None
    if ctx is None:
        ctx = await customer_ctx(gql, needs(target))
    _swept[target.name] = ctx
    return ctx


@pytest.mark.parametrize("target", MUTATION_TARGETS, ids=lambda target: target.name)
async def test_hostile_value_sweep_mutation(
    app: Any, gql: GraphQLClient, tokens: dict[str, str], target: Target
) -> None:
    """Every hostile value in every position of the mutation's input, as a new customer on its
    own objects (and anonymously, or as finance staff, as ``_sweep`` says)."""
    ctx = await mutation_ctx(gql, target, fresh=True)
    sender = Sender(app, {"owner": ctx["token"], "anonymous": None, "finance": tokens["finance"]})
    await _sweep(sender, target, ctx, "owner")


# --- random values (hypothesis) --------------------------------------------------------------


def value_strategy(type_: Any, base: Any) -> st.SearchStrategy[Any]:
    """The baseline first (what a failure shrinks to), then hostile values, then null."""
    nullable = get_nullable_type(type_)
    if isinstance(nullable, GraphQLList):
        item = value_strategy(nullable.of_type, base[0] if isinstance(base, list) and base else MISSING)
        hostile: st.SearchStrategy[Any] = st.one_of(
            st.lists(item, max_size=3), item,
            st.sampled_from(sorted(strings.list_values("x").items())).map(lambda entry: entry[1]),
        )
    elif isinstance(nullable, GraphQLInputObjectType):
        base = base if isinstance(base, dict) else {}
        required = {key: value_strategy(value.type, base.get(key, MISSING))
                    for key, value in nullable.fields.items()
                    if is_non_null_type(value.type) and value.default_value is graphql.Undefined}
        optional = {key: value_strategy(value.type, base.get(key, MISSING))
                    for key, value in nullable.fields.items() if key not in required}
        hostile = st.one_of(
            st.fixed_dictionaries(required, optional=optional),
            strings.JSON_VALUES,
        )
    elif isinstance(nullable, GraphQLEnumType):
        hostile = st.one_of(st.sampled_from(list(nullable.values)), strings.hostile_text(20), strings.JSON_SCALARS)
    elif nullable.name == "ID":
        hostile = strings.hostile_id(id_type(base))
    elif nullable.name == "Int":
        hostile = strings.hostile_int()
    elif nullable.name == "Boolean":
        hostile = st.one_of(st.booleans(), strings.JSON_SCALARS)
    elif nullable.name in ("DateTime", "Date"):
        hostile = strings.hostile_datetime()
    else:
        hostile = strings.hostile_text()
    options = [] if base is MISSING else [st.just(base)]
    return st.one_of(*options, hostile, st.none())


def variables_strategy(target: Target, base: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    required: dict[str, Any] = {}
    optional: dict[str, Any] = {}
    for variable, _, _, argument in target.arguments():
        strategy = value_strategy(argument.type, base.get(variable, MISSING))
        if is_non_null_type(argument.type) and argument.default_value is graphql.Undefined:
            required[variable] = strategy
        else:
            optional[variable] = strategy
    return st.fixed_dictionaries(required, optional=optional)


def names_a_foreign_row(value: Any, own: set[str]) -> bool:
    """Whether a string in ``value`` is the global ID of a row that may exist (a key below a
    million) and is not one of the customer's own (the demo rows, other tests' rows)."""
    if isinstance(value, str):
        if value in own:
            return False
        try:
            _, key = decode_global_id(value)
        except Exception:
            return False
        return key < 1_000_000
    if isinstance(value, list):
        return any(names_a_foreign_row(item, own) for item in value)
    if isinstance(value, dict):
        return any(names_a_foreign_row(item, own) for item in value.values())
    return False


async def _random(sender: Sender, target: Target, ctx: Any, personas: list[str]) -> None:
    loop = asyncio.get_running_loop()
    types = {variable: argument.type for variable, _, _, argument in target.arguments()}
    base = arranged(baseline(target, ctx), types, ())
    seen: list[int] = []
    own = {value for value in ctx.values() if isinstance(value, str)}

    @FUZZ
    @given(persona=st.sampled_from(personas), variables=variables_strategy(target, base), inline=st.booleans())
    def check(persona: str, variables: dict[str, Any], inline: bool) -> None:
        if target.operation == "mutation":
            # Staff may act on any account: a drawn ID must not name a row of someone else.
            assume(not names_a_foreign_row(variables, own))
        case = Case(target, persona, "random", "random", variables, inline=inline, ctx=ctx)
        started = time.perf_counter()
        future = asyncio.run_coroutine_threadsafe(sender.post(case.body(), persona), loop)
        response = future.result()
        seen.append(response.status_code)
        outcome, problems = problems_of(response)
        record(case, outcome, problems, response.status_code, time.perf_counter() - started)
        assert not problems, repro(case, response, problems)

    await asyncio.to_thread(check)
    assert seen


QUERY_PERSONAS = ["olivia", "anonymous", "bill", "dev", "eve", "agent", "finance"]


@pytest.mark.parametrize("target", QUERY_TARGETS, ids=lambda target: target.name)
async def test_random_values_query(
    app: Any, tokens: dict[str, str], demo_ctx: Ctx, target: Target
) -> None:
    """Random values in every argument at once, as each demo persona and anonymously."""
    sender = Sender(app, {**tokens, "anonymous": None})
    await _random(sender, target, demo_ctx, QUERY_PERSONAS)


@pytest.mark.parametrize("target", MUTATION_TARGETS, ids=lambda target: target.name)
async def test_random_values_mutation(
    app: Any, gql: GraphQLClient, tokens: dict[str, str], target: Target
) -> None:
    """As the customer, anonymously, and, where the mutation names an object, as staff and as
    demo sub-accounts, always on the new customer's IDs (the demo personas only meet refusals
    there)."""
    ctx = await mutation_ctx(gql, target, fresh=False)
    sender = Sender(app, {**tokens, "owner": ctx["token"], "anonymous": None})
    personas = ["owner", "anonymous"]
    if needs(target) & OBJECT_KEYS:
        # Not on the persona's own login (logout, changePassword, two-factor…): those would end
        # or throttle the demo sessions and sign-ins the other test files use.
        personas += ["finance", "agent", "dev", "bill"]
    await _random(sender, target, ctx, personas)


# --- raw bodies ------------------------------------------------------------------------------

QUERY = "query($v: String) { viewer { user { name } } }"
RAW_CASES: dict[str, bytes] = {
    "json-null": b"null",
    "json-number": b"42",
    "json-string": b'"str"',
    "json-true": b"true",
    "empty-object": b"{}",
    "empty-array": b"[]",
    "batch-of-non-objects": b'[1, "x", null]',
    "batch-of-empty-objects": b"[{}, {}]",
    "batch-nested-lists": b"[[{}]]",
    "invalid-utf8": b'{"query": "{ __typename }", "operationName": "\xff\xfe"}',
    "invalid-utf8-in-query": b'{"query": "{ __typename \xc3\x28 }"}',
    "utf8-bom": b'\xef\xbb\xbf{"query": "{ __typename }"}',
    "utf16": '{"query": "{ __typename }"}'.encode("utf-16"),
    "empty-body": b"",
    "truncated": b'{"query": "{ __typename }"',
    "nan": b'{"query": "{ __typename }", "variables": {"v": NaN}}',
    "infinity-int": b'{"query": "query($v: Int) { __typename }", "variables": {"v": 1e999}}',
    "huge-int": b'{"query": "query($v: Int) { __typename }", "variables": {"v": ' + b"9" * 5000 + b"}}",
    "nested-arrays-in-variables": (
        b'{"query": "query($v: String) { __typename }", "variables": {"v": ' + b"[" * 20_000 + b"]" * 20_000 + b"}}"
    ),
    "nested-objects-in-variables": (
        b'{"query": "query($v: String) { __typename }", "variables": {"v": ' + b'{"a":' * 15_000
        + b"1" + b"}" * 15_000 + b"}}"
    ),
    "nested-arrays-as-body": b"[" * 30_000 + b"]" * 30_000,
    "nested-in-extensions": b'{"query": "{ __typename }", "extensions": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
    "query-null": b'{"query": null}',
    "query-number": b'{"query": 1}',
    "query-object": b'{"query": {"a": 1}}',
    "query-list": b'{"query": ["{ __typename }"]}',
    "variables-string": b'{"query": "{ __typename }", "variables": "x"}',
    "variables-list": b'{"query": "{ __typename }", "variables": [1]}',
    "variables-number": b'{"query": "{ __typename }", "variables": 1}',
    "operation-name-number": b'{"query": "{ __typename }", "operationName": 1}',
    "operation-name-object": b'{"query": "{ __typename }", "operationName": {}}',
    "extensions-string": b'{"query": "{ __typename }", "extensions": "x"}',
    "extensions-persisted": b'{"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "abc"}}}',
    "nul-in-query": b'{"query": "{ __typename \\u0000 }"}',
    "surrogate-in-query": b'{"query": "{ __typename } # \\ud800"}',
    "surrogate-operation-name": b'{"query": "query A { __typename }", "operationName": "\\ud800"}',
    "surrogate-variable-name": b'{"query": "{ __typename }", "variables": {"\\ud800": 1}}',
    "nul-variable-name": b'{"query": "query($v: String) { __typename }", "variables": {"v\\u0000": 1}}',
    "duplicate-keys": b'{"query": "{ __typename }", "query": "{ viewer { user { id } } }"}',
    "over-the-body-limit": b'{"query": "{ __typename }", "variables": {"v": "' + b"x" * 100_001 + b'"}}',
    "many-variables": json.dumps({"query": QUERY, "variables": {f"v{i}": i for i in range(5000)}}).encode(),
}


async def test_raw_bodies(app: Any, tokens: dict[str, str]) -> None:
    """Each known kind of broken body, posted as JSON, anonymously and signed in."""
    sender = Sender(app, {"olivia": tokens["olivia"], "anonymous": None})
    failures = []
    for name, raw in RAW_CASES.items():
        for persona in ("anonymous", "olivia"):
            response = await sender.post(None, persona, raw=raw)
            outcome, problems = problems_of(response)
            if problems:
                failures.append(f"[{name}] as {persona}: body {raw[:120]!r}{'…' if len(raw) > 120 else ''}\n"
                                f"    answer: HTTP {response.status_code} {response.text[:300]}\n"
                                f"    problems: {'; '.join(problems)}")
    assert not failures, f"{len(failures)} raw bodies failed:\n\n" + "\n\n".join(failures)


GOOD_MEMBERS: dict[str, st.SearchStrategy[Any]] = {
    "query": st.sampled_from([QUERY, "{ __typename }", "query A { viewer { user { id } } } query B { __typename }",
                              'mutation { login(input: {email: "a@b.c", password: "x"}) { token } }']),
    "variables": st.fixed_dictionaries({}, optional={"v": strings.hostile_text()}),
    "operationName": st.sampled_from(["A", "B"]),
    "extensions": st.just({}),
}
OPERATION_OBJECTS = st.fixed_dictionaries({}, optional={
    key: st.one_of(good, strings.JSON_VALUES, strings.hostile_text()) for key, good in GOOD_MEMBERS.items()
})
DEEP = st.tuples(st.integers(min_value=1, max_value=40_000), st.sampled_from(["[]", "{}"])).map(
    lambda shape: (shape[1][0] if shape[1] == "[]" else '{"a":') * shape[0]
    + ("" if shape[1] == "[]" else "1") + shape[1][1] * shape[0]
)
RAW_BODIES = st.one_of(
    st.binary(max_size=200),
    strings.JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    OPERATION_OBJECTS.map(lambda value: json.dumps(value).encode()),
    st.lists(st.one_of(OPERATION_OBJECTS, strings.JSON_VALUES), max_size=12).map(
        lambda items: json.dumps(items).encode()
    ),
    DEEP.map(lambda deep: ('{"query": "query($v: String) { __typename }", "variables": {"v": ' + deep + "}}").encode()),
    DEEP.map(str.encode),
    st.tuples(OPERATION_OBJECTS, st.binary(min_size=1, max_size=8)).map(
        lambda pair: json.dumps(pair[0]).encode()[:-1] + b', "x": "' + pair[1] + b'"}' if pair[0] else pair[1]
    ),
)
CONTENT_TYPES = st.sampled_from(["application/json", "application/json; charset=utf-8",
                                 "Application/JSON", "application/json; charset=latin-1"])


async def test_raw_bodies_random(app: Any, tokens: dict[str, str]) -> None:
    """Random bytes, JSON values, operation objects with members of any type, batches and
    deep nesting, posted with JSON content types."""
    sender = Sender(app, {"olivia": tokens["olivia"], "anonymous": None})
    loop = asyncio.get_running_loop()

    @settings(FUZZ, max_examples=RANDOM_EXAMPLES * 25)
    @given(raw=RAW_BODIES, content_type=CONTENT_TYPES, persona=st.sampled_from(["anonymous", "olivia"]))
    def check(raw: bytes, content_type: str, persona: str) -> None:
        response = asyncio.run_coroutine_threadsafe(
            sender.post(None, persona, raw=raw, content_type=content_type), loop
        ).result()
        _, problems = problems_of(response)
        assert not problems, f"POST {content_type} {raw[:300]!r}: HTTP {response.status_code} {response.text[:300]}"

    await asyncio.to_thread(check)


def _quote(value: Any) -> str:
    if not isinstance(value, (str, bytes)):
        value = json.dumps(value)
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogatepass")
    return urllib.parse.quote_from_bytes(value, safe="")


GET_PARAMETERS = st.one_of(
    st.fixed_dictionaries({}, optional={
        key: st.one_of(good, strings.JSON_VALUES, strings.hostile_text(), st.binary(max_size=30))
        for key, good in GOOD_MEMBERS.items()
    }),
    st.dictionaries(st.one_of(st.text(strings.ANY_CHAR, max_size=10), st.binary(max_size=10)),
                    st.one_of(strings.hostile_text(), st.binary(max_size=30)), max_size=4),
)
GET_CASES = {
    "invalid-utf8-query": "query=%7B%20__typename%20%FF%20%7D",
    "invalid-utf8-variables": "query=%7B__typename%7D&variables=%FF%FE",
    "variables-null": "query=%7B__typename%7D&variables=null",
    "variables-number": "query=%7B__typename%7D&variables=42",
    "variables-list": "query=%7B__typename%7D&variables=%5B1%2C%22x%22%2Cnull%5D",
    # As deep as a URL can be (httpx stops at 64 KiB); the POST cases go deeper.
    "variables-deep": "query=%7B__typename%7D&variables=" + "%5B" * 10_000 + "%5D" * 10_000,
    "extensions-junk": "query=%7B__typename%7D&extensions=%7Bx",
    "nul-query": "query=%7B__typename%00%7D",
    "surrogate-escape-variables": "query=query(%24v%3AString)%7B__typename%7D&variables=%7B%22v%22%3A%22%5Cud800%22%7D",
    "repeated-query": "query=%7B__typename%7D&query=%7Bviewer%7Bid%7D%7D",
    "no-query": "variables=%7B%7D",
}


async def test_get_requests(app: Any, tokens: dict[str, str]) -> None:
    """The known kinds of broken query strings by name, then random parameters (any keys,
    any values, bytes that are not UTF-8)."""
    sender = Sender(app, {"olivia": tokens["olivia"], "anonymous": None})
    failures = []
    for name, query_string in GET_CASES.items():
        response = await sender.get(query_string, "olivia")
        _, problems = problems_of(response)
        if problems:
            failures.append(f"[{name}] GET /graphql?{query_string[:200]}: HTTP {response.status_code} "
                            f"{response.text[:300]} ({'; '.join(problems)})")
    loop = asyncio.get_running_loop()

    @settings(FUZZ, max_examples=RANDOM_EXAMPLES * 10)
    @given(parameters=GET_PARAMETERS, persona=st.sampled_from(["anonymous", "olivia"]))
    def check(parameters: dict[Any, Any], persona: str) -> None:
        query_string = "&".join(f"{_quote(key)}={_quote(value)}" for key, value in parameters.items())
        assume(len(query_string) < 60_000)  # httpx's limit on a URL is 64 KiB
        response = asyncio.run_coroutine_threadsafe(sender.get(query_string, persona), loop).result()
        _, problems = problems_of(response)
        assert not problems, f"GET /graphql?{query_string[:300]}: HTTP {response.status_code} {response.text[:300]}"

    await asyncio.to_thread(check)
    assert not failures, "\n".join(failures)
