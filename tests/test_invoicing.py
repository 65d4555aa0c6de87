"""The invoice run (GraphQL and CLI), the billing contact, and invoice downloads.

Runs here invoice months long before the demo's story (2026), each test its own month, and
assertions look only at the test's own accounts: the demo's invoices stay as other tests read
them.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.download_tokens import issue_download_token
from models import (
    Account, Charge, ChargeKind, Contact, Invoice, InvoiceLine, Membership, Notification, Service, ServiceStatus, User,
)
from models.database import create_session_factory
from resolvers.invoicing import parse_period, tax_on
from resolvers.tunables import Tunables
from schema.relay import decode_global_id, encode_global_id
from tests.billing_world import SeededCustomer, grant, link_billing, seeded_customer, new_user, rows, scalar
from tests.conftest import TEST_SECRET, GraphQLClient
from tests.test_credits import purchase
from tests.test_invoice_pdf import pdf_text

RUN = """
mutation($input: RunInvoicingInput!) {
  runInvoicing(input: $input) {
    period
    invoices {
      id number status currency periodStart periodEnd issuedAt dueAt
      account { id number }
      linkGroup { id }
      subtotal { amount currency } tax { amount } total { amount }
      billTo { name line1 city postalCode country }
      lines { description quantity unitPrice { amount } amount { amount } account { number } }
    }
    userErrors { field code message }
  }
}"""

SET_CONTACT = """
mutation($input: SetBillingContactInput!) {
  setBillingContact(input: $input) {
    account { billingContact { id name } }
    userErrors { field code message }
  }
}"""

INVOICES = """
query($number: String!, $filter: InvoiceFilter) {
  viewer { account(number: $number) {
    invoices(first: 10, filter: $filter) { totalCount edges { node { id number downloadUrl } } }
  } }
}"""

ROOT = Path(__file__).resolve().parent.parent
TAX = Tunables().tax_rate_basis_points


def midnight(day: date) -> datetime:
    """00:00 UTC on ``day``."""
    return datetime.combine(day, datetime.min.time(), timezone.utc)


async def add_service(engine: AsyncEngine, account_id: int, name: str, price: int, created: date,
                      status: ServiceStatus = ServiceStatus.ACTIVE) -> None:
    async with create_session_factory(engine)() as session:
        session.add(Service(account_id=account_id, name=name, kind="hosting", status=status,
                            monthly_price=price, currency="EUR", created_at=midnight(created)))
        await session.commit()


async def add_contact(engine: AsyncEngine, account_id: int, name: str, email: str, *,
                      billing: bool = False, preferences: list[str] | None = None) -> int:
    async with create_session_factory(engine)() as session:
        contact = Contact(account_id=account_id, name=name, email=email,
                          address_line1="1 Ledger Lane", city="Utrecht", postal_code="3511 AA",
                          country="NL", is_billing_contact=billing,
                          email_preferences=preferences or [])
        session.add(contact)
        await session.commit()
        return contact.id


async def backdate_charges(engine: AsyncEngine, account_ids: list[int], period: str) -> None:
    """Purchases are charged to the current month; move this test's to the month it invoices."""
    async with create_session_factory(engine)() as session:
        await session.execute(update(Charge).where(Charge.account_id.in_(account_ids),
                                                   Charge.invoice_id.is_(None)).values(period=period))
        await session.commit()


async def run(gql: GraphQLClient, token: str, period: str) -> dict[str, Any]:
    return await gql.execute(RUN, {"input": {"period": period}}, token=token)


def mine(payload: dict[str, Any], customer: SeededCustomer) -> list[dict[str, Any]]:
    ids = {customer.gid(index) for index in range(len(customer.account_ids))}
    return [invoice for invoice in payload["invoices"] if invoice["account"]["id"] in ids]


async def billing_setup(gql: GraphQLClient, engine: AsyncEngine, period: str) -> SeededCustomer:
    """Head and member in a BILLING group, and a solo account, with fees and purchases."""
    customer = await seeded_customer(engine, accounts=3)
    head, member, solo = customer.account_ids
    start = date.fromisoformat(f"{period}-01")
    # Linked before the month began: its head pays the month (resolvers.invoicing, item 1).
    await link_billing(engine, head, [member], linked_at=midnight(start - timedelta(days=40)))
    await add_service(engine, head, "Head hosting", 1000, start)
    await add_service(engine, member, "Member email", 333, start - timedelta(days=40))
    await add_service(engine, solo, "Solo VPS", 250, start)
    await add_service(engine, solo, "Cancelled", 999, start, ServiceStatus.CANCELLED)
    await add_service(engine, solo, "Started mid-month", 999, start + timedelta(days=3))
    await purchase(gql, customer.token, customer.gid(1), 101)
    await purchase(gql, customer.token, customer.gid(2), 10)
    await backdate_charges(engine, customer.account_ids, period)
    await add_contact(engine, head, "Accounts Payable", "ap@billing.example", billing=True)
    await add_contact(engine, head, "Controller", "controller@billing.example", preferences=["INVOICE"])
    await add_contact(engine, head, "Ops", "ops@billing.example", preferences=["SUPPORT"])
    return customer


# --- the run ------------------------------------------------------------------------------


async def test_one_invoice_per_billing_group_and_per_unlinked_account(
    gql: GraphQLClient, engine: AsyncEngine, tokens: dict[str, str]
) -> None:
    period = "2024-03"
    customer = await billing_setup(gql, engine, period)
    result = await run(gql, tokens["finance"], period)
    assert "errors" not in result, result
    payload = result["data"]["runInvoicing"]
    assert payload["period"] == period and payload["userErrors"] == []
    invoices = {invoice["account"]["id"]: invoice for invoice in mine(payload, customer)}
    assert set(invoices) == {customer.gid(0), customer.gid(2)}
    head, solo = invoices[customer.gid(0)], invoices[customer.gid(2)]

    head_numbers = [line["account"]["number"] for line in head["lines"]]
    lines = sorted((line["description"], line["quantity"], line["unitPrice"]["amount"],
                    line["amount"]["amount"]) for line in head["lines"])
    assert lines == sorted([("Head hosting (2024-03)", 1, 1000, 1000),
                            ("Member email (2024-03)", 1, 333, 333),
                            ("101 prepaid credits", 101, 5, 505)])
    assert len(set(head_numbers)) == 2 and head["linkGroup"] is not None
    assert head["subtotal"] == {"amount": 1838, "currency": "EUR"}
    assert head["tax"]["amount"] == tax_on(1838, TAX) == 386  # 385.98 rounds up
    assert head["total"]["amount"] == 1838 + 386
    assert head["billTo"] == {"name": "Accounts Payable", "line1": "1 Ledger Lane", "city": "Utrecht",
                              "postalCode": "3511 AA", "country": "NL"}
    assert (head["periodStart"], head["periodEnd"], head["status"]) == ("2024-03-01", "2024-03-31", "UNPAID")
    issued = datetime.fromisoformat(head["issuedAt"])
    assert datetime.fromisoformat(head["dueAt"]) - issued == timedelta(days=Tunables().invoice_due_days)

    assert sorted(line["description"] for line in solo["lines"]) == ["10 prepaid credits", "Solo VPS (2024-03)"]
    assert solo["linkGroup"] is None and solo["subtotal"]["amount"] == 300
    assert solo["billTo"]["name"].startswith("Billing ") and solo["billTo"]["line1"] is None

    numbers = sorted(invoice["number"] for invoice in payload["invoices"])
    assert numbers == [f"INV-2024-03-{n:06d}" for n in range(1, len(numbers) + 1)]

    emails = await rows(engine, select(Notification).where(
        Notification.account_id.in_(customer.account_ids), Notification.category == "INVOICE"))
    by_related: dict[int | None, set[str]] = {}
    for email in emails:
        by_related.setdefault(email.related_id, set()).add(email.recipient)
    head_pk, solo_pk = (decode_global_id(invoice["id"])[1] for invoice in (head, solo))
    assert by_related == {head_pk: {"ap@billing.example", "controller@billing.example"},
                          solo_pk: {customer.email}}

    again = await run(gql, tokens["finance"], period)
    assert mine(again["data"]["runInvoicing"], customer) == []
    charges = await rows(engine, select(Charge).where(Charge.account_id.in_(customer.account_ids)))
    assert len(charges) == 5 and all(charge.invoice_id is not None for charge in charges)
    lines_count = await scalar(engine, select(func.count()).select_from(InvoiceLine)
                               .where(InvoiceLine.account_id.in_(customer.account_ids)))
    assert lines_count == 5


def test_tax_rounds_half_up_to_whole_minor_units() -> None:
    assert tax_on(50, 2100) == 11     # 10.5
    assert tax_on(49, 2100) == 10     # 10.29
    assert tax_on(150, 2100) == 32    # 31.5
    assert tax_on(0, 2100) == 0
    assert tax_on(1, 5000) == 1       # 0.5
    assert tax_on(12345, 0) == 0


async def test_numbers_continue_after_the_highest_of_the_month(
    gql: GraphQLClient, engine: AsyncEngine, tokens: dict[str, str]
) -> None:
    period = "2024-04"
    customer = await seeded_customer(engine, accounts=2)
    await add_service(engine, customer.account_ids[0], "A", 100, date(2024, 4, 1))
    await add_service(engine, customer.account_ids[1], "B", 100, date(2024, 4, 1))
    async with create_session_factory(engine)() as session:
        now = datetime.now(timezone.utc)
        payer = await session.get(Account, customer.account_ids[0])
        assert payer is not None
        session.add(Invoice(number="INV-2024-04-000041", payer_account_id=payer.id,
                            period_start=date(2024, 4, 1), period_end=date(2024, 4, 30),
                            issued_at=now, due_at=now, currency="EUR", subtotal=0, tax=0, total=0,
                            bill_to_name="Earlier", bill_to_email="earlier@example.com",
                            payer_number=payer.number, payer_name=payer.name))
        await session.commit()
    payload = (await run(gql, tokens["finance"], period))["data"]["runInvoicing"]
    numbers = sorted(invoice["number"] for invoice in payload["invoices"])
    # Other tests' older services are billed for this month too: the run numbers them all.
    assert numbers == [f"INV-2024-04-{n:06d}" for n in range(42, 42 + len(numbers))]
    assert len(mine(payload, customer)) == 2


@pytest.mark.parametrize(("period", "code"), [
    ("2026-13", "INVALID_PERIOD"), ("2026-00", "INVALID_PERIOD"), ("2026-1", "INVALID_PERIOD"),
    ("October", "INVALID_PERIOD"), ("1999-12", "INVALID_PERIOD"),
    ((date.today() + timedelta(days=40)).strftime("%Y-%m"), "PERIOD_NOT_ENDED"),
    (date.today().strftime("%Y-%m"), "PERIOD_NOT_ENDED"),
])
async def test_bad_periods_are_user_errors_and_write_nothing(
    gql: GraphQLClient, engine: AsyncEngine, tokens: dict[str, str], period: str, code: str
) -> None:
    before = (await scalar(engine, select(func.count()).select_from(Invoice)),
              await scalar(engine, select(func.count()).select_from(Charge)))
    payload = (await run(gql, tokens["finance"], period))["data"]["runInvoicing"]
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(["period"], code)]
    assert payload["invoices"] == []
    after = (await scalar(engine, select(func.count()).select_from(Invoice)),
             await scalar(engine, select(func.count()).select_from(Charge)))
    assert after == before


async def test_a_month_too_large_for_one_invoice_is_refused_whole(
    gql: GraphQLClient, engine: AsyncEngine, tokens: dict[str, str]
) -> None:
    customer = await seeded_customer(engine)
    await add_service(engine, customer.account_ids[0], "Huge", 10, date(2023, 1, 1))
    async with create_session_factory(engine)() as session:
        for _ in range(2):
            session.add(Charge(account_id=customer.account_ids[0], payer_account_id=customer.account_ids[0],
                               kind=ChargeKind.CREDIT_PURCHASE, period="2023-02", description="Huge",
                               quantity=1, unit_price=1_500_000_000, amount=1_500_000_000, currency="EUR"))
        await session.commit()
    payload = (await run(gql, tokens["finance"], "2023-02"))["data"]["runInvoicing"]
    assert [e["code"] for e in payload["userErrors"]] == ["INVOICE_TOO_LARGE"]
    charges = await rows(engine, select(Charge).where(Charge.account_id == customer.account_ids[0]))
    assert [c.invoice_id for c in charges] == [None, None]  # not even the service fee was kept
    async with create_session_factory(engine)() as session:  # leave the month clean for others
        await session.execute(Charge.__table__.delete().where(Charge.account_id == customer.account_ids[0]))
        await session.execute(update(Service).where(Service.account_id == customer.account_ids[0])
                              .values(status=ServiceStatus.CANCELLED))
        await session.commit()


def test_a_period_is_a_month_that_has_ended() -> None:
    assert parse_period("2026-10", today=date(2026, 11, 1)).name == "2026-10"  # type: ignore[union-attr]
    assert parse_period("2026-10", today=date(2026, 10, 31)).code == "PERIOD_NOT_ENDED"  # type: ignore[union-attr]


async def test_only_billing_and_admin_staff_run_invoicing(
    gql: GraphQLClient, engine: AsyncEngine, tokens: dict[str, str]
) -> None:
    customer = await seeded_customer(engine)
    for token in (tokens["agent"], tokens["olivia"], customer.token):
        denied = await run(gql, token, "2024-05")
        assert denied["data"] is None and denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    anonymous = await run(gql, "", "2024-05")
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert await scalar(engine, select(func.count()).select_from(Invoice)
                        .where(Invoice.number.like("INV-2024-05-%"))) == 0


async def test_the_cli_invoice_run(gql: GraphQLClient, engine: AsyncEngine, database_url: str) -> None:
    period = "2023-07"
    customer = await seeded_customer(engine)
    await add_service(engine, customer.account_ids[0], "CLI hosting", 700, date(2023, 7, 1))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("LINKGATE_")}
    environment.update(LINKGATE_DATABASE_URL=database_url, LINKGATE_SECRET_KEY=TEST_SECRET)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "linkgate", "invoice-run", *args], cwd=ROOT,
                              env=environment, capture_output=True, text=True, timeout=120)

    first = cli("--period", period)
    assert first.returncode == 0, first.stderr
    assert "INV-2023-07-000001" in first.stdout
    (invoice,) = await rows(engine, select(Invoice).where(Invoice.payer_account_id == customer.account_ids[0]))
    assert invoice.subtotal == 700 and invoice.number.startswith("INV-2023-07-")
    second = cli("--period", period)
    assert second.returncode == 0 and "0 invoice(s) issued" in second.stdout
    bad = cli("--period", "2023-13")
    assert bad.returncode == 2 and "YYYY-MM" in bad.stderr


# --- the billing contact ------------------------------------------------------------------


async def test_set_billing_contact(gql: GraphQLClient, engine: AsyncEngine) -> None:
    customer = await seeded_customer(engine, accounts=2)
    first = await add_contact(engine, customer.account_ids[0], "First", "first@example.com", billing=True)
    second = await add_contact(engine, customer.account_ids[0], "Second", "second@example.com")
    elsewhere = await add_contact(engine, customer.account_ids[1], "Other", "other@example.com")
    stranger = await seeded_customer(engine)
    foreign = await add_contact(engine, stranger.account_ids[0], "Foreign", "foreign@example.com")

    async def set_contact(contact: int | None) -> dict[str, Any]:
        return (await gql.execute(SET_CONTACT, {"input": {
            "accountId": customer.gid(),
            "contactId": encode_global_id("Contact", contact) if contact else None,
        }}, token=customer.token))["data"]["setBillingContact"]

    moved = await set_contact(second)
    assert moved["userErrors"] == [] and moved["account"]["billingContact"]["name"] == "Second"
    for wrong in (elsewhere, foreign, 10**12):
        refused = await set_contact(wrong)
        assert [(e["field"], e["code"]) for e in refused["userErrors"]] == [(["contactId"], "CONTACT_NOT_ON_ACCOUNT")]
    flags = {c.id: c.is_billing_contact for c in await rows(engine, select(Contact).where(
        Contact.id.in_([first, second, elsewhere, foreign])))}
    assert flags == {first: False, second: True, elsewhere: False, foreign: False}
    cleared = await set_contact(None)
    assert cleared["account"]["billingContact"] is None


async def test_set_billing_contact_needs_billing_manage(gql: GraphQLClient, engine: AsyncEngine) -> None:
    customer = await seeded_customer(engine)
    contact = await add_contact(engine, customer.account_ids[0], "C", "c@example.com")
    reader_id, _, reader = await new_user(engine)
    await grant(engine, reader_id, customer.account_ids[0], ["INVOICES_READ"])
    denied = await gql.execute(SET_CONTACT, {"input": {"accountId": customer.gid(),
                                                       "contactId": encode_global_id("Contact", contact)}},
                               token=reader)
    assert denied["errors"][0]["extensions"] == {"code": "FORBIDDEN", "permission": "BILLING_MANAGE"}
    assert await scalar(engine, select(Contact.is_billing_contact).where(Contact.id == contact)) is False


# --- downloads ----------------------------------------------------------------------------


async def invoiced_customer(
    gql: GraphQLClient, engine: AsyncEngine, token: str, period: str
) -> tuple[SeededCustomer, dict[str, str]]:
    """Two accounts, one invoice each: ``{account global id: invoice global id}``."""
    customer = await seeded_customer(engine, accounts=2)
    start = date.fromisoformat(f"{period}-01")
    for index, account_id in enumerate(customer.account_ids):
        await add_service(engine, account_id, f"Download service {index}", 1234 + index, start)
    await add_contact(engine, customer.account_ids[0], "Zoë Bill-To", "zoe@example.com", billing=True)
    payload = (await run(gql, token, period))["data"]["runInvoicing"]
    return customer, {invoice["account"]["id"]: invoice["id"] for invoice in mine(payload, customer)}


async def get(gql: GraphQLClient, url: str) -> Any:
    return await gql.http.get(url)


async def test_download_url_returns_the_pdf(gql: GraphQLClient, engine: AsyncEngine, tokens: dict[str, str]) -> None:
    customer, _ = await invoiced_customer(gql, engine, tokens["finance"], "2024-06")
    number = (await scalar(engine, select(Invoice.number).where(
        Invoice.payer_account_id == customer.account_ids[0])))
    listed = await gql.execute(INVOICES, {"number": await _number(engine, customer.account_ids[0]),
                                          "filter": {"number": number[-6:]}}, token=customer.token)
    (edge,) = listed["data"]["viewer"]["account"]["invoices"]["edges"]
    assert edge["node"]["number"] == number
    url = edge["node"]["downloadUrl"]
    assert url.startswith("/invoices/download?token=")
    response = await get(gql, url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert number in response.headers["content-disposition"]
    printed = pdf_text(response.content)
    for text in (number, "Download service 0 (2024-06)", "12.34 EUR", "Subtotal", "Total",
                 "14.93 EUR", "Zoë Bill-To"):
        assert text in printed, text


async def _number(engine: AsyncEngine, account_id: int) -> str:
    return str(await scalar(engine, select(Account.number).where(Account.id == account_id)))


async def test_several_invoices_come_back_as_one_zip(gql: GraphQLClient, engine: AsyncEngine, tokens: dict[str, str]) -> None:
    customer, by_account = await invoiced_customer(gql, engine, tokens["finance"], "2024-07")
    ids = list(by_account.values())
    assert len(ids) == 2
    result = await gql.execute("query($ids: [ID!]!) { invoiceDownloadUrl(ids: $ids) }", {"ids": ids},
                               token=customer.token)
    response = await get(gql, result["data"]["invoiceDownloadUrl"])
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = sorted(archive.namelist())
        assert names == sorted(f"{n}.pdf" for n in (await rows(engine, select(Invoice.number).where(
            Invoice.payer_account_id.in_(customer.account_ids)))))
        assert all(archive.read(name).startswith(b"%PDF-") for name in names)


async def test_download_links_obey_invoices_read(gql: GraphQLClient, engine: AsyncEngine, tokens: dict[str, str]) -> None:
    customer, by_account = await invoiced_customer(gql, engine, tokens["finance"], "2024-08")
    ids = list(by_account.values())
    clerk_id, _, clerk = await new_user(engine)
    await grant(engine, clerk_id, customer.account_ids[0], ["INVOICES_READ"])
    await grant(engine, clerk_id, customer.account_ids[1], ["SERVICES_READ"])
    query = "query($ids: [ID!]!) { invoiceDownloadUrl(ids: $ids) }"
    head_invoice, other_invoice = by_account[customer.gid(0)], by_account[customer.gid(1)]
    both = await gql.execute(query, {"ids": ids}, token=clerk)
    assert both["errors"][0]["extensions"] == {"code": "FORBIDDEN", "permission": "INVOICES_READ"}
    stranger = await gql.execute(query, {"ids": [head_invoice]}, token=tokens["eve"])
    assert stranger["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    support = await gql.execute(query, {"ids": [other_invoice]}, token=tokens["agent"])
    assert support["errors"][0]["extensions"] == {"code": "FORBIDDEN", "permission": "INVOICES_READ"}
    url = (await gql.execute(query, {"ids": [head_invoice]}, token=clerk))["data"]["invoiceDownloadUrl"]
    assert (await get(gql, url)).status_code == 200
    # The permission is taken away after the link was made: the download re-checks.
    async with create_session_factory(engine)() as session:
        await session.execute(update(Membership).where(Membership.user_id == clerk_id,
                                                       Membership.account_id == customer.account_ids[0])
                              .values(permissions=["SERVICES_READ"]))
        await session.commit()
    revoked = await get(gql, url)
    assert revoked.status_code == 403 and revoked.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    async with create_session_factory(engine)() as session:
        await session.execute(Membership.__table__.delete().where(Membership.user_id == clerk_id))
        await session.commit()
    assert (await get(gql, url)).status_code == 404


async def test_tampered_expired_and_foreign_links_are_refused(
    gql: GraphQLClient, engine: AsyncEngine, tokens: dict[str, str]
) -> None:
    customer, by_account = await invoiced_customer(gql, engine, tokens["finance"], "2024-09")
    ids = list(by_account.values())
    url = (await gql.execute("query($ids: [ID!]!) { invoiceDownloadUrl(ids: $ids) }", {"ids": ids[:1]},
                             token=customer.token))["data"]["invoiceDownloadUrl"]
    token = parse_qs(urlparse(url).query)["token"][0]
    header, claims, signature = token.split(".")
    tampered = f"{header}.{claims}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    cases = {
        f"/invoices/download?token={tampered}": 400,
        "/invoices/download?token=not-a-token": 400,
        "/invoices/download": 400,
        f"/invoices/download?token={customer.token}": 400,  # a bearer token is not a link
    }
    invoice_pk = int(await scalar(engine, select(func.max(Invoice.id)).where(
        Invoice.payer_account_id.in_(customer.account_ids))))
    expired = issue_download_token(secret=TEST_SECRET, issuer="linkgate", user_id=customer.user_id,
                                   token_version=1, invoice_ids=[invoice_pk], ttl=timedelta(seconds=-5))
    cases[f"/invoices/download?token={expired}"] = 410
    for target, status in cases.items():
        response = await get(gql, target)
        assert response.status_code == status, (target, response.text)
        assert response.headers["content-type"].startswith("application/json")
    # A link is not a bearer token either.
    as_bearer = await gql.post("{ viewer { user { email } } }", token=token)
    assert as_bearer.status_code == 401
    # A password change (token version bump) revokes the links made before it.
    async with create_session_factory(engine)() as session:
        await session.execute(update(User).where(User.id == customer.user_id).values(token_version=2))
        await session.commit()
    assert (await get(gql, url)).status_code == 401


async def test_the_demo_head_office_has_a_consolidated_invoice(gql: GraphQLClient, tokens: dict[str, str]) -> None:
    query = """{ viewer { account(number: "ACC-100001") { invoices(first: 20) { edges { node {
        number linkGroup { kind } lines { account { number } } } } } } } }"""
    result = await gql.execute(query, token=tokens["olivia"])
    consolidated = [edge["node"] for edge in result["data"]["viewer"]["account"]["invoices"]["edges"]
                    if edge["node"]["linkGroup"]]
    assert consolidated and consolidated[0]["linkGroup"]["kind"] == "BILLING"
    assert {"ACC-100001", "ACC-100002", "ACC-100003"} <= {
        line["account"]["number"] for invoice in consolidated for line in invoice["lines"]}


async def test_demo_personas_download_as_they_read(gql: GraphQLClient, tokens: dict[str, str]) -> None:
    """bill (billing family on the head office) gets the consolidated PDF; dev gets no link."""
    query = """{ viewer { account(number: "ACC-100001") { invoices(first: 1, filter: {number: "2026-10"}) {
        edges { node { id number downloadUrl } } } } } }"""
    (edge,) = (await gql.execute(query, token=tokens["bill"]))["data"]["viewer"]["account"]["invoices"]["edges"]
    response = await get(gql, edge["node"]["downloadUrl"])
    assert response.status_code == 200
    printed = pdf_text(response.content)
    assert edge["node"]["number"] in printed
    for account in ("ACC-100002", "ACC-100003"):  # lines from the linked billing members
        assert account in printed
    denied = await gql.execute("query($ids: [ID!]!) { invoiceDownloadUrl(ids: $ids) }",
                               {"ids": [edge["node"]["id"]]}, token=tokens["dev"])
    assert denied["errors"][0]["extensions"] == {"code": "FORBIDDEN", "permission": "INVOICES_READ"}


async def test_a_download_asks_for_one_to_fifty_invoices(gql: GraphQLClient, engine: AsyncEngine) -> None:
    customer = await seeded_customer(engine)
    query = "query($ids: [ID!]!) { invoiceDownloadUrl(ids: $ids) }"
    for ids in ([], [encode_global_id("Invoice", n) for n in range(1, 52)],
                [encode_global_id("Account", customer.account_ids[0])]):
        result = await gql.execute(query, {"ids": ids}, token=customer.token)
        assert result["data"] == {"invoiceDownloadUrl": None}
        assert result["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_malformed_date_filter_is_bad_input_not_a_server_error(gql: GraphQLClient, tokens: dict[str, str]) -> None:
    result = await gql.execute(INVOICES, {"number": "ACC-100001", "filter": {"issuedFrom": "last tuesday"}},
                               token=tokens["olivia"])
    assert result.get("data") is None
    assert result["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "DateTime" in result["errors"][0]["message"]
