"""The "invoice issued" email: queued by the invoice run, sent with the invoice PDF attached.

The outbox row holds the plain text, which is what the email history shows. The delivery worker
adds the rest when it sends the row (``resolvers/delivery.py``): an HTML rendering of the same
text and the invoice's PDF, rendered then from the invoice's snapshot. A row is an issued
invoice's email when it is about an invoice (``related``) and carries that invoice's
``issued_subject``: payment receipts, also about an invoice, get no PDF.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from models.billing import Invoice
from models.contacts import EmailPreference
from models.notifications import Notification
from resolvers.invoice_documents import money, pay_url, tax_label
from resolvers.outbox import queue_email
from resolvers.tunables import Tunables

RELATED_TYPE = "invoice"


def issued_subject(number: str) -> str:
    return f"Invoice {number} is available"


def issued_body(invoice: Invoice, *, public_url: str) -> str:
    """What the email says: the invoice in a few lines, how to pay, where; the PDF attached."""
    seller = f" from {invoice.seller_name}" if invoice.seller_name else ""
    currency = invoice.currency
    facts = [
        f"Invoice number: {invoice.number}",
        f"Account: {invoice.payer_number} ({invoice.payer_name})",
        f"Period: {invoice.period_start:%Y-%m-%d} to {invoice.period_end:%Y-%m-%d}",
        f"Total: {money(invoice.total, currency)} (including "
        f"{tax_label(invoice.tax_rate_basis_points)}: {money(invoice.tax, currency)})",
        f"Due date: {invoice.due_at:%Y-%m-%d}",
        f"Amount due: {money(invoice.amount_due, currency)}",
    ]
    paragraphs = [
        f"Hello {invoice.bill_to_name},",
        f"Invoice {invoice.number}{seller} for {invoice.period_start:%B %Y} is attached to this "
        "email as a PDF, ready to book.",
        "\n".join(facts),
        "How to pay:\n" + (invoice.payment_instructions or "By card, in the dashboard."),
        f"Pay online: {pay_url(public_url, invoice.number)}",
        f"Please quote {invoice.number} as the payment reference.",
    ]
    return "\n\n".join(paragraphs) + "\n"


async def queue_invoice_issued_email(
    session: AsyncSession, *, invoice: Invoice, recipients: Iterable[str], tunables: Tunables,
) -> list[Notification]:
    """One outbox row per recipient who has not opted out of INVOICE, in the caller's
    transaction (the invoice run's)."""
    return await queue_email(
        session, recipients=recipients, category=EmailPreference.INVOICE,
        subject=issued_subject(invoice.number),
        body=issued_body(invoice, public_url=tunables.public_url),
        account_id=invoice.payer_account_id, related=(RELATED_TYPE, invoice.id),
    )


def is_issued_email(*, category: str, subject: str, related_type: str | None,
                    invoice: Invoice) -> bool:
    """Whether an outbox row about ``invoice`` is its "invoice issued" email."""
    return (category == EmailPreference.INVOICE.value and related_type == RELATED_TYPE
            and subject == issued_subject(invoice.number))
