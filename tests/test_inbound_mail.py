"""Tickets by email (DESIGN §1 Tickets): real SMTP clients against the running listener.

The listener runs in-process on a free port against the run's database (SQLite, or PostgreSQL
with LINKGATE_TEST_DATABASE_URL); every message goes through smtplib (in a thread) or a raw
socket. Each bad input is checked twice: nothing was created (tickets, messages, files,
emails), and the listener still takes the next message.
"""

from __future__ import annotations

import asyncio
import re
import signal
import smtplib
import socket
import subprocess
from collections.abc import AsyncIterator
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from linkgate.app import create_app
from linkgate.demo import seed_demo
from linkgate.mail_listener import Listener, listener_config, start_listener
from linkgate.mail_parser import html_to_text, strip_quoted
from linkgate.notifications import mailboxes_of
from linkgate.settings import Settings
from models.database import create_engine, create_session_factory
from models.notifications import Notification
from models.tickets import InboundMessage, Ticket, TicketAttachment, TicketMessage
from resolvers.delivery import SmtpServer, deliver_notifications
from schema.relay import encode_global_id
from tests.conftest import TEST_SECRET, GraphQLClient, client_for
from tests.customers import Customer, add_contact, new_customer, new_sub_account, register, unique_email
from tests.servers import LINKGATE, clean_environment
from tests.test_delivery import Mailbox, free_port, mailbox, outbox_url  # noqa: F401 (fixtures)

SUPPORT = "support@linkgate.example"
BILLING = "billing@linkgate.example"
FIFTY_MB = 50 * 1024 * 1024

TICKET = """
query($id: ID!) { node(id: $id) { ... on Ticket {
  number status department ccEmails openedBy { name email isContact }
  messages { authorKind authorName body via attachments { filename contentType size } }
} } }
"""
REPLY = """
mutation($input: ReplyToTicketInput!) { replyToTicket(input: $input) { ticket { status } userErrors { code } } }
"""
CLOSE = """
mutation($input: CloseTicketInput!) { closeTicket(input: $input) { ticket { status } userErrors { code } } }
"""


# --- the listener and a client ------------------------------------------------------------------


@pytest.fixture
async def listener(engine: AsyncEngine, settings: Settings) -> AsyncIterator[int]:
    """The listener on a free port, against the run's database; its port."""
    port = free_port()
    running = await start_listener(create_session_factory(engine), listener_config(settings),
                                   host="127.0.0.1", port=port)
    try:
        yield port
    finally:
        await running.stop()


def compose(
    sender: str, *, to: str = SUPPORT, subject: str = "Printer offline", body: str = "It is offline.",
    cc: tuple[str, ...] = (), html: str | None = None, files: tuple[tuple[str, str, bytes], ...] = (),
    **headers: str,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Casey Contact <{sender}>"
    message["To"] = to
    if cc:
        message["Cc"] = ", ".join(cc)
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="client.example")
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for filename, content_type, data in files:
        maintype, subtype = content_type.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message


def wire(message: EmailMessage) -> bytes:
    """As a mail client sends it: CRLF line ends (smtplib leaves bytes as they are)."""
    return message.as_bytes(policy=SMTP_POLICY)


def _transact(port: int, raw: bytes, mail_from: str, recipients: list[str],
              size: int | None = None) -> tuple[int, str]:
    """One SMTP transaction with smtplib; the first reply that is not a success."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("client.example")
        code, text = client.mail(mail_from, [f"SIZE={size}"] if size else [])
        if code != 250:
            return code, text.decode()
        for recipient in recipients:
            code, text = client.rcpt(recipient)
            if code != 250:
                return code, text.decode()
        code, text = client.data(raw)
        return code, text.decode()


async def send(port: int, message: EmailMessage | bytes, *, mail_from: str | None = None,
               recipients: list[str] | None = None, size: int | None = None) -> tuple[int, str]:
    if isinstance(message, EmailMessage):
        raw = wire(message)
        mail_from = mail_from if mail_from is not None else message["From"].addresses[0].addr_spec
        recipients = recipients or [message["To"]]
    else:
        raw = message
    assert mail_from is not None and recipients
    return await asyncio.to_thread(_transact, port, raw, mail_from, recipients, size)


async def counts(engine: AsyncEngine) -> dict[str, int]:
    async with create_session_factory(engine)() as session:
        return {model.__tablename__: int(await session.scalar(select(func.count()).select_from(model)) or 0)
                for model in (Ticket, TicketMessage, TicketAttachment, Notification, InboundMessage)}


def created(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {table: after[table] - before[table] for table in before if after[table] != before[table]}


async def inbound(engine: AsyncEngine, message_id: str) -> InboundMessage | None:
    async with create_session_factory(engine)() as session:
        return await session.scalar(select(InboundMessage).where(InboundMessage.message_id == message_id))


async def ticket_by_number(engine: AsyncEngine, number: str) -> Ticket:
    async with create_session_factory(engine)() as session:
        ticket = await session.scalar(select(Ticket).where(Ticket.number == number))
        assert ticket is not None
        return ticket


def number_in(text: str) -> str:
    found = re.search(r"TKT-\d+", text)
    assert found, text
    return found.group(0)


async def with_contact(gql: GraphQLClient, **fields: Any) -> tuple[Customer, str]:
    """A new customer and a support contact of its account (no login); the contact's email."""
    owner = await new_customer(gql)
    contact = await add_contact(gql, owner.token, owner.account.id, name="Casey Contact",
                                isSupportContact=True, **fields)
    return owner, contact["contact"]["email"]


async def opened_by_mail(port: int, sender: str, **fields: Any) -> str:
    code, text = await send(port, compose(sender, **fields))
    assert code == 250 and "opened" in text, (code, text)
    return number_in(text)


@pytest.fixture(scope="module")
async def regular(gql: GraphQLClient) -> str:
    """A contact who writes in now and then (one for the module: every customer made here is
    one more account in the run's database)."""
    _owner, contact = await with_contact(gql)
    return contact


async def still_serving(port: int, contact: str) -> None:
    """The listener takes the next good message."""
    await opened_by_mail(port, contact, subject="Still there?")


# --- what works --------------------------------------------------------------------------------


async def test_a_contact_opens_a_ticket_by_email(
    listener: int, gql: GraphQLClient, engine: AsyncEngine
) -> None:
    owner, contact = await with_contact(gql)
    before = await counts(engine)
    message = compose(contact, subject="  Printer   offline ", cc=("Boss@Example.com", SUPPORT),
                      body="The printer on floor 3 is offline.\n\n-- \nCasey, IT desk",
                      files=(("error log.txt", "text/plain", b"E42 paper jam\n"),
                             ("photo.png", "image/png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)))))
    code, text = await send(listener, message)
    assert code == 250 and re.fullmatch(r"2\.0\.0 Ticket TKT-\d+ opened", text), text
    number = number_in(text)
    assert created(before, await counts(engine)) == {
        "tickets": 1, "ticket_messages": 1, "ticket_attachments": 2, "inbound_messages": 1,
    }
    ticket = await ticket_by_number(engine, number)
    assert ticket.opened_by_contact_id is not None and ticket.opened_by_user_id is None
    record = await inbound(engine, message["Message-ID"])
    assert record is not None and (record.outcome, record.ticket_id, record.sender) == ("opened", ticket.id, contact)
    # The owner reads it in the dashboard: by email, with its files (Cc kept, ours left out).
    read = await gql.execute(TICKET, {"id": encode_global_id("Ticket", ticket.id)}, token=owner.token)
    node = read["data"]["node"]
    assert node["status"] == "OPEN" and node["department"] == "TECHNICAL" and node["number"] == number
    assert node["openedBy"] == {"name": "Casey Contact", "email": contact, "isContact": True}
    assert node["ccEmails"] == ["boss@example.com"]
    assert node["messages"] == [{
        "authorKind": "CUSTOMER", "authorName": "Casey Contact",
        "body": "The printer on floor 3 is offline.", "via": "EMAIL",
        "attachments": [{"filename": "error log.txt", "contentType": "text/plain", "size": 14},
                        {"filename": "photo.png", "contentType": "image/png", "size": 264}],
    }]
    async with create_session_factory(engine)() as session:
        assert (await session.scalar(select(Ticket.subject).where(Ticket.id == ticket.id))) == "Printer offline"


async def test_the_billing_address_opens_billing_tickets_and_html_mail_is_read_as_text(
    listener: int, gql: GraphQLClient, engine: AsyncEngine
) -> None:
    _owner, contact = await with_contact(gql)
    message = EmailMessage()
    message["From"] = contact
    message["To"] = BILLING
    message["Subject"] = "Invoice question"
    message["Message-ID"] = make_msgid(domain="client.example")
    message.set_content("<html><head><style>p {color: red}</style></head><body><p>Why is "
                        "<b>INV-1</b> &amp; not INV-2 due?</p><ul><li>one</li><li>two</li></ul>"
                        "<script>alert(1)</script></body></html>", subtype="html")
    code, text = await send(listener, message)
    assert code == 250, text
    ticket = await ticket_by_number(engine, number_in(text))
    assert ticket.department.value == "BILLING"
    async with create_session_factory(engine)() as session:
        body = await session.scalar(select(TicketMessage.body).where(TicketMessage.ticket_id == ticket.id))
    assert body == "Why is INV-1 & not INV-2 due?\n\n- one\n- two"


async def test_a_reply_naming_the_ticket_in_the_subject_becomes_a_message(
    listener: int, gql: GraphQLClient, engine: AsyncEngine
) -> None:
    owner, contact = await with_contact(gql)
    number = await opened_by_mail(listener, contact)
    reply = compose(contact, subject=f"Re: [{number}] Printer offline",
                    body="It works again.\n\nOn Mon, 9 Nov 2026 at 10:30, Linkgate Support\n"
                         "<support@linkgate.example> wrote:\n> Restarted it.\n> Regards")
    code, text = await send(listener, reply)
    assert (code, text) == (250, f"2.0.0 Added to ticket {number}")
    ticket = await ticket_by_number(engine, number)
    assert ticket.status.value == "CUSTOMER_REPLY"
    read = await gql.execute(TICKET, {"id": encode_global_id("Ticket", ticket.id)}, token=owner.token)
    last = read["data"]["node"]["messages"][-1]
    assert (last["body"], last["via"], last["authorName"]) == ("It works again.", "EMAIL", "Casey Contact")
    # A reply from someone the ticket's emails go to (a CC), or a user reading the account's
    # tickets, counts too; the owner writes as itself.
    number2 = await opened_by_mail(listener, contact, cc=("pm@example.com",))
    code, text = await send(listener, compose("pm@example.com", subject=f"RE: [{number2}] x"))
    assert code == 250, text
    reader = await new_sub_account(gql, owner.token, owner.account.id, ["TICKETS_READ"])
    code, text = await send(listener, compose(reader.email, subject=f"[{number2}]"))
    assert code == 250, text
    code, text = await send(listener, compose(owner.email, subject=f"[{number2.lower()}] thanks"))
    assert code == 250, text
    async with create_session_factory(engine)() as session:
        authors = (await session.scalars(
            select(TicketMessage.author_user_id).join(Ticket).where(Ticket.number == number2)
            .order_by(TicketMessage.id))).all()
    assert authors[:2] == [None, None] and all(authors[2:]) and len(authors) == 4


async def test_staff_reply_goes_out_threaded_and_a_reply_to_it_lands_on_the_ticket(
    outbox_url: str, mailbox: tuple[Mailbox, int],  # noqa: F811
) -> None:
    """On a database of its own: the delivery worker sends everything unsent there."""
    box, smtp_port = mailbox
    engine = create_engine(outbox_url)
    async with create_session_factory(engine)() as session:
        await seed_demo(session)
        await session.commit()
    settings = Settings(database_url=outbox_url, secret_key=TEST_SECRET, answer_floor_seconds=0,
                        login_client_max_failures=1_000_000, mail_links_per_client=1_000_000)
    app = create_app(settings, engine=engine)
    port = free_port()
    running = await start_listener(create_session_factory(engine), listener_config(settings),
                                   host="127.0.0.1", port=port)
    try:
        async with client_for(app) as http:
            gql = GraphQLClient(http)
            agent = await gql.login("agent@linkgate.example")
            owner, contact = await with_contact(gql)
            opening = compose(contact, to=BILLING, subject="Wrong VAT number")
            code, text = await send(port, opening)
            assert code == 250, text
            number = number_in(text)
            ticket = await ticket_by_number(engine, number)
            answered = await gql.execute(REPLY, {"input": {
                "ticketId": encode_global_id("Ticket", ticket.id), "body": "Fixed on the next invoice."}},
                token=agent)
            assert answered["data"]["replyToTicket"]["ticket"]["status"] == "ANSWERED"
            report = await deliver_notifications(
                create_session_factory(engine), smtp=SmtpServer("127.0.0.1", smtp_port),
                sender=settings.mail_from, mailboxes=mailboxes_of(settings),
            )
            assert report.failed == 0
            sent = [m for m in box.messages if m["Subject"] == f"[{number}] Wrong VAT number"]
            assert sorted(m["To"] for m in sent) == sorted([contact, owner.email])
            root = f"<ticket-{ticket.id}@linkgate.example>"
            for message in sent:
                assert message["Reply-To"] == BILLING  # the ticket's department's address
                assert message["In-Reply-To"] == root
                assert message["References"].split() == [opening["Message-ID"], root]
            # The contact's mail client answers the notification, subject edited, no [TKT-…].
            notification = next(m for m in sent if m["To"] == contact)
            reply = compose(contact, to=BILLING, subject="Re: Wrong VAT number", body="Thanks!",
                            In_Reply_To=notification["Message-ID"],
                            References=" ".join([*notification["References"].split(),
                                                 notification["Message-ID"]]))
            code, text = await send(port, reply)
            assert (code, text) == (250, f"2.0.0 Added to ticket {number}")
            # By the thread root alone, too (a client that keeps only References).
            code, text = await send(port, compose(contact, subject="Re: VAT", References=root))
            assert (code, text) == (250, f"2.0.0 Added to ticket {number}")
    finally:
        await running.stop()
        await engine.dispose()


async def test_the_same_message_twice_is_stored_once(
    listener: int, gql: GraphQLClient, engine: AsyncEngine
) -> None:
    _owner, contact = await with_contact(gql)
    message = compose(contact, files=(("a.txt", "text/plain", b"a"),))
    first = await send(listener, message)
    before = await counts(engine)
    again = await send(listener, message)
    assert again == (250, f"2.0.0 Already received ({number_in(first[1])})")
    assert created(before, await counts(engine)) == {}
    # Twice at once: one wins, the other hears "already received".
    for attempt in range(3):
        twin = compose(contact, subject=f"Twins {attempt}")
        results = await asyncio.gather(send(listener, twin), send(listener, twin))
        assert sorted(text.split(" (")[0].split(" TKT")[0] for _code, text in results) == [
            "2.0.0 Already received", "2.0.0 Ticket"], results
    assert created(before, await counts(engine)) == {
        "tickets": 3, "ticket_messages": 3, "inbound_messages": 3}
    # Another sender reusing that Message-ID learns no ticket number and changes nothing.
    stranger = compose(unique_email("stranger"))
    del stranger["Message-ID"]
    stranger["Message-ID"] = str(message["Message-ID"])
    assert await send(listener, stranger) == (250, "2.0.0 Already received")
    assert created(before, await counts(engine)) == {
        "tickets": 3, "ticket_messages": 3, "inbound_messages": 3}


# --- what is refused: nothing is created, and the listener serves on ------------------------------


async def test_an_unknown_sender_is_refused(listener: int, gql: GraphQLClient, regular: str, engine: AsyncEngine) -> None:
    before = await counts(engine)
    message = compose(unique_email("stranger"))
    code, text = await send(listener, message)
    assert code == 550 and text.startswith("5.7.1 We cannot tell which account"), text
    assert created(before, await counts(engine)) == {"inbound_messages": 1}
    record = await inbound(engine, message["Message-ID"])
    assert record is not None and (record.outcome, record.reason, record.ticket_id) == (
        "refused", "unknown sender", None)
    # Refused messages are decided again: once the sender is a contact, the same message
    # opens its ticket, and its one record says so.
    owner = await new_customer(gql)
    await add_contact(gql, owner.token, owner.account.id, email=message["From"].addresses[0].addr_spec)
    before = await counts(engine)
    code, text = await send(listener, message)
    assert code == 250 and "opened" in text, text
    record = await inbound(engine, message["Message-ID"])
    assert record is not None and (record.outcome, record.reason) == ("opened", None)
    assert created(before, await counts(engine)) == {"tickets": 1, "ticket_messages": 1}
    # Staff never write by email: a staff From is anyone's to type.
    code, _text = await send(listener, compose("agent@linkgate.example"))
    assert code == 550
    await still_serving(listener, regular)


async def test_a_sender_on_two_accounts_is_refused_but_may_reply(
    listener: int, gql: GraphQLClient, regular: str, engine: AsyncEngine
) -> None:
    first, contact = await with_contact(gql)
    second = await new_customer(gql)
    await add_contact(gql, second.token, second.account.id, email=contact)
    before = await counts(engine)
    code, text = await send(listener, compose(contact))
    assert code == 550 and "which account" in text, text
    assert created(before, await counts(engine)) == {"inbound_messages": 1}
    # An owner of two accounts likewise; a reply names its ticket, so that is fine.
    await register(gql, first.token)
    code, _text = await send(listener, compose(first.email))
    assert code == 550
    opened = await gql.execute(
        "mutation($i: OpenTicketInput!) { openTicket(input: $i) { ticket { number } } }",
        {"i": {"accountId": first.account.id, "subject": "Slow site", "body": "Since noon."}},
        token=first.token)
    number = opened["data"]["openTicket"]["ticket"]["number"]
    assert await send(listener, compose(first.email, subject=f"Re: [{number}] Slow site")) == (
        250, f"2.0.0 Added to ticket {number}")
    await still_serving(listener, regular)


async def test_a_spoofed_reply_to_a_ticket_the_sender_cannot_see_is_refused(
    listener: int, gql: GraphQLClient, regular: str, engine: AsyncEngine
) -> None:
    owner, contact = await with_contact(gql)
    number = await opened_by_mail(listener, contact)
    ticket = await ticket_by_number(engine, number)
    _other, stranger = await with_contact(gql)  # a contact of another account
    no_tickets = await new_sub_account(gql, owner.token, owner.account.id, ["INVOICES_READ"])
    before = await counts(engine)
    attempts = [
        compose(stranger, subject=f"Re: [{number}] Printer offline", body="Send me the files."),
        compose(unique_email("spoof"), subject=f"[{number}]"),
        compose(stranger, subject="Re: Printer", In_Reply_To=f"<ticket-{ticket.id}@linkgate.example>"),
        compose(no_tickets.email, subject=f"[{number}]"),  # on the account, without TICKETS_READ
        compose(contact, subject="[TKT-999999999] a ticket that does not exist"),
    ]
    for attempt in attempts:
        code, text = await send(listener, attempt)
        assert code == 550 and text.startswith("5.7.1 This message names no ticket"), text
    assert created(before, await counts(engine)) == {"inbound_messages": len(attempts)}
    # Someone else's Message-ID in In-Reply-To (not ours) is no reference: a new ticket.
    code, text = await send(listener, compose(contact, In_Reply_To="<ticket-1@elsewhere.example>"))
    assert code == 250 and "opened" in text
    await still_serving(listener, regular)


async def test_a_reply_to_a_closed_ticket_is_refused(
    listener: int, gql: GraphQLClient, regular: str, engine: AsyncEngine
) -> None:
    owner, contact = await with_contact(gql)
    number = await opened_by_mail(listener, contact)
    ticket = await ticket_by_number(engine, number)
    closed = await gql.execute(CLOSE, {"input": {"ticketId": encode_global_id("Ticket", ticket.id)}},
                               token=owner.token)
    assert closed["data"]["closeTicket"]["ticket"]["status"] == "CLOSED"
    before = await counts(engine)
    code, text = await send(listener, compose(contact, subject=f"Re: [{number}] Printer offline"))
    assert code == 550 and text == (f"5.7.1 Ticket {number} is closed: write a new email (not a "
                                    "reply) to open a new ticket"), text
    assert created(before, await counts(engine)) == {"inbound_messages": 1}
    await still_serving(listener, regular)


MALFORMED = {
    "multipart without a boundary": b"Content-Type: multipart/mixed\r\n\r\nhello\r\n",
    "no closing boundary": (b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\n"
                            b"Content-Type: text/plain\r\n\r\nhi\r\n"),
    "broken base64": (b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\n"
                      b"Content-Type: text/plain\r\n\r\nhi\r\n--XX\r\nContent-Type: application/pdf\r\n"
                      b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; "
                      b"filename=a.pdf\r\n\r\n!!!notbase64***=\r\n--XX--\r\n"),
    "unknown charset": b"Content-Type: text/plain; charset=x-nonsense\r\n\r\nhi\r\n",
    "headers that never end": b"This line is not a header\r\nSubject: x\r\n\r\nhi\r\n",
    "multiparts nested 3,000 deep": b"".join(
        f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n".encode() for i in range(3000)
    ) + b"Content-Type: text/plain\r\n\r\nhi\r\n" + b"".join(f"--b{i}--\r\n".encode() for i in reversed(range(3000))),
}


@pytest.mark.parametrize("shape", list(MALFORMED))
async def test_malformed_mime_is_refused_with_554(
    shape: str, listener: int, regular: str, engine: AsyncEngine
) -> None:
    contact = regular
    raw = (f"From: {contact}\r\nTo: {SUPPORT}\r\nSubject: broken\r\nMessage-ID: "
           f"{make_msgid(domain='client.example')}\r\nMIME-Version: 1.0\r\n").encode() + MALFORMED[shape]
    before = await counts(engine)
    code, text = await send(listener, raw, mail_from=contact, recipients=[SUPPORT])
    assert code == 554 and text.startswith("5.6.0 The message is not well-formed MIME"), text
    assert created(before, await counts(engine)) == {}
    await still_serving(listener, regular)


async def test_no_from_address_is_malformed(listener: int, regular: str, engine: AsyncEngine) -> None:
    before = await counts(engine)
    for header in (b"", b"From: <<<>>>\r\n", b"From: a@one.example, b@two.example\r\n",
                   # Two From headers: the one a DMARC check read may not be the one used here.
                   f"From: {regular}\r\nFrom: a@one.example\r\n".encode()):
        raw = header + f"To: {SUPPORT}\r\nSubject: who?\r\n\r\nhi\r\n".encode()
        code, text = await send(listener, raw, mail_from="a@one.example", recipients=[SUPPORT])
        assert (code, text) == (554, "5.6.0 The message has no single From address; nothing was stored")
    assert created(before, await counts(engine)) == {}
    await still_serving(listener, regular)


async def test_a_50_mb_message_is_refused_with_552(
    listener: int, regular: str, engine: AsyncEngine, settings: Settings
) -> None:
    contact = regular
    before = await counts(engine)
    # Announced (ESMTP SIZE): refused before a byte of it is sent.
    code, text = await send(listener, b"x", mail_from=contact, recipients=[SUPPORT], size=FIFTY_MB)
    assert code == 552, text
    # Not announced: aiosmtpd reads it to the end keeping nothing past the limit, then 552.
    line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n"
    raw = (f"From: {contact}\r\nTo: {SUPPORT}\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
           "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           ).encode() + line * (FIFTY_MB // len(line))
    assert len(raw) > FIFTY_MB - len(line) > settings.inbound_max_bytes
    code, text = await send(listener, raw, mail_from=contact, recipients=[SUPPORT])
    assert code == 552, text
    assert created(before, await counts(engine)) == {}
    await still_serving(listener, regular)


async def test_a_client_that_hangs_up_mid_data_creates_nothing(
    listener: int, regular: str, engine: AsyncEngine
) -> None:
    contact = regular
    before = await counts(engine)

    def hang_up_mid_data() -> None:
        with socket.create_connection(("127.0.0.1", listener), timeout=10) as raw:
            replies = raw.makefile("rb")

            def expect(prefix: bytes) -> None:
                line = replies.readline()
                while line[3:4] == b"-":  # a multi-line reply
                    line = replies.readline()
                assert line.startswith(prefix), line

            expect(b"220")
            for command, reply in ((b"EHLO client.example", b"250"), (f"MAIL FROM:<{contact}>".encode(), b"250"),
                                   (f"RCPT TO:<{SUPPORT}>".encode(), b"250"), (b"DATA", b"354")):
                raw.sendall(command + b"\r\n")
                expect(reply)
            raw.sendall(f"From: {contact}\r\nTo: {SUPPORT}\r\nSubject: half\r\n\r\nThe first half "
                        "of a message and then".encode())
        # closed here, before the line with a lone dot

    await asyncio.to_thread(hang_up_mid_data)
    await asyncio.sleep(0.2)
    assert created(before, await counts(engine)) == {}
    await still_serving(listener, regular)


async def test_mail_for_other_addresses_is_refused_no_relay(
    listener: int, regular: str, engine: AsyncEngine
) -> None:
    contact = regular
    before = await counts(engine)
    code, text = await send(listener, compose(contact, to="someone@elsewhere.example"))
    assert code == 550 and text.startswith("5.1.1 No mailbox someone@elsewhere.example here"), text
    assert created(before, await counts(engine)) == {}
    await still_serving(listener, regular)


async def test_automatic_replies_and_bounces_are_dropped(
    listener: int, regular: str, engine: AsyncEngine
) -> None:
    contact = regular
    before = await counts(engine)
    for message, mail_from in (
        (compose(contact, subject="Out of office", Auto_Submitted="auto-replied"), None),
        (compose(contact, subject="Delivery failed"), ""),  # MAIL FROM:<>, a bounce
    ):
        assert await send(listener, message, mail_from=mail_from) == (250, "2.0.0 Automatic reply ignored")
    after = await counts(engine)
    assert created(before, after) == {"inbound_messages": 2}
    await still_serving(listener, regular)


async def test_text_limits_and_attachment_count(
    listener: int, regular: str, engine: AsyncEngine, settings: Settings
) -> None:
    contact = regular
    before = await counts(engine)
    long = compose(contact, body="x" * (settings.max_ticket_body_chars + 1))
    code, text = await send(listener, long)
    assert code == 552 and f"the limit is {settings.max_ticket_body_chars:,}" in text, text
    empty = compose(contact, body="   \n")
    assert (await send(listener, empty))[0] == 550
    many = compose(contact, files=tuple((f"f{i}.txt", "text/plain", b"x") for i in range(21)))
    code, text = await send(listener, many)
    assert (code, text) == (552, "5.3.4 At most 20 attached files per message")
    cc = compose(contact, cc=tuple(f"cc{i}@example.com" for i in range(11)))
    code, text = await send(listener, cc)
    assert (code, text) == (550, "5.7.1 At most 10 CC addresses (Cc)")
    assert created(before, await counts(engine)) == {"inbound_messages": 4}
    # Files alone, no text: kept, with a line that says so.
    code, text = await send(listener, compose(contact, body="", files=(("scan.pdf", "application/pdf", b"%PDF"),)))
    assert code == 250, text
    await still_serving(listener, regular)


async def test_an_unexpected_failure_is_451_and_the_listener_serves_on(
    gql: GraphQLClient, engine: AsyncEngine, settings: Settings, tmp_path: Path
) -> None:
    broken = create_engine(f"sqlite+aiosqlite:///{tmp_path}/missing/dir/x.db")
    port = free_port()
    running: Listener = await start_listener(create_session_factory(broken), listener_config(settings),
                                             host="127.0.0.1", port=port)
    try:
        _owner, contact = await with_contact(gql)
        for _ in range(2):
            assert await send(port, compose(contact)) == (451, "4.3.0 Temporary failure: try again later")
    finally:
        await running.stop()
        await broken.dispose()


# --- the command -------------------------------------------------------------------------------


def test_receive_mail_command(tmp_path: Path, outbox_url: str) -> None:  # noqa: F811
    port = free_port()
    env = clean_environment(LINKGATE_DATABASE_URL=outbox_url, LINKGATE_SUPPORT_ADDRESS="help@northwind.example")
    process = subprocess.Popen([*LINKGATE, "receive-mail", "--port", str(port)], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith(f"Receiving mail on 127.0.0.1:{port} for help@northwind.example (TECHNICAL)"), first
        code, text = _transact(port, wire(compose("nobody@example.com", to="help@northwind.example")),
                               "nobody@example.com", ["help@northwind.example"])
        assert code == 550 and "which account" in text
        assert _transact(port, b"x", "a@example.com", [SUPPORT])[0] == 550  # not ours any more
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        assert process.returncode == 0 and "Mail listener stopped." in output, output
        assert "Traceback" not in output
    finally:
        if process.poll() is None:
            process.kill()


def test_receive_mail_refuses_an_unmigrated_database_and_bad_settings(tmp_path: Path, empty_database: str) -> None:
    def run(*args: str, **settings: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*LINKGATE, "receive-mail", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60, env=clean_environment(**settings))

    unmigrated = run("--port", str(free_port()), LINKGATE_DATABASE_URL=empty_database)
    assert unmigrated.returncode == 2 and "not migrated" in unmigrated.stderr, unmigrated.stderr
    bad = run(LINKGATE_BILLING_ADDRESS="support@linkgate.example")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert "LINKGATE_BILLING_ADDRESS: cannot be LINKGATE_SUPPORT_ADDRESS" in bad.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = run("--port", str(taken.getsockname()[1]), LINKGATE_DATABASE_URL=empty_database)
    assert busy.returncode == 2 and "cannot listen on 127.0.0.1:" in busy.stderr, busy.stderr


# --- reading the text --------------------------------------------------------------------------


def test_quoted_text_and_html() -> None:
    assert strip_quoted("Thanks!\n\nOn Tue, 10 Nov 2026, Support wrote:\n> old\n> text") == "Thanks!"
    assert strip_quoted("Yes.\n\n-----Original Message-----\nFrom: x") == "Yes."
    assert strip_quoted("Top.\n\n________________________________\nFrom: Support") == "Top."
    assert strip_quoted("> quoted\nanswer inline\n> more\n\n> tail\n>") == "> quoted\nanswer inline"
    assert strip_quoted("On Mon someone wrote:\n> only a quote") == "On Mon someone wrote:\n> only a quote"
    assert html_to_text("<p>A&nbsp;&lt;b&gt;</p><div>B<br>C</div>") == "A\xa0<b>\n\nB\nC"
