"""Permissions in the docs: every ``@requires`` says its permission in the description, and
every ``Permission`` value says what it lets one do and what it gates.

Both are written from the directives when the schema is built (schema/directives.py), so the
tests read the printed SDL — what schema.graphql and GraphiQL show — and compare it with the
directives printed next to it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import graphql
import pytest
from graphql.language import (
    DirectiveNode, EnumTypeDefinitionNode, FieldDefinitionNode, ObjectTypeDefinitionNode,
)

from auth.permissions import DESCRIPTIONS, Permission
from schema import build_schema, print_schema_sdl
from schema.directives import field_sentence, type_sentence, with_sentence
from schema.enums import permission_description
from tests.conftest import GraphQLClient

REQUIREMENT = re.compile(r"Requires `([A-Z_]+)` on ")


def requires_of(directives: tuple[DirectiveNode, ...] | None) -> str | None:
    for directive in directives or ():
        if directive.name.value == "requires":
            (argument,) = directive.arguments
            return argument.value.value  # type: ignore[attr-defined]
    return None


def described(sdl: str) -> Iterator[tuple[str, str | None, str | None]]:
    """``(where, permission of its @requires, description)`` for every object type and field."""
    for definition in graphql.parse(sdl).definitions:
        if not isinstance(definition, ObjectTypeDefinitionNode):
            continue
        name = definition.name.value
        yield name, requires_of(definition.directives), getattr(definition.description, "value", None)
        for field in definition.fields or ():
            assert isinstance(field, FieldDefinitionNode)
            yield (f"{name}.{field.name.value}", requires_of(field.directives),
                   getattr(field.description, "value", None))


@pytest.fixture(scope="module")
def sdl() -> str:
    return print_schema_sdl()


def test_every_requires_is_stated_in_its_description(sdl: str) -> None:
    """Types and fields alike, whatever their type (Subscription's included): the sentence is
    last, after a blank line when there was a description already."""
    checked = 0
    for where, permission, description in described(sdl):
        stated = REQUIREMENT.findall(description or "")
        if permission is None:
            assert stated == [], f"{where}: states a requirement it does not carry"
            continue
        assert stated == [permission], f"{where}: @requires({permission}) but says {stated}"
        last = (description or "").split("\n\n")[-1]
        assert last.startswith(f"Requires `{permission}` on ") and last.endswith("."), where
        checked += 1
    assert checked >= 20


def test_the_sentences_read_as_documented(sdl: str) -> None:
    found = {where: description for where, _permission, description in described(sdl)}
    assert found["Account.creditBalance"] == "Requires `CREDITS_READ` on the account."
    assert found["Account.invoices"] == (
        "Invoices this account pays, newest first.\n\nRequires `INVOICES_READ` on the account."
    )
    assert found["Service.monthlyPrice"] == (
        "A billing field on a technical type.\n\nRequires `INVOICES_READ` on the service's account."
    )
    assert found["Invoice"] == "Requires `INVOICES_READ` on the invoice's account, by every path."
    assert found["CreditLedgerEntry"] == (
        "Requires `CREDITS_READ` on the credit ledger entry's account, by every path."
    )
    assert found["PaymentMethod"] == (
        "A card on file: only what the card processor returns, never a card number.\n\n"
        "Requires `INVOICES_PAY` on the payment method's account, by every path."
    )


def test_building_the_schema_again_adds_nothing(sdl: str) -> None:
    """Every test app builds the schema on the same Strawberry types: no second sentence."""
    build_schema()
    build_schema()
    again = print_schema_sdl()
    assert again == sdl
    for where, permission, description in described(again):
        assert len(REQUIREMENT.findall(description or "")) == (permission is not None), where


def test_with_sentence_appends_once() -> None:
    sentence = "Requires `AUDIT_READ` on the account."
    assert with_sentence(None, sentence) == sentence
    assert with_sentence("", sentence) == sentence
    once = with_sentence("Changes, newest first.", sentence)
    assert once == f"Changes, newest first.\n\n{sentence}"
    assert with_sentence(once, sentence) == once
    assert with_sentence(sentence, sentence) == sentence


def test_sentences_name_the_account_that_is_checked() -> None:
    import strawberry

    @strawberry.type
    class Probe:
        plain: int
        live: int = strawberry.field(default=0)

    plain, live = Probe.__strawberry_definition__.fields  # type: ignore[attr-defined]
    live.is_subscription = True
    assert field_sentence("Account", plain, Permission.CREDITS_READ) == (
        "Requires `CREDITS_READ` on the account.")
    assert field_sentence("LinkMember", plain, Permission.LINKS_MANAGE) == (
        "Requires `LINKS_MANAGE` on the link member's account.")
    assert field_sentence("Query", plain, Permission.AUDIT_READ) == (
        "Requires `AUDIT_READ` on the account it concerns.")
    assert field_sentence("Subscription", live, Permission.TICKETS_READ) == (
        "Requires `TICKETS_READ` on the account of each event.")
    assert type_sentence("AuditEvent", Permission.AUDIT_READ) == (
        "Requires `AUDIT_READ` on the audit event's account, by every path.")


# --- the Permission enum ------------------------------------------------------------------


def permission_values(sdl: str) -> dict[str, str | None]:
    for definition in graphql.parse(sdl).definitions:
        if isinstance(definition, EnumTypeDefinitionNode) and definition.name.value == "Permission":
            return {value.name.value: getattr(value.description, "value", None)
                    for value in definition.values or ()}
    raise AssertionError("no Permission enum")


def test_every_permission_has_a_sentence() -> None:
    assert set(DESCRIPTIONS) == set(Permission)
    for permission, sentence in DESCRIPTIONS.items():
        assert sentence.strip() and sentence.endswith("."), permission


def test_every_permission_value_is_described_with_what_it_gates(sdl: str) -> None:
    """The sentence, then the fields and types whose ``@requires`` names it, as read back from
    the same printed schema: a new gated field shows up here without anyone listing it."""
    gates: dict[str, list[str]] = {permission.value: [] for permission in Permission}
    for where, permission, _description in described(sdl):
        if permission is not None:
            gates[permission].append(f"`{where}`" if "." in where else f"every `{where}`")
    values = permission_values(sdl)
    assert set(values) == {permission.value for permission in Permission}
    for name, description in values.items():
        assert description == permission_description(Permission(name), sorted(gates[name])), name
        assert description.startswith(DESCRIPTIONS[Permission(name)])
    credits = values["CREDITS_READ"] or ""
    assert credits.startswith(
        "See credit balances, the credit ledger and low-credit reminders.\n\nGates: ")
    for gate in ("`Account.creditBalance`", "`Account.creditLedger`",
                 "`Account.lowCreditReminder`", "every `CreditLedgerEntry`"):
        assert gate in credits
    assert values["CREDITS_PURCHASE"].endswith("Gates no field or type: only mutations check it.")


# --- over HTTP: what GraphiQL's Docs explorer reads ---------------------------------------


async def test_introspection_shows_the_permissions(gql: GraphQLClient) -> None:
    result = await gql.execute("""
    {
      account: __type(name: "Account") { fields { name description } }
      invoice: __type(name: "Invoice") { description }
      permission: __type(name: "Permission") { enumValues { name description } }
      codes: __type(name: "UserErrorCode") { enumValues { name description } }
    }
    """)
    data = result["data"]
    fields = {field["name"]: field["description"] for field in data["account"]["fields"]}
    assert "CREDITS_READ" in fields["creditBalance"]
    assert fields["creditBalance"] == "Requires `CREDITS_READ` on the account."
    assert fields["invoices"].endswith("\n\nRequires `INVOICES_READ` on the account.")
    assert fields["name"] is None or "Requires" not in fields["name"]
    assert "INVOICES_READ" in data["invoice"]["description"]
    permissions = {value["name"]: value["description"] for value in data["permission"]["enumValues"]}
    assert set(permissions) == {permission.value for permission in Permission}
    assert all(description and description.strip() for description in permissions.values())
    assert "`Account.creditBalance`" in permissions["CREDITS_READ"]
    codes = data["codes"]["enumValues"]
    assert codes and all(value["description"] for value in codes)
