"""The invoice PDF: a document an accounts department can book, printed from the invoice's
snapshot alone, in an embedded font that prints any European text.

PDF text is read back with pypdf (the fonts are embedded subsets: the text in the file is glyph
ids, so it cannot be grepped). Invoice runs here use months of 2012, which no other test
invoices, and charges written for them, so no other test's run picks anything up.
"""

from __future__ import annotations

import logging
import re
import tomllib
from dataclasses import replace
from datetime import date, datetime, timezone
from fnmatch import fnmatch
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader
from sqlalchemy.ext.asyncio import AsyncEngine

from linkgate.settings import Settings
from models.billing import Charge, ChargeKind, Invoice, InvoiceStatus
from models.contacts import Contact
from models.database import create_session_factory
from resolvers.invoice_documents import (
    FONT_DIR, InvoiceDocument, LineRow, Printing, pay_url, render_pdf, tax_label,
)
from resolvers.invoicing import InvoiceRun, run_invoicing
from resolvers.tunables import Seller
from tests.conftest import GraphQLClient
from tests.customers import Customer, new_customer, pk

ROOT = Path(__file__).resolve().parent.parent
TOKEN = re.compile(r"ENR-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}")
SELLER = Seller(
    name="Łódź Hosting Spółka z o.o.", address="ul. Piotrkowska 104\n90-926 Łódź\nPolska",
    tax_id="PL7251234567",
    payment_instructions="Przelew: IBAN PL61 1090 1014 0000 0712 1981 2874, "
                         "tytuł: numer faktury. Wire transfers in € only.",
)
INVOICE_URLS = """
query($n: String!) { viewer { account(number: $n) {
  invoices(first: 10) { edges { node { number downloadUrl } } }
} } }"""
RENAME = """
mutation($input: RenameAccountInput!) { renameAccount(input: $input) { userErrors { code } } }"""
ROTATE = """
mutation($input: RotateEnrollmentTokenInput!) {
  rotateEnrollmentToken(input: $input) { enrollmentToken userErrors { code } }
}"""
LINK = """
mutation($input: LinkAccountInput!) {
  linkAccount(input: $input) { linkGroup { members { account { number } } } userErrors { code } }
}"""


def pdf_pages(pdf: bytes) -> list[str]:
    """The text of each page, as a reader's copy and paste would give it."""
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    return [page.extract_text() for page in PdfReader(BytesIO(pdf)).pages]


def pdf_text(pdf: bytes) -> str:
    return "\n".join(pdf_pages(pdf))


def flat(text: str) -> str:
    """Whitespace folded to single spaces: wrapped lines read as one."""
    return " ".join(text.split())


# --- rendered over HTTP, from invoices the run issued ------------------------------------------

async def bill_to_lodz(engine: AsyncEngine, account_id: int) -> None:
    async with create_session_factory(engine)() as session:
        session.add(Contact(
            account_id=account_id, name="Zoë Ødegård", email="zoe@lodz.example",
            address_line1="ul. Piotrkowska 1", city="Łódź", postal_code="90-001", country="PL",
            tax_id="PL1234567890", is_billing_contact=True, email_preferences=[],
        ))
        await session.commit()


async def invoice_month(engine: AsyncEngine, settings: Settings, account_id: int, period: str,
                        *lines: tuple[str, int]) -> Invoice:
    """Charges (description, amount) of ``period`` on the account, invoiced by the run with
    the seller above."""
    async with create_session_factory(engine)() as session:
        for description, amount in lines:
            session.add(Charge(
                account_id=account_id, payer_account_id=account_id, kind=ChargeKind.CREDIT_PURCHASE,
                period=period, description=description, quantity=1, unit_price=amount,
                amount=amount, currency="EUR",
            ))
        await session.commit()
        run = await run_invoicing(session, period=period, actor=None,
                                  tunables=replace(settings.tunables(), seller=SELLER))
    assert isinstance(run, InvoiceRun), run
    (invoice,) = [invoice for invoice in run.invoices if invoice.payer_account_id == account_id]
    return invoice


async def download(gql: GraphQLClient, customer: Customer, number: str) -> bytes:
    listed = await gql.execute(INVOICE_URLS, {"n": customer.account.number}, token=customer.token)
    edges = listed["data"]["viewer"]["account"]["invoices"]["edges"]
    (url,) = [edge["node"]["downloadUrl"] for edge in edges if edge["node"]["number"] == number]
    response = await gql.http.get(url)
    assert response.status_code == 200 and response.headers["content-type"] == "application/pdf"
    return response.content


async def execute(gql: GraphQLClient, query: str, values: dict[str, Any], token: str) -> dict[str, Any]:
    result = await gql.execute(query, {"input": values}, token=token)
    assert "errors" not in result, result
    return next(iter(result["data"].values()))


async def test_the_pdf_prints_the_snapshot_a_bookkeeper_needs(
    gql: GraphQLClient, engine: AsyncEngine, settings: Settings,
) -> None:
    customer = await new_customer(gql, account_name="Kraków Ćwiczenia")
    account_id = pk(customer.account.id)
    await bill_to_lodz(engine, account_id)
    invoice = await invoice_month(engine, settings, account_id, "2012-03",
                                  ("Łódź € hosting — März (2012-03)", 10_000))
    renamed = await execute(gql, RENAME, {"accountId": customer.account.id, "name": "Renamed Ltd"},
                            customer.token)
    assert renamed["userErrors"] == []

    text = pdf_text(await download(gql, customer, invoice.number))
    printed = flat(text)
    public_url = settings.tunables().public_url
    for expected in (
        # the seller, as issued
        "Łódź Hosting Spółka z o.o.", "ul. Piotrkowska 104", "90-926 Łódź", "Polska",
        "VAT ID: PL7251234567",
        # the invoice and the payer account as they were at issue
        "Invoice", invoice.number, f"Invoice date {invoice.issued_at:%Y-%m-%d}",
        f"Due date {invoice.due_at:%Y-%m-%d}", "2012-03-01 – 2012-03-31",
        customer.account.number, "Kraków Ćwiczenia",
        # bill-to, with the customer's tax ID
        "Zoë Ødegård", "ul. Piotrkowska 1", "90-001 Łódź", "PL", "zoe@lodz.example",
        "Tax ID: PL1234567890",
        # the line, its source account, and the totals with the rate
        "Łódź € hosting — März (2012-03)", "Subtotal 100.00 EUR", "VAT 21 % 21.00 EUR",
        "Total 121.00 EUR", "Amount paid 0.00 EUR", "AMOUNT DUE 121.00 EUR", "UNPAID",
        # how to pay
        "Przelew: IBAN PL61 1090 1014 0000 0712 1981 2874", "Wire transfers in € only.",
        f"Pay online: {pay_url(public_url, invoice.number)}", f"Payment reference: {invoice.number}",
        # the token, and what it is for
        customer.account.enrollment_token, "proves control of account",
    ):
        assert expected in printed, (expected, text)
    assert "Renamed Ltd" not in printed  # renaming the payer changes no issued invoice


async def test_each_invoice_prints_the_token_valid_at_its_issue_and_it_links_the_account(
    gql: GraphQLClient, engine: AsyncEngine, settings: Settings,
) -> None:
    customer = await new_customer(gql, account_name="Token Holder")
    account_id = pk(customer.account.id)
    before = await invoice_month(engine, settings, account_id, "2012-05", ("Before rotation", 500))
    rotated = await execute(gql, ROTATE, {"accountId": customer.account.id}, customer.token)
    assert rotated["userErrors"] == [] and rotated["enrollmentToken"] != customer.account.enrollment_token
    after = await invoice_month(engine, settings, account_id, "2012-06", ("After rotation", 700))

    old_pdf = TOKEN.findall(pdf_text(await download(gql, customer, before.number)))
    new_pdf = TOKEN.findall(pdf_text(await download(gql, customer, after.number)))
    assert old_pdf == [customer.account.enrollment_token]  # as issued, rotation or not
    assert new_pdf == [rotated["enrollmentToken"]]

    # The holder of the new invoice links the account into a group of their own.
    holder = await new_customer(gql, account_name="Invoice Holder")

    async def link(token: str) -> dict[str, Any]:
        return await execute(gql, LINK, {
            "headAccountId": holder.account.id, "kind": "MANAGEMENT",
            "enrollment": {"accountNumber": customer.account.number, "enrollmentToken": token},
        }, holder.token)

    assert [error["code"] for error in (await link(old_pdf[0]))["userErrors"]] == ["INVALID_PROOF"]
    linked = await link(new_pdf[0])
    assert linked["userErrors"] == []
    members = {member["account"]["number"] for member in linked["linkGroup"]["members"]}
    assert customer.account.number in members


# --- rendered directly ---------------------------------------------------------------------------

PRINTING = Printing(public_url="https://dashboard.example.test", enrollment_key=b"k" * 32)


def an_invoice(lines: list[LineRow], **overrides: Any) -> InvoiceDocument:
    subtotal = sum(line.amount for line in lines)
    values: dict[str, Any] = dict(
        id=1, number="INV-2012-01-000001", payer_account_id=1, period_start=date(2012, 1, 1),
        period_end=date(2012, 1, 31), issued_at=datetime(2012, 2, 1, tzinfo=timezone.utc),
        due_at=datetime(2012, 2, 15, tzinfo=timezone.utc), status=InvoiceStatus.UNPAID,
        currency="EUR", subtotal=subtotal, tax=subtotal * 21 // 100,
        total=subtotal + subtotal * 21 // 100, bill_to_name="Accounts Payable",
        bill_to_email="ap@example.com", payer_number="ACC-1", payer_name="Payer",
        seller_name=SELLER.name, seller_address=SELLER.address, seller_tax_id=SELLER.tax_id,
        payment_instructions=SELLER.payment_instructions, tax_rate_basis_points=2100,
        enrollment_token_version=1, amount_paid=0,
    )
    values.update(overrides)
    return InvoiceDocument(Invoice(**values), lines)


def line(index: int, description: str | None = None) -> LineRow:
    return LineRow(f"ACC-{index:04d}", f"Site {index}", description or f"Service number {index}",
                   1, 100 + index, 100 + index)


def test_sixty_lines_break_across_pages_with_the_heading_repeated() -> None:
    long = "A long description " + "that wraps " * 16 + "(2012-01)"
    lines = [line(1, long)] + [line(index) for index in range(2, 61)]
    pages = pdf_pages(render_pdf(an_invoice(lines), PRINTING))
    assert len(pages) >= 2
    for number, page in enumerate(pages, start=1):
        assert "Description" in page and "Unit price" in page, page  # the table heading
        assert f"page {number} of {len(pages)}" in page
    text = flat("\n".join(pages))
    assert flat(long) in text  # wrapped within its cell, every word printed
    assert all(f"Service number {index} " in text for index in range(2, 61))
    assert "AMOUNT DUE" in pages[-1] and "AMOUNT DUE" not in pages[0]


def test_an_invoice_from_before_the_snapshot_prints_without_seller_or_token() -> None:
    old = an_invoice([line(1)], seller_name=None, seller_address=None, seller_tax_id=None,
                     payment_instructions=None, enrollment_token_version=None)
    text = pdf_text(render_pdf(old, PRINTING))
    assert "VAT ID" not in text and "ENR-" not in text and "Invoice" in text
    assert f"Pay online: {pay_url(PRINTING.public_url, 'INV-2012-01-000001')}" in flat(text)
    # Where no key is available, no token is printed either.
    keyless = pdf_text(render_pdf(an_invoice([line(1)]), Printing(public_url="http://x")))
    assert "ENR-" not in keyless and "Łódź Hosting" in keyless


@pytest.mark.parametrize(("basis_points", "label"), [
    (2100, "VAT 21 %"), (2150, "VAT 21.5 %"), (2125, "VAT 21.25 %"), (0, "VAT 0 %"), (700, "VAT 7 %"),
])
def test_the_tax_rate_prints_as_issued(basis_points: int, label: str) -> None:
    assert tax_label(basis_points) == label
    text = flat(pdf_text(render_pdf(an_invoice([line(1)], tax_rate_basis_points=basis_points), PRINTING)))
    assert label in text


def test_paid_and_void_invoices_say_so() -> None:
    paid = an_invoice([line(1)], status=InvoiceStatus.PAID, amount_paid=122,
                      paid_at=datetime(2012, 2, 7, tzinfo=timezone.utc))
    text = flat(pdf_text(render_pdf(paid, PRINTING)))
    assert "PAID Paid in full on 2012-02-07." in text and "AMOUNT DUE 0.00 EUR" in text
    void = an_invoice([line(1)], status=InvoiceStatus.VOID, voided_at=datetime(2012, 2, 3, tzinfo=timezone.utc),
                      void_reason="Issued twice")
    text = flat(pdf_text(render_pdf(void, PRINTING)))
    assert "VOID Cancelled on 2012-02-03: Issued twice." in text and "AMOUNT DUE 0.00 EUR" in text
    assert "How to pay".upper() not in text  # nothing is to be paid


def test_the_same_invoice_renders_to_the_same_bytes() -> None:
    document = an_invoice([line(1), line(2)])
    assert render_pdf(document, PRINTING) == render_pdf(document, PRINTING)


def test_the_fonts_install_with_the_package() -> None:
    """The TrueType files are package data: the image installs the project with
    ``pip install .``, which copies only what pyproject.toml names."""
    shipped = sorted(path.name for path in FONT_DIR.iterdir() if path.suffix == ".ttf")
    assert shipped == ["DejaVuSans-Bold.ttf", "DejaVuSans.ttf"] and (FONT_DIR / "LICENSE").is_file()
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = package_data.get("resolvers", [])
    for name in [*shipped, "LICENSE"]:
        assert any(fnmatch(f"fonts/{name}", pattern) for pattern in patterns), (name, patterns)


def test_rendering_does_not_flood_the_logs() -> None:
    """fontTools logs every step of subsetting a font at INFO: dozens of lines per PDF. The
    logging setup (conftest applies production's) keeps it to warnings."""
    render_pdf(an_invoice([line(1)]), PRINTING)
    assert not logging.getLogger("fontTools.subset").isEnabledFor(logging.INFO)
