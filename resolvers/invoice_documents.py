"""Invoice documents: a PDF per invoice (fpdf2), several at once as one ZIP.

``load_documents`` is the permission check of a download: the same rule as the GraphQL
``Invoice`` type (``INVOICES_READ`` on the paying account, invisible accounts look absent),
run against the permissions the user holds at download time.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

from fpdf import FPDF
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.errors import NotFound
from auth.permissions import Permission
from auth.policy import AccessMap
from models.accounts import Account
from models.billing import Invoice, InvoiceLine


@dataclass(frozen=True)
class LineRow:
    account_number: str
    description: str
    quantity: int
    unit_price: int
    amount: int


@dataclass(frozen=True)
class InvoiceDocument:
    invoice: Invoice
    payer_number: str
    payer_name: str
    lines: list[LineRow]

    @property
    def filename(self) -> str:
        return f"{self.invoice.number}.pdf"


async def check_invoices_readable(
    session: AsyncSession, access: AccessMap, invoice_ids: tuple[int, ...]
) -> dict[int, Invoice]:
    """The invoices, if ``access`` may read every one: the ``Invoice`` type's own rule."""
    invoices = {row.id: row for row in (await session.scalars(
        select(Invoice).where(Invoice.id.in_(invoice_ids))
    )).all()}
    for pk in invoice_ids:
        invoice = invoices.get(pk)
        if invoice is None or not access.can_see(invoice.payer_account_id):
            raise NotFound("No such invoice.")
        access.require(invoice.payer_account_id, Permission.INVOICES_READ)
    return invoices


async def load_documents(
    session: AsyncSession, access: AccessMap, invoice_ids: tuple[int, ...]
) -> list[InvoiceDocument]:
    """Raises ``NotFound`` (unknown or invisible) or ``PermissionDenied`` (no INVOICES_READ)."""
    invoices = await check_invoices_readable(session, access, invoice_ids)
    rows = (await session.execute(
        select(InvoiceLine, Account.number).join(Account, Account.id == InvoiceLine.account_id)
        .where(InvoiceLine.invoice_id.in_(invoice_ids)).order_by(InvoiceLine.id)
    )).all()
    payers = {row.id: row for row in (await session.scalars(
        select(Account).where(Account.id.in_({i.payer_account_id for i in invoices.values()}))
    )).all()}
    lines: dict[int, list[LineRow]] = {pk: [] for pk in invoice_ids}
    for line, number in rows:
        lines[line.invoice_id].append(LineRow(number, line.description, line.quantity,
                                              line.unit_price, line.amount))
    documents = []
    for pk in dict.fromkeys(invoice_ids):
        invoice = invoices[pk]
        payer = payers[invoice.payer_account_id]
        documents.append(InvoiceDocument(invoice, payer.number, payer.name, lines[pk]))
    return documents


def money(amount: int, currency: str) -> str:
    """Integer minor units as text, without floats: 123456 → '1,234.56 EUR'."""
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    return f"{sign}{amount // 100:,}.{amount % 100:02d} {currency}"


def _latin1(text: str | None) -> str:
    """The PDF core fonts cover Latin-1; anything else prints as '?' rather than failing."""
    return (text or "").encode("latin-1", "replace").decode("latin-1")


def render_pdf(document: InvoiceDocument) -> bytes:
    invoice = document.invoice
    pdf = FPDF(format="A4")
    pdf.set_compression(False)  # small files; and their text stays greppable
    pdf.set_title(_latin1(f"Invoice {invoice.number}"))
    pdf.set_creator("Linkgate")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, _latin1(f"Invoice {invoice.number}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    facts = [
        f"Account: {document.payer_number} - {document.payer_name}",
        f"Period: {invoice.period_start:%Y-%m-%d} to {invoice.period_end:%Y-%m-%d}",
        f"Issued: {invoice.issued_at:%Y-%m-%d}    Due: {invoice.due_at:%Y-%m-%d}",
        f"Status: {invoice.status.value}",
    ]
    for fact in facts:
        pdf.cell(0, 6, _latin1(fact), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font("Helvetica", "B", 10)
    pdf.cell(0, 6, "Bill to", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    city = " ".join(part for part in (invoice.bill_to_postal_code, invoice.bill_to_city) if part)
    for part in (invoice.bill_to_name, invoice.bill_to_line1, invoice.bill_to_line2, city,
                 invoice.bill_to_country, invoice.bill_to_email):
        if part:
            pdf.cell(0, 6, _latin1(part), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    widths = (30, 80, 15, 30, 35)
    pdf.set_font("Helvetica", "B", 9)
    for width, title, align in zip(widths, ("Account", "Description", "Qty", "Unit price", "Amount"),
                                   ("L", "L", "R", "R", "R")):
        pdf.cell(width, 7, title, border="B", align=align)
    pdf.ln()
    pdf.set_font("Helvetica", size=9)
    for line in document.lines:
        cells = (line.account_number, line.description[:60], str(line.quantity),
                 money(line.unit_price, invoice.currency), money(line.amount, invoice.currency))
        for width, text, align in zip(widths, cells, ("L", "L", "R", "R", "R")):
            pdf.cell(width, 6, _latin1(text), align=align)
        pdf.ln()
    pdf.ln(2)
    pdf.set_font("Helvetica", size=10)
    for label, amount in (("Subtotal", invoice.subtotal), ("Tax", invoice.tax),
                          ("Total", invoice.total)):
        if label == "Total":
            pdf.set_font("Helvetica", "B", 10)
        pdf.cell(sum(widths[:4]), 7, label, align="R")
        pdf.cell(widths[4], 7, money(amount, invoice.currency), align="R",
                 new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def render_zip(documents: list[InvoiceDocument]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for document in documents:
            archive.writestr(document.filename, render_pdf(document))
    return buffer.getvalue()
