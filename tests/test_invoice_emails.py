"""Invoice emails end to end: the invoice run queues them, the delivery worker sends them to a
real SMTP server (aiosmtpd) as text and HTML with the invoice PDF attached, and the account's
email history shows what was sent.

The app runs on a database of its own, so delivering its whole outbox sends only this mail.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from email.message import Message
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

import resolvers.delivery
from auth.enrollment import enrollment_token
from linkgate.app import create_app
from linkgate.migrations import upgrade_database
from linkgate.settings import Settings
from models import Account, Charge, ChargeKind, Contact, Invoice, StaffRole
from models.contacts import EmailPreference
from models.database import create_engine, create_session_factory
from models.notifications import Notification
from resolvers.delivery import SmtpServer, deliver_notifications
from resolvers.invoice_documents import Printing, pay_url
from resolvers.outbox import queue_email
from tests.billing_world import SeededCustomer, new_user, seeded_customer
from tests.conftest import TEST_SECRET, GraphQLClient, client_for
from tests.test_delivery import SENDER, Mailbox, mailbox  # noqa: F401  (the SMTP sink fixture)
from tests.test_invoice_pdf import flat, pdf_text

PUBLIC_URL = "https://dashboard.example.test"
PERIOD = "2012-09"
RUN = """
mutation($input: RunInvoicingInput!) {
  runInvoicing(input: $input) { invoices { number } userErrors { code } }
}"""
HISTORY = """
query($n: String!) { viewer { account(number: $n) {
  notifications(first: 10) { edges { node { recipient subject body sentAt } } }
} } }"""


@pytest.fixture
async def world(empty_database: str) -> AsyncIterator[tuple[Any, AsyncEngine, Settings]]:
    await asyncio.to_thread(upgrade_database, empty_database)
    engine = create_engine(empty_database)
    settings = Settings(
        database_url=empty_database, secret_key=TEST_SECRET, public_url=PUBLIC_URL,
        answer_floor_seconds=0, seller_name="Łódź Hosting Sp. z o.o.",
        seller_address="ul. Piotrkowska 104 | 90-926 Łódź", seller_tax_id="PL7251234567",
        payment_instructions="Bank transfer to IBAN PL61 1090 1014 0000 0712 1981 2874 <quote the number>.",
    )
    yield create_app(settings, engine=engine), engine, settings
    await engine.dispose()


async def invoiced_customer(app: Any, engine: AsyncEngine) -> tuple[SeededCustomer, str]:
    """A customer with a billing contact and an invoice reader, invoiced for PERIOD by staff
    over GraphQL; the invoice number."""
    customer = await seeded_customer(engine)
    account_id = customer.account_ids[0]
    async with create_session_factory(engine)() as session:
        session.add_all([
            Contact(account_id=account_id, name="Zoë Ødegård", email="ap@lodz.example",
                    city="Łódź", country="PL", tax_id="PL1234567890", is_billing_contact=True,
                    email_preferences=[]),
            Contact(account_id=account_id, name="Reader", email="reader@lodz.example",
                    email_preferences=[EmailPreference.INVOICE.value]),
            Charge(account_id=account_id, payer_account_id=account_id, kind=ChargeKind.CREDIT_PURCHASE,
                   period=PERIOD, description="Łódź € credits", quantity=1, unit_price=10_000,
                   amount=10_000, currency="EUR"),
        ])
        await session.commit()
    _, _, staff = await new_user(engine, role=StaffRole.BILLING)
    async with client_for(app) as http:
        result = await GraphQLClient(http).execute(RUN, {"input": {"period": PERIOD}}, token=staff)
    payload = result["data"]["runInvoicing"]
    assert payload["userErrors"] == [], result
    (invoice,) = payload["invoices"]
    return customer, invoice["number"]


async def deliver(engine: AsyncEngine, settings: Settings, port: int) -> None:
    report = await deliver_notifications(
        create_session_factory(engine), smtp=SmtpServer(hostname="127.0.0.1", port=port),
        sender=SENDER, printing=Printing.of(settings.tunables()),
    )
    assert report.failed == 0, report


def parts(message: Message) -> dict[str, Message]:
    """The leaf parts of a message by content type."""
    return {part.get_content_type(): part for part in message.walk() if not part.is_multipart()}


async def outbox(engine: AsyncEngine) -> list[Notification]:
    async with create_session_factory(engine)() as session:
        return list((await session.scalars(select(Notification).order_by(Notification.id))).all())


async def test_an_issued_invoice_is_mailed_as_text_and_html_with_its_pdf(
    world: tuple[Any, AsyncEngine, Settings], mailbox: tuple[Mailbox, int],  # noqa: F811
) -> None:
    app, engine, settings = world
    box, port = mailbox
    customer, number = await invoiced_customer(app, engine)
    rows = await outbox(engine)
    assert sorted(row.recipient for row in rows) == ["ap@lodz.example", "reader@lodz.example"]
    body = rows[0].body
    for expected in (f"Invoice {number} from Łódź Hosting Sp. z o.o.", "attached", "Total: 121.00 EUR",
                     "VAT 21 %: 21.00 EUR", "Amount due: 121.00 EUR", "IBAN PL61",
                     f"Pay online: {pay_url(PUBLIC_URL, number)}"):
        assert expected in body, (expected, body)

    await deliver(engine, settings, port)
    assert len(box.messages) == 2
    message = next(m for m in box.messages if m["To"] == "ap@lodz.example")
    assert message.get_content_type() == "multipart/mixed"
    by_type = parts(message)
    assert set(by_type) == {"text/plain", "text/html", "application/pdf"}
    text = by_type["text/plain"].get_payload(decode=True).decode("utf-8")  # type: ignore[union-attr]
    assert text.replace("\r\n", "\n").strip() == body.strip()
    html = by_type["text/html"].get_payload(decode=True).decode("utf-8")  # type: ignore[union-attr]
    link = pay_url(PUBLIC_URL, number)
    assert f'<a href="{link}">{link}</a>' in html and "&lt;quote the number&gt;" in html
    assert "<quote" not in html and "Łódź Hosting" in html

    attachment = by_type["application/pdf"]
    assert attachment.get_content_disposition() == "attachment"
    assert attachment.get_filename() == f"{number}.pdf"
    printed = flat(pdf_text(attachment.get_payload(decode=True)))  # type: ignore[arg-type]
    token = enrollment_token(settings.tunables().enrollment_key, customer.account_ids[0], 1)
    for expected in (number, "Zoë Ødegård", "Tax ID: PL1234567890", "VAT ID: PL7251234567",
                     "AMOUNT DUE 121.00 EUR", token):
        assert expected in printed, (expected, printed)

    # The account's email history shows what was sent.
    number_of_account = await _account_number(engine, customer.account_ids[0])
    async with client_for(app) as http:
        history = await GraphQLClient(http).execute(HISTORY, {"n": number_of_account}, token=customer.token)
    nodes = [edge["node"] for edge in history["data"]["viewer"]["account"]["notifications"]["edges"]]
    assert {node["body"] for node in nodes} == {body} and all(node["sentAt"] for node in nodes)


async def test_a_resent_invoice_email_is_the_same_message(
    world: tuple[Any, AsyncEngine, Settings], mailbox: tuple[Mailbox, int],  # noqa: F811
) -> None:
    """A worker that dies after the SMTP server took the message but before the outbox row was
    marked sends it again: same Message-ID (receivers drop the copy), same PDF."""
    app, engine, settings = world
    box, port = mailbox
    await invoiced_customer(app, engine)
    await deliver(engine, settings, port)
    first = next(m for m in box.messages if m["To"] == "ap@lodz.example")
    row_id = int(first["X-Linkgate-Notification"])
    assert first["Message-ID"] == f"<notification-{row_id}@linkgate.example>"
    async with create_session_factory(engine)() as session:
        await session.execute(update(Notification).where(Notification.id == row_id).values(sent_at=None))
        await session.commit()
    await deliver(engine, settings, port)
    again = box.messages[-1]
    assert again["X-Linkgate-Notification"] == str(row_id) and again["Message-ID"] == first["Message-ID"]
    assert parts(again)["application/pdf"].get_payload(decode=True) == \
        parts(first)["application/pdf"].get_payload(decode=True)


async def test_other_mail_about_an_invoice_stays_plain_text(
    world: tuple[Any, AsyncEngine, Settings], mailbox: tuple[Mailbox, int],  # noqa: F811
) -> None:
    app, engine, settings = world
    box, port = mailbox
    customer, number = await invoiced_customer(app, engine)
    async with create_session_factory(engine)() as session:
        invoice = await session.scalar(select(Invoice).where(Invoice.number == number))
        assert invoice is not None
        await queue_email(session, recipients=["ap@lodz.example"], category=EmailPreference.INVOICE,
                          subject=f"Payment received for invoice {number}", body="Thank you.\n",
                          account_id=customer.account_ids[0], related=("invoice", invoice.id))
        await session.commit()
    await deliver(engine, settings, port)
    receipt = next(m for m in box.messages if m["Subject"].startswith("Payment received"))
    assert not receipt.is_multipart() and receipt.get_content_type() == "text/plain"


async def test_a_pdf_that_cannot_be_made_fails_its_row_alone(
    world: tuple[Any, AsyncEngine, Settings], mailbox: tuple[Mailbox, int],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, engine, settings = world
    box, port = mailbox
    await invoiced_customer(app, engine)
    async with create_session_factory(engine)() as session:
        await queue_email(session, recipients=["other@example.com"], category=EmailPreference.SUPPORT,
                          subject="Unrelated", body="Still sent.", account_id=None)
        await session.commit()

    def broken(*args: Any) -> bytes:
        raise RuntimeError("no fonts today")

    monkeypatch.setattr(resolvers.delivery, "render_pdf", broken)
    report = await deliver_notifications(
        create_session_factory(engine), smtp=SmtpServer(hostname="127.0.0.1", port=port),
        sender=SENDER, printing=Printing.of(settings.tunables()),
    )
    assert (report.sent, report.failed) == (1, 2)
    assert [m["To"] for m in box.messages] == ["other@example.com"]
    failed = [row for row in await outbox(engine) if row.sent_at is None]
    assert len(failed) == 2 and all("no fonts today" in (row.last_error or "") for row in failed)
    monkeypatch.undo()
    await deliver(engine, settings, port)  # the next run sends them
    assert len(box.messages) == 3


async def _account_number(engine: AsyncEngine, account_id: int) -> str:
    async with create_session_factory(engine)() as session:
        return str(await session.scalar(select(Account.number).where(Account.id == account_id)))

