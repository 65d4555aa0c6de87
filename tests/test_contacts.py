"""addContact, updateContact, deleteContact over HTTP (issue 5 part 3)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from models.accounts import Membership
from models.audit import AuditEvent
from models.billing import Charge
from models.contacts import Contact
from models.database import create_session_factory
from models.identity import Invitation
from models.users import User
from resolvers.user_errors import UserError
from resolvers.validation import clean_tax_id
from tests.conftest import UNTYPABLE, GraphQLClient, refused_at_the_edge
from tests.customers import (
    ACCEPT_INVITATION, ACTIVATE, ADD_CONTACT, add_contact, audit_actions, count_rows,
    emailed_token, new_customer, new_sub_account, permissions_on, pk, unique_email,
)

UPDATE = """
mutation($input: UpdateContactInput!) {
  updateContact(input: $input) {
    contact { id name email phone isSupportContact emailPreferences address { line1 city country } }
    userErrors { field message code }
  }
}
"""
DELETE = """
mutation($input: DeleteContactInput!) {
  deleteContact(input: $input) { deletedContactId userErrors { code } }
}
"""
CONTACTS = """
query($n: String!) { viewer { account(number: $n) { contacts { id email subAccount { permissions } } } } }
"""


async def test_add_contact_with_preferences_and_address(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    payload = await add_contact(
        gql, owner.token, owner.account.id, name=" Ivy  Invoice ", email="Ivy@Example.COM",
        phone="+31 10 555", isSupportContact=True, emailPreferences=["INVOICE", "SUPPORT", "INVOICE"],
        address={"line1": "1 Main St", "city": "Utrecht", "country": "nl"},
    )
    assert payload["userErrors"] == []
    contact = payload["contact"]
    assert contact["name"] == "Ivy Invoice" and contact["email"] == "ivy@example.com"
    assert contact["isSupportContact"] is True
    assert contact["emailPreferences"] == ["INVOICE", "SUPPORT"]
    assert contact["address"] == {"line1": "1 Main St", "city": "Utrecht", "country": "NL"}
    listed = await gql.execute(CONTACTS, {"n": owner.account.number}, token=owner.token)
    assert [c["email"] for c in listed["data"]["viewer"]["account"]["contacts"]] == ["ivy@example.com"]
    assert await audit_actions(engine, owner.account.number) == ["contact.added"]


async def test_invalid_contact_input_is_refused_and_nothing_written(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    account_pk = pk(owner.account.id)
    cases = [
        ({"email": "not-an-email"}, "INVALID_EMAIL", ["email"]),
        ({"email": "a@b"}, "INVALID_EMAIL", ["email"]),
        ({"name": "   "}, "NAME_EMPTY", ["name"]),
        ({"phone": "1" * 41}, "TOO_LONG", ["phone"]),
        ({"address": {"country": "Netherlands"}}, "INVALID_COUNTRY", ["address", "country"]),
        ({"taxId": "DE 1234 5678"}, "INVALID_TAX_ID", ["taxId"]),
        ({"taxId": "VAT#123"}, "INVALID_TAX_ID", ["taxId"]),
    ]
    for fields, code, field in cases:
        values = {"accountId": owner.account.id, "name": "Nora", "email": "nora@example.com", **fields}
        result = await gql.execute(ADD_CONTACT, {"input": values}, token=owner.token)
        payload = result["data"]["addContact"]
        assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [(code, field)], fields
        assert payload["contact"] is None
    assert await count_rows(engine, Contact, Contact.account_id == account_pk) == 0
    assert await count_rows(engine, AuditEvent, AuditEvent.account_id == account_pk) == 0
    # One email once per account.
    await add_contact(gql, owner.token, owner.account.id, email="nora@example.com")
    again = await add_contact(gql, owner.token, owner.account.id, email="NORA@example.com")
    assert [e["code"] for e in again["userErrors"]] == ["EMAIL_TAKEN"]


async def test_contacts_need_contacts_manage(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    reader = await new_sub_account(gql, owner.token, owner.account.id, ["CONTACTS_READ"])
    stranger = await new_customer(gql)
    values = {"accountId": owner.account.id, "name": "Mallory", "email": "m@example.com"}
    denied = await gql.execute(ADD_CONTACT, {"input": values}, token=reader.token)
    assert denied["errors"][0]["extensions"] == {"code": "FORBIDDEN", "permission": "CONTACTS_MANAGE"}
    hidden = await gql.execute(ADD_CONTACT, {"input": values}, token=stranger.token)
    assert hidden["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    contact_id = (await gql.execute(CONTACTS, {"n": owner.account.number}, token=owner.token)
                  )["data"]["viewer"]["account"]["contacts"][0]["id"]  # the reader's own contact
    for token, code in ((reader.token, "FORBIDDEN"), (stranger.token, "NOT_FOUND")):
        update = await gql.execute(UPDATE, {"input": {"contactId": contact_id, "name": "X"}}, token=token)
        delete = await gql.execute(DELETE, {"input": {"contactId": contact_id}}, token=token)
        assert update["errors"][0]["extensions"]["code"] == code
        assert delete["errors"][0]["extensions"]["code"] == code
    assert await count_rows(engine, Contact, Contact.account_id == pk(owner.account.id)) == 1


async def test_update_contact_changes_only_what_is_given(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    contact = (await add_contact(gql, owner.token, owner.account.id, name="Pat", phone="+1 555",
                                 emailPreferences=["GENERAL"]))["contact"]
    result = await gql.execute(UPDATE, {"input": {
        "contactId": contact["id"], "isSupportContact": True, "emailPreferences": ["SUPPORT", "PRODUCT"],
    }}, token=owner.token)
    updated = result["data"]["updateContact"]["contact"]
    assert updated["name"] == "Pat" and updated["phone"] == "+1 555" and updated["isSupportContact"]
    assert updated["emailPreferences"] == ["PRODUCT", "SUPPORT"]
    cleared = await gql.execute(UPDATE, {"input": {"contactId": contact["id"], "phone": None}},
                                token=owner.token)
    assert cleared["data"]["updateContact"]["contact"]["phone"] is None
    bad = await gql.execute(UPDATE, {"input": {"contactId": contact["id"], "email": "nope"}},
                            token=owner.token)
    assert [e["code"] for e in bad["data"]["updateContact"]["userErrors"]] == ["INVALID_EMAIL"]
    assert (await gql.execute(CONTACTS, {"n": owner.account.number}, token=owner.token)
            )["data"]["viewer"]["account"]["contacts"][0]["email"] == contact["email"]
    assert (await audit_actions(engine, owner.account.number)).count("contact.updated") == 2


async def test_deleting_a_contact_revokes_its_sub_account_in_the_same_transaction(
    gql: GraphQLClient, engine: AsyncEngine
) -> None:
    owner = await new_customer(gql)
    sub = await new_sub_account(gql, owner.token, owner.account.id, ["SERVICES_READ", "TICKETS_READ"])
    assert await permissions_on(gql, sub.token, owner.account.number) == {"SERVICES_READ", "TICKETS_READ"}
    result = await gql.execute(DELETE, {"input": {"contactId": sub.contact_id}}, token=owner.token)
    assert result["data"]["deleteContact"] == {"deletedContactId": sub.contact_id, "userErrors": []}
    # At once: the sub-account's very next request sees nothing of the account.
    assert await permissions_on(gql, sub.token, owner.account.number) is None
    assert await count_rows(engine, Membership, Membership.account_id == pk(owner.account.id)) == 0
    assert await count_rows(engine, Contact, Contact.id == pk(sub.contact_id)) == 0
    assert (await audit_actions(engine, owner.account.number))[-1] == "contact.deleted"
    gone = await gql.execute(DELETE, {"input": {"contactId": sub.contact_id}}, token=owner.token)
    assert gone["errors"][0]["extensions"]["code"] == "NOT_FOUND"


INVITATIONS = """
query($n: String!) { viewer { account(number: $n) { invitations { id status contact { id } } } } }
"""


async def _invite(gql: GraphQLClient, token: str, contact_id: str) -> tuple[str, str]:
    """Invites the contact; the invitation's id and the token its email carries."""
    result = await gql.execute(ACTIVATE, {"input": {"contactId": contact_id, "permissions": ["SERVICES_READ"]}},
                               token=token)
    payload = result["data"]["activateSubAccount"]
    assert payload["userErrors"] == [], payload
    link = await emailed_token(gql.engine, payload["invitation"]["email"], "accept-invitation")
    assert link
    return payload["invitation"]["id"], link


async def _accept(gql: GraphQLClient, link: str) -> list[str]:
    result = await gql.execute(ACCEPT_INVITATION, {"input": {
        "token": link, "name": "Ines Invitee", "password": "a fine long password",
    }})
    return [error["code"] for error in result["data"]["acceptInvitation"]["userErrors"]]


async def test_deleting_a_contact_revokes_its_pending_invitation(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    contact = (await add_contact(gql, owner.token, owner.account.id))["contact"]
    invitation_id, link = await _invite(gql, owner.token, contact["id"])
    result = await gql.execute(DELETE, {"input": {"contactId": contact["id"]}}, token=owner.token)
    assert result["data"]["deleteContact"]["userErrors"] == []
    listed = await gql.execute(INVITATIONS, {"n": owner.account.number}, token=owner.token)
    # Kept for the record, revoked, no longer pointing at the deleted contact.
    assert listed["data"]["viewer"]["account"]["invitations"] == [
        {"id": invitation_id, "status": "REVOKED", "contact": None}
    ]
    assert (await audit_actions(engine, owner.account.number))[-2:] == ["invitation.revoked", "contact.deleted"]
    assert await _accept(gql, link) == ["INVALID_TOKEN"]
    assert await count_rows(engine, User, User.email == contact["email"]) == 0
    assert await count_rows(engine, Membership, Membership.account_id == pk(owner.account.id)) == 0


async def test_changing_a_contacts_email_revokes_its_pending_invitation(
    gql: GraphQLClient, engine: AsyncEngine
) -> None:
    owner = await new_customer(gql)
    contact = (await add_contact(gql, owner.token, owner.account.id))["contact"]
    _, old_link = await _invite(gql, owner.token, contact["id"])
    # Another field: the invitation stands.
    await gql.execute(UPDATE, {"input": {"contactId": contact["id"], "phone": "+31 20 555"}}, token=owner.token)
    assert await count_rows(engine, Invitation, Invitation.contact_id == pk(contact["id"]),
                            Invitation.revoked_at.is_(None)) == 1
    # The address: the link sent to the old one stops working.
    moved = await gql.execute(UPDATE, {"input": {"contactId": contact["id"], "email": "moved-" + contact["email"]}},
                              token=owner.token)
    assert moved["data"]["updateContact"]["userErrors"] == []
    assert await _accept(gql, old_link) == ["INVALID_TOKEN"]
    assert await count_rows(engine, User, User.email == contact["email"]) == 0
    _, new_link = await _invite(gql, owner.token, contact["id"])
    assert await _accept(gql, new_link) == []
    assert await count_rows(engine, User, User.email == "moved-" + contact["email"]) == 1


@pytest.mark.parametrize("bad", [*UNTYPABLE, "bell\a", "esc\x1b[31m"])
async def test_contact_text_no_one_can_type_is_a_clear_error(gql: GraphQLClient, bad: str) -> None:
    owner = await new_customer(gql)
    for phone, line1 in ((bad, "Main St 1"), ("+32 9 555", bad)):
        response = await gql.post(ADD_CONTACT, {"input": {
            "accountId": owner.account.id, "name": "Casey", "email": unique_email("c"), "phone": phone,
            "address": {"line1": line1, "city": "Ghent"}}}, token=owner.token)
        field = ("phone",) if phone == bad else ("address", "line1")
        if bad in UNTYPABLE:  # refused before anything runs, naming the field
            refused_at_the_edge(response, "variables.input." + ".".join(field))
            continue
        assert response.status_code == 200, response.text
        payload = response.json()["data"]["addContact"]
        assert [(error["code"], tuple(error["field"])) for error in payload["userErrors"]] == [
            ("TEXT_INVALID", field)]


# --- the tax ID (issue 13 part 4) ------------------------------------------------------------

TAX_ID_UPDATE = """
mutation($input: UpdateContactInput!) {
  updateContact(input: $input) { contact { id name taxId address { taxId } } userErrors { field code } }
}
"""


@pytest.mark.parametrize(("typed", "stored"), [
    ("nl 8530.43.211.b01", "NL853043211B01"),
    ("DE-123-456-789", "DE123456789"),
    ("de\u00a0123456789", "DE123456789"),  # a no-break space pasted from a PDF
    ("de\t123456789", "DE123456789"),  # white space of any kind
    ("ATU12345678", "ATU12345678"),
    ("FRXX123456789", "FRXX123456789"),
    ("BE 0123.456.789", "BE0123456789"),
    ("EL123456789", "EL123456789"),
    ("IE1234567WA", "IE1234567WA"),
    ("ESX1234567L", "ESX1234567L"),
    ("SE123456789001", "SE123456789001"),
    # Not EU VAT numbers: any 2–32 letters and digits.
    ("CHE-123.456.789 MWST", "CHE123456789MWST"),
    ("GB 123 4567 89", "GB123456789"),
    ("12-3456789", "123456789"),
    # An Italian personal tax code whose surname letters spell FR (Ferrari) is no French VAT number.
    ("frrmra80a01h501u", "FRRMRA80A01H501U"),
    ("", None), ("  ", None), (None, None),
])
def test_tax_ids_are_stored_in_one_form(typed: str | None, stored: str | None) -> None:
    assert clean_tax_id(typed, field=["taxId"]) == stored


@pytest.mark.parametrize(("typed", "message"), [
    ("DE12345678", "DE VAT numbers are DE followed by 9 digits."),
    ("NL853043211", "NL VAT numbers are NL followed by 9 digits, B and 2 digits."),
    ("FRIO123456789",
     "FR VAT numbers are FR followed by 2 letters or digits (not I or O) and 9 digits."),
    ("ATX12345678", "AT VAT numbers are AT followed by U and 8 digits."),
    ("SE123456789012", "SE VAT numbers are SE followed by 12 digits ending in 01."),
    ("X", None), ("A" * 33, None), ("DE_123456789", None), ("Ü12345678", None), ("ﬁ12345678", None),
    ("nul\x00", None),
])
def test_malformed_tax_ids_say_what_is_expected(typed: str, message: str | None) -> None:
    error = clean_tax_id(typed, field=["taxId"])
    assert isinstance(error, UserError) and (error.code, error.field) == ("INVALID_TAX_ID", ["taxId"])
    if message is not None:
        assert error.message == message


async def test_set_change_and_clear_a_contacts_tax_id(gql: GraphQLClient, engine: AsyncEngine) -> None:
    owner = await new_customer(gql)
    added = await add_contact(gql, owner.token, owner.account.id, taxId="nl 8530.43.211.b01")
    assert added["userErrors"] == []
    contact_id = added["contact"]["id"]
    assert await _tax_id(engine, contact_id) == "NL853043211B01"

    async def update(**fields: Any) -> dict[str, Any]:
        result = await gql.execute(TAX_ID_UPDATE, {"input": {"contactId": contact_id, **fields}},
                                   token=owner.token)
        return result["data"]["updateContact"]

    changed = await update(taxId="de-123.456.789")
    assert changed["contact"]["taxId"] == changed["contact"]["address"]["taxId"] == "DE123456789"
    assert (await update(name="Renamed"))["contact"]["taxId"] == "DE123456789"  # left out: kept
    refused = await update(taxId="DE12345678")
    assert refused == {"contact": None, "userErrors": [{"field": ["taxId"], "code": "INVALID_TAX_ID"}]}
    assert await _tax_id(engine, contact_id) == "DE123456789"
    assert (await update(taxId=""))["contact"]["taxId"] is None
    assert (await update(taxId="CHE-123.456.789"))["contact"]["taxId"] == "CHE123456789"
    assert (await update(taxId=None))["contact"]["taxId"] is None
    assert await _tax_id(engine, contact_id) is None
    # Every change is audited (the tax ID is in what the log keeps of a contact).
    assert (await audit_actions(engine, owner.account.number)).count("contact.updated") == 5


async def _tax_id(engine: AsyncEngine, contact_id: str) -> str | None:
    async with create_session_factory(engine)() as session:
        contact = await session.get(Contact, pk(contact_id))
        assert contact is not None
        return contact.tax_id


SET_BILLING_CONTACT = """
mutation($input: SetBillingContactInput!) { setBillingContact(input: $input) { userErrors { code } } }
"""
PURCHASE = """
mutation($input: PurchaseCreditsInput!) { purchaseCredits(input: $input) { userErrors { code } } }
"""
RUN_INVOICING = """
mutation($input: RunInvoicingInput!) {
  runInvoicing(input: $input) {
    invoices { id account { id } billTo { name taxId } } userErrors { code }
  }
}
"""
INVOICE_BILL_TO = """
query($id: ID!) { node(id: $id) { ... on Invoice { billTo { name taxId } } } }
"""
BILLING_CONTACT = """
query($n: String!) { viewer { account(number: $n) { billingContact { taxId } contacts { taxId } } } }
"""
# A month no other test invoices: the run below invoices only this test's charge.
SNAPSHOT_PERIOD = "2022-11"


async def test_the_billing_contacts_tax_id_is_snapshotted_onto_invoices(
    gql: GraphQLClient, engine: AsyncEngine, tokens: dict[str, str]
) -> None:
    owner = await new_customer(gql)
    contact = (await add_contact(gql, owner.token, owner.account.id, name="Accounts Payable",
                                 taxId="NL 8530 43 211 B01"))["contact"]
    result = await gql.execute(SET_BILLING_CONTACT, {"input": {
        "accountId": owner.account.id, "contactId": contact["id"]}}, token=owner.token)
    assert result["data"]["setBillingContact"]["userErrors"] == []
    # Who may read the billing contact reads its tax ID: INVOICES_READ alone is enough there.
    clerk = await new_sub_account(gql, owner.token, owner.account.id, ["INVOICES_READ"])
    seen = await gql.execute(BILLING_CONTACT, {"n": owner.account.number}, token=clerk.token)
    assert seen["data"]["viewer"]["account"]["billingContact"] == {"taxId": "NL853043211B01"}
    assert seen["data"]["viewer"]["account"]["contacts"] is None  # no CONTACTS_READ
    assert [e["extensions"]["permission"] for e in seen["errors"]] == ["CONTACTS_READ"]

    bought = await gql.execute(PURCHASE, {"input": {"accountId": owner.account.id, "credits": 10}},
                               token=owner.token)
    assert bought["data"]["purchaseCredits"]["userErrors"] == [], bought
    async with create_session_factory(engine)() as session:  # charged this month: move it back
        await session.execute(update(Charge).where(Charge.account_id == pk(owner.account.id))
                              .values(period=SNAPSHOT_PERIOD))
        await session.commit()
    run = await gql.execute(RUN_INVOICING, {"input": {"period": SNAPSHOT_PERIOD}},
                            token=tokens["finance"])
    invoices = [invoice for invoice in run["data"]["runInvoicing"]["invoices"]
                if invoice["account"]["id"] == owner.account.id]
    assert [invoice["billTo"] for invoice in invoices] == [
        {"name": "Accounts Payable", "taxId": "NL853043211B01"}]

    changed = await gql.execute(TAX_ID_UPDATE, {"input": {
        "contactId": contact["id"], "taxId": "DE123456789"}}, token=owner.token)
    assert changed["data"]["updateContact"]["contact"]["taxId"] == "DE123456789"
    issued = await gql.execute(INVOICE_BILL_TO, {"id": invoices[0]["id"]}, token=owner.token)
    assert issued["data"]["node"]["billTo"] == {"name": "Accounts Payable", "taxId": "NL853043211B01"}
