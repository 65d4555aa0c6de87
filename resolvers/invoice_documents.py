"""Invoice documents: a PDF per invoice (fpdf2), several at once as one ZIP.

A PDF prints the invoice's own columns only: the snapshot taken at issue (seller, payer, bill-to,
lines with their source accounts, tax rate, totals), and its status and payments. Nothing is
read from rows that can change (DESIGN: an issued invoice never changes). The enrollment token
is derived at render time, at the version the invoice recorded, so it is the token that was
valid at issue, whatever rotations came after.

Text is set in DejaVu Sans, embedded as a subset (``resolvers/fonts``): any European script
prints, where the PDF core fonts had only Latin-1.

``load_documents`` is the permission check of a download: the same rule as the GraphQL
``Invoice`` type (``INVOICES_READ`` on the paying account, invisible accounts look absent),
run against the permissions the user holds at download time.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from fpdf import FPDF, FontFace
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.enrollment import enrollment_token
from auth.errors import NotFound
from auth.permissions import Permission
from auth.policy import AccessMap
from models.billing import Invoice, InvoiceLine, InvoiceStatus
from resolvers.tunables import Tunables

FONT_DIR = Path(__file__).resolve().parent / "fonts"
FONT = "DejaVuSans"
INK = (33, 37, 41)
MUTED = (108, 117, 125)
RULE = (206, 212, 218)
FILL = (241, 243, 245)
ACCENT = (13, 59, 102)
PAID_GREEN = (25, 118, 62)
VOID_RED = (176, 42, 55)
PAGE_WIDTH = 174.0  # A4 less 18 mm margins


@dataclass(frozen=True)
class LineRow:
    account_number: str
    account_name: str
    description: str
    quantity: int
    unit_price: int
    amount: int


@dataclass(frozen=True)
class InvoiceDocument:
    invoice: Invoice
    lines: list[LineRow]

    @property
    def filename(self) -> str:
        return f"{self.invoice.number}.pdf"


@dataclass(frozen=True)
class Printing:
    """What a rendering needs besides the invoice: where the dashboard is (the pay link), and
    the key enrollment tokens are derived under (empty: the token is left off the PDF)."""

    public_url: str
    enrollment_key: bytes = field(default=b"", repr=False)

    @classmethod
    def of(cls, tunables: Tunables) -> Printing:
        return cls(public_url=tunables.public_url, enrollment_key=tunables.enrollment_key)


def pay_url(public_url: str, number: str) -> str:
    """The dashboard page of one invoice, where it can be paid by card."""
    return f"{public_url.rstrip('/')}/invoices/{quote(number)}"


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


async def _documents(session: AsyncSession, invoices: list[Invoice]) -> list[InvoiceDocument]:
    lines: dict[int, list[LineRow]] = {invoice.id: [] for invoice in invoices}
    for line in (await session.scalars(
        select(InvoiceLine).where(InvoiceLine.invoice_id.in_(lines)).order_by(InvoiceLine.id)
    )).all():
        lines[line.invoice_id].append(LineRow(
            line.account_number, line.account_name, line.description, line.quantity,
            line.unit_price, line.amount,
        ))
    return [InvoiceDocument(invoice, lines[invoice.id]) for invoice in invoices]


async def load_documents(
    session: AsyncSession, access: AccessMap, invoice_ids: tuple[int, ...]
) -> list[InvoiceDocument]:
    """Raises ``NotFound`` (unknown or invisible) or ``PermissionDenied`` (no INVOICES_READ)."""
    invoices = await check_invoices_readable(session, access, invoice_ids)
    return await _documents(session, [invoices[pk] for pk in dict.fromkeys(invoice_ids)])


async def load_document(session: AsyncSession, invoice_id: int) -> InvoiceDocument | None:
    """One invoice's document without a permission check: for the delivery worker, which mails
    it to the addresses the invoice run chose."""
    invoice = await session.get(Invoice, invoice_id)
    return None if invoice is None else (await _documents(session, [invoice]))[0]


def money(amount: int, currency: str) -> str:
    """Integer minor units as text, without floats: 123456 → '1,234.56 EUR'."""
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    return f"{sign}{amount // 100:,}.{amount % 100:02d} {currency}"


def tax_label(basis_points: int) -> str:
    """The rate the invoice was issued with: 2100 → 'VAT 21 %', 2150 → 'VAT 21.5 %'."""
    whole, rest = divmod(basis_points, 100)
    rate = str(whole) if not rest else f"{whole}.{rest:02d}".rstrip("0")
    return f"VAT {rate} %"


def printed_token(invoice: Invoice, printing: Printing) -> str | None:
    """The enrollment token valid when the invoice was issued; None for invoices from before
    tokens were derived, or where the process has no key."""
    if invoice.enrollment_token_version is None or not printing.enrollment_key:
        return None
    return enrollment_token(printing.enrollment_key, invoice.payer_account_id,
                            invoice.enrollment_token_version)


def status_of(invoice: Invoice) -> tuple[str, str]:
    """The status as printed: a word, and what it means for this invoice."""
    if invoice.status is InvoiceStatus.PAID:
        return "PAID", (f"Paid in full on {invoice.paid_at:%Y-%m-%d}." if invoice.paid_at else "Paid in full.")
    if invoice.status is InvoiceStatus.VOID:
        when = f" on {invoice.voided_at:%Y-%m-%d}" if invoice.voided_at else ""
        reason = f": {invoice.void_reason.rstrip('.')}." if invoice.void_reason else "."
        return "VOID", f"Cancelled{when}{reason} Nothing is to be paid."
    return "UNPAID", f"Due on {invoice.due_at:%Y-%m-%d}."


class _InvoicePdf(FPDF):
    """A4 with the embedded fonts, a running header after page 1, and page numbers."""

    def __init__(self, invoice: Invoice) -> None:
        super().__init__(format="A4")
        self.invoice = invoice
        self.add_font(FONT, "", FONT_DIR / "DejaVuSans.ttf")
        self.add_font(FONT, "B", FONT_DIR / "DejaVuSans-Bold.ttf")
        self.set_margins(18, 16, 18)
        self.set_auto_page_break(True, margin=20)
        self.set_text_color(*INK)
        self.set_draw_color(*RULE)

    def style(self, size: float, *, bold: bool = False, color: tuple[int, int, int] = INK) -> None:
        self.set_font(FONT, "B" if bold else "", size)
        self.set_text_color(*color)

    def header(self) -> None:
        if self.page_no() == 1:
            return
        self.style(8, color=MUTED)
        seller = f"{self.invoice.seller_name} · " if self.invoice.seller_name else ""
        self.cell(0, 5, f"{seller}Invoice {self.invoice.number} (continued)",
                  new_x="LMARGIN", new_y="NEXT")
        self.ln(3)

    def footer(self) -> None:
        self.set_y(-14)
        self.style(7.5, color=MUTED)
        invoice = self.invoice
        left = " · ".join(part for part in (
            invoice.seller_name, f"VAT ID {invoice.seller_tax_id}" if invoice.seller_tax_id else None,
        ) if part)
        self.cell(PAGE_WIDTH / 2, 5, left)
        self.cell(PAGE_WIDTH / 2, 5, f"Invoice {invoice.number} · page {self.page_no()} of {{nb}}",
                  align="R")

    def lines_of(self, x: float, y: float, width: float, rows: list[tuple[str, float, bool]]) -> float:
        """Text rows (text, size, bold) stacked at (x, y), each wrapped to ``width``; the y below."""
        self.set_xy(x, y)
        for text, size, bold in rows:
            self.style(size, bold=bold)
            self.set_x(x)
            self.multi_cell(width, size * 0.5, text, align="L", new_x="LEFT", new_y="NEXT")
        return self.get_y()

    def facts(self, x: float, y: float, rows: list[tuple[str, str]], *, label: float,
              value: float) -> float:
        """Label/value pairs in two columns at (x, y); the y below."""
        self.set_xy(x, y)
        for name, text in rows:
            top = self.get_y()
            self.style(8.5, color=MUTED)
            self.set_xy(x, top)
            self.cell(label, 5, name)
            self.style(8.5, bold=name == "Invoice number")
            self.multi_cell(value, 5, text, align="L", new_x="LEFT", new_y="NEXT")
            self.set_x(x)
        return self.get_y()

    def section(self, title: str) -> None:
        self.style(7.5, bold=True, color=MUTED)
        self.cell(0, 5, title.upper(), new_x="LMARGIN", new_y="NEXT")

    def keep_together(self, height: float) -> None:
        if self.will_page_break(height):
            self.add_page()


def render_pdf(document: InvoiceDocument, printing: Printing) -> bytes:
    invoice = document.invoice
    pdf = _InvoicePdf(invoice)
    pdf.set_title(f"Invoice {invoice.number}")
    if invoice.seller_name:
        pdf.set_author(invoice.seller_name)
    pdf.set_creator("Linkgate")
    pdf.set_creation_date(invoice.issued_at)  # the same state renders to the same bytes
    pdf.add_page()
    left, top = pdf.l_margin, pdf.t_margin

    # The seller (none on invoices issued before it was recorded) and the title.
    seller: list[tuple[str, float, bool]] = []
    if invoice.seller_name:
        seller.append((invoice.seller_name, 11, True))
    seller += [(line, 9, False) for line in (invoice.seller_address or "").splitlines() if line.strip()]
    if invoice.seller_tax_id:
        seller.append((f"VAT ID: {invoice.seller_tax_id}", 9, False))
    below_seller = pdf.lines_of(left, top, 100, seller)
    pdf.set_xy(left + PAGE_WIDTH - 70, top)
    pdf.style(22, bold=True, color=ACCENT)
    pdf.cell(70, 10, "Invoice", align="R", new_x="LEFT", new_y="NEXT")
    pdf.style(10, bold=True)
    pdf.cell(70, 6, invoice.number, align="R")
    y = max(below_seller, top + 16) + 10

    # Bill-to on the left, the invoice's facts on the right.
    pdf.set_xy(left, y)
    pdf.section("Bill to")
    place = " ".join(part for part in (invoice.bill_to_postal_code, invoice.bill_to_city) if part)
    bill_to = [(invoice.bill_to_name, 10, True)] + [
        (part, 9, False) for part in (invoice.bill_to_line1, invoice.bill_to_line2, place,
                                      invoice.bill_to_country, invoice.bill_to_email) if part
    ]
    if invoice.bill_to_tax_id:
        bill_to.append((f"Tax ID: {invoice.bill_to_tax_id}", 9, False))
    below_bill_to = pdf.lines_of(left, pdf.get_y(), 90, bill_to)
    below_facts = pdf.facts(left + PAGE_WIDTH - 76, y, [
        ("Invoice number", invoice.number),
        ("Invoice date", f"{invoice.issued_at:%Y-%m-%d}"),
        ("Due date", f"{invoice.due_at:%Y-%m-%d}"),
        ("Period", f"{invoice.period_start:%Y-%m-%d} – {invoice.period_end:%Y-%m-%d}"),
        ("Account", f"{invoice.payer_number}\n{invoice.payer_name}"),
    ], label=26, value=50)
    pdf.set_xy(left, max(below_bill_to, below_facts) + 8)

    # The lines, each naming its source account; the heading repeats on every page.
    pdf.style(8.5)
    with pdf.table(
        width=PAGE_WIDTH, col_widths=(38, 74, 12, 25, 25), align="LEFT",
        text_align=("LEFT", "LEFT", "RIGHT", "RIGHT", "RIGHT"),
        borders_layout="HORIZONTAL_LINES", line_height=4.4, padding=(1.6, 1.2), v_align="TOP",
        headings_style=FontFace(emphasis="BOLD", color=MUTED, fill_color=FILL),
        repeat_headings=1,
    ) as table:
        table.row(("Account", "Description", "Qty", "Unit price", "Amount"))
        for line in document.lines:
            table.row((f"{line.account_number}\n{line.account_name}", line.description,
                       str(line.quantity), money(line.unit_price, invoice.currency),
                       money(line.amount, invoice.currency)))
    pdf.ln(4)

    # Totals, the amount due standing out, and the status beside them.
    pdf.keep_together(36)  # four rows of 6 mm and the amount due's 10
    y = pdf.get_y()
    x = left + PAGE_WIDTH - 80
    rows = [("Subtotal", invoice.subtotal, False), (tax_label(invoice.tax_rate_basis_points), invoice.tax, False),
            ("Total", invoice.total, True), ("Amount paid", invoice.amount_paid, False)]
    pdf.set_xy(x, y)
    for label, amount, bold in rows:
        pdf.style(9, bold=bold)
        pdf.set_x(x)
        pdf.cell(45, 6, label, border="T" if bold else 0)
        pdf.cell(35, 6, money(amount, invoice.currency), align="R", border="T" if bold else 0,
                 new_x="LMARGIN", new_y="NEXT")
    pdf.set_x(x)
    pdf.set_fill_color(*FILL)
    pdf.style(12, bold=True, color=ACCENT)
    pdf.cell(45, 10, " AMOUNT DUE", fill=True)
    pdf.cell(35, 10, money(invoice.amount_due, invoice.currency) + " ", align="R", fill=True,
             new_x="LMARGIN", new_y="NEXT")
    below_totals = pdf.get_y()
    color = {InvoiceStatus.PAID: PAID_GREEN, InvoiceStatus.VOID: VOID_RED}.get(invoice.status, INK)
    pdf.set_xy(left, y)
    pdf.style(7.5, bold=True, color=MUTED)
    pdf.cell(85, 5, "STATUS", new_x="LMARGIN", new_y="NEXT")
    word, meaning = status_of(invoice)
    pdf.style(14, bold=True, color=color)
    pdf.cell(85, 8, word, new_x="LMARGIN", new_y="NEXT")
    pdf.style(9)
    pdf.multi_cell(85, 5, meaning, align="L", new_x="LMARGIN", new_y="NEXT")
    pdf.set_y(max(below_totals, pdf.get_y()) + 8)

    if invoice.status is not InvoiceStatus.VOID:
        _how_to_pay(pdf, invoice, printing)

    # The enrollment token: what lets the holder of this invoice link the account.
    token = printed_token(invoice, printing)
    if token is not None:
        pdf.keep_together(32)
        pdf.section("Account enrollment token")
        pdf.style(12, bold=True)
        pdf.cell(0, 7, token, new_x="LMARGIN", new_y="NEXT")
        pdf.style(8, color=MUTED)
        pdf.multi_cell(0, 4.2, (
            f"This token proves control of account {invoice.payer_number} ({invoice.payer_name}): "
            "with it, a Linkgate user can link the account to one of theirs, to manage it or to "
            "pay its invoices. Keep it as safe as this invoice. The account's owner can replace "
            "it in the dashboard at any time; the old token then stops working."
        ), align="L", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def _how_to_pay(pdf: _InvoicePdf, invoice: Invoice, printing: Printing) -> None:
    """The seller's instructions as issued, the dashboard's page, and the reference to quote."""
    instructions = [line for line in (invoice.payment_instructions or "").splitlines() if line.strip()]
    pdf.keep_together(22 + 5 * len(instructions))
    pdf.section("How to pay")
    pdf.style(9)
    for line in instructions:
        pdf.multi_cell(0, 5, line, align="L", new_x="LMARGIN", new_y="NEXT")
    link = pay_url(printing.public_url, invoice.number)
    pdf.write(5, "Pay online: ")
    pdf.set_text_color(*ACCENT)
    pdf.write(5, link, link=link)
    pdf.ln(5)
    pdf.style(9)
    pdf.cell(0, 5, f"Payment reference: {invoice.number}", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)


def render_zip(documents: list[InvoiceDocument], printing: Printing) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for document in documents:
            archive.writestr(document.filename, render_pdf(document, printing))
    return buffer.getvalue()
