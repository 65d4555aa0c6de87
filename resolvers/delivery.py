"""The delivery worker: sends the notification outbox over SMTP, one claimed row at a time.

Each message is claimed, sent and marked in one short transaction of its own:

    UPDATE notifications SET attempts = attempts + 1
     WHERE id = (SELECT id … WHERE sent_at IS NULL … ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING …

On PostgreSQL the row stays locked until the outcome commits, so a second worker skips it and
takes the next one; on SQLite the UPDATE takes the database's single write lock, so a second
worker waits and then sees the row as sent. A send that fails commits ``attempts`` and
``last_error`` and leaves the row queued for the next run; a worker that dies mid-send rolls
back, so the row is retried too (the one window for a duplicate is a crash between the SMTP
server accepting a message and the commit; the stable ``Message-ID`` lets mail systems drop it).
Without SMTP configured, rows are only marked as sent, as DESIGN §1 asks.

A message is the row's plain text, except an issued invoice's email (``resolvers/invoice_emails``):
that one is text and HTML (the same text, rendered) as alternatives, with the invoice's PDF
attached, rendered at send time from the invoice's snapshot. Other mail stays plain text: for
security mail, plain links are the point.

A ticket's email (``related_type`` "ticket") is threaded: ``Reply-To`` is the inbound address
of the ticket's department (``linkgate receive-mail`` takes the reply), and ``In-Reply-To`` /
``References`` name the ticket's thread root ``<ticket-{id}@domain>`` (after the Message-ID of
the email that opened it, when it came by email), so every email about one ticket lands in one
thread, and a reply names its ticket even with the ``[TKT-…]`` taken out of the subject.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
from sqlalchemy import case, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from models.base import utcnow
from models.notifications import Notification
from models.tickets import InboundMessage, Ticket
from resolvers.invoice_documents import Printing, load_document, render_pdf
from resolvers.invoice_emails import RELATED_TYPE, is_issued_email
from resolvers.ticket_mutations import RELATED_TYPE as TICKET_RELATED_TYPE
from resolvers.tunables import Tunables

if TYPE_CHECKING:
    from resolvers.inbound_mail import Mailboxes

logger = logging.getLogger("linkgate.delivery")

# Failures after which the connection is not worth using for the rest of the run.
_CONNECTION_FAILURES = (
    aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError,
    aiosmtplib.SMTPAuthenticationError, aiosmtplib.SMTPHeloError, OSError,
)


# The single-use token of a link made by ``resolvers.outbox.link_to``.
_LINK_TOKEN = re.compile(r"#token=[^\s]+")


def redact_link_tokens(body: str) -> str:
    """What the outbox keeps of a body once it is sent: the links' tokens are the
    recipient's alone, and only their digests are kept (DESIGN: "only its digest is stored")."""
    return _LINK_TOKEN.sub("#token=[sent]", body)


@dataclass(frozen=True)
class SmtpServer:
    hostname: str
    port: int
    username: str | None = None
    password: str | None = None
    use_tls: bool = False  # smtps:// (implicit TLS)
    start_tls: bool | None = None  # None: STARTTLS when the server offers it

    @classmethod
    def from_url(cls, url: str) -> SmtpServer:
        """``smtp://[user:pass@]host[:port][?starttls=true|false]`` or ``smtps://…``."""
        shape = "the SMTP URL must look like smtp://user:password@host:port"
        parts = urlsplit(url)
        try:
            port = parts.port  # the parser's own message can quote part of the password
        except ValueError:
            raise ValueError(f"{shape}, with a port of 1 to 65535 (encode @ / # ? in the password "
                             "as %40 %2F %23 %3F)") from None
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(shape)
        implicit_tls = parts.scheme == "smtps"
        start_tls = parse_qs(parts.query).get("starttls", [None])[0]
        return cls(
            hostname=parts.hostname, port=port or (465 if implicit_tls else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=implicit_tls,
            start_tls=None if start_tls is None else start_tls.lower() in ("1", "true", "yes"),
        )


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    marked: int = 0  # no SMTP server configured: marked as sent without sending


@dataclass(frozen=True)
class _Claimed:
    id: int
    recipient: str
    subject: str
    body: str
    attempts: int
    category: str
    related_type: str | None
    related_id: int | None


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # "maintype/subtype"
    data: bytes


@dataclass(frozen=True)
class Enclosures:
    """What a message carries besides its plain text."""

    html: str | None = None
    attachments: tuple[Attachment, ...] = ()
    reply_to: str | None = None
    # Message-IDs this one follows, oldest first; the last is its In-Reply-To.
    references: tuple[str, ...] = ()


# A URL in a body: up to whitespace, not ending in punctuation that closes a sentence.
_URL = re.compile(r"https?://[^\s<>\"]+[^\s<>\".,;:!?)\]']")


def plain_to_html(body: str) -> str:
    """The plain text as an HTML document: escaped, paragraphs at blank lines, links clickable.
    Nothing is added: the HTML part says what the text part says."""
    paragraphs = [part.strip("\n") for part in re.split(r"\n[ \t]*\n", body.strip()) if part.strip()]

    def paragraph(text: str) -> str:
        # URLs are found in the raw text, then every piece is escaped on its own.
        pieces, last = [], 0
        for url in _URL.finditer(text):
            link = html.escape(url.group(0))
            pieces += [html.escape(text[last:url.start()]), f'<a href="{link}">{link}</a>']
            last = url.end()
        pieces.append(html.escape(text[last:]))
        return "<p>" + "".join(pieces).replace("\n", "<br>\n") + "</p>"

    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>\n'
        '<body style="font-family: Helvetica, Arial, sans-serif; font-size: 14px; line-height: 1.5; '
        'color: #212529;">\n' + "\n".join(paragraph(part) for part in paragraphs) + "\n</body></html>\n"
    )


def mail_domain(sender: str) -> str:
    """The right-hand side of the Message-IDs we make: the domain of ``LINKGATE_MAIL_FROM``."""
    domain = parseaddr(sender)[1].rpartition("@")[2]
    return domain if re.fullmatch(r"[A-Za-z0-9.-]+", domain) else "linkgate.invalid"


def message_id(notification_id: int, sender: str) -> str:
    """The same for every attempt at one outbox row, so a copy re-sent after a crash is
    recognised as the same message."""
    return f"<notification-{notification_id}@{mail_domain(sender)}>"


def ticket_thread_id(ticket_id: int, sender: str) -> str:
    """The root every email about one ticket follows (``In-Reply-To``/``References``): no
    message carries it, and mail clients thread by it all the same."""
    return f"<ticket-{ticket_id}@{mail_domain(sender)}>"


def build_message(claimed: _Claimed, sender: str, enclosures: Enclosures = Enclosures()) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = claimed.recipient
    message["Subject"] = claimed.subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = message_id(claimed.id, sender)
    message["X-Linkgate-Notification"] = str(claimed.id)
    if enclosures.reply_to:
        message["Reply-To"] = enclosures.reply_to
    if enclosures.references:
        message["In-Reply-To"] = enclosures.references[-1]
        message["References"] = " ".join(enclosures.references)
    message.set_content(claimed.body)
    if enclosures.html is not None:
        message.add_alternative(enclosures.html, subtype="html")
    for attachment in enclosures.attachments:
        maintype, subtype = attachment.content_type.split("/", 1)
        message.add_attachment(attachment.data, maintype=maintype, subtype=subtype,
                               filename=attachment.filename)
    return message


async def enclosures_for(
    session: AsyncSession, claimed: _Claimed, printing: Printing, *, sender: str = "",
    mailboxes: Mailboxes | None = None,
) -> Enclosures:
    """An issued invoice's email gets its HTML part and the invoice PDF; a ticket's email its
    threading headers (and ``Reply-To`` when ``mailboxes`` are known); any other row, none."""
    if claimed.related_type == TICKET_RELATED_TYPE and claimed.related_id is not None:
        return await _ticket_threading(session, claimed.related_id, sender, mailboxes)
    if claimed.related_type != RELATED_TYPE or claimed.related_id is None:
        return Enclosures()
    document = await load_document(session, claimed.related_id)
    if document is None or not is_issued_email(
        category=claimed.category, subject=claimed.subject, related_type=claimed.related_type,
        invoice=document.invoice,
    ):
        return Enclosures()
    pdf = await asyncio.to_thread(render_pdf, document, printing)
    return Enclosures(html=plain_to_html(claimed.body),
                      attachments=(Attachment(document.filename, "application/pdf", pdf),))


async def _ticket_threading(
    session: AsyncSession, ticket_id: int, sender: str, mailboxes: Mailboxes | None
) -> Enclosures:
    department = await session.scalar(select(Ticket.department).where(Ticket.id == ticket_id))
    if department is None:  # the ticket is gone (its account was deleted)
        return Enclosures()
    opening = await session.scalar(
        select(InboundMessage.message_id).where(
            InboundMessage.ticket_id == ticket_id, InboundMessage.outcome == "opened"
        ).limit(1)
    )
    root = ticket_thread_id(ticket_id, sender)
    return Enclosures(
        reply_to=mailboxes.address_for(department) if mailboxes is not None else None,
        references=(opening, root) if opening else (root,),
    )


async def _claim_next(session: AsyncSession, *, after_id: int, max_attempts: int) -> _Claimed | None:
    table = Notification.__table__.c
    due = (table.sent_at.is_(None), table.attempts < max_attempts, table.id > after_id)
    # A plain read first: an idle worker never takes a lock (SQLite's is the whole database).
    if await session.scalar(select(table.id).where(*due).limit(1)) is None:
        return None
    next_id = (
        select(table.id).where(*due).order_by(table.id).limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    statement = (
        update(Notification).where(table.id == next_id)
        .values(attempts=table.attempts + 1)
        .returning(table.id, table.recipient, table.subject, table.body, table.attempts,
                   table.category, table.related_type, table.related_id)
    )
    row = (await session.execute(statement)).first()
    return None if row is None else _Claimed(*row)


async def _finish(session: AsyncSession, claimed: _Claimed, error: str | None) -> None:
    values: dict[str, Any] = (
        {"sent_at": utcnow(), "last_error": None, "body": redact_link_tokens(claimed.body)}
        if error is None else {"last_error": error[:500]}
    )
    await session.execute(update(Notification).where(Notification.id == claimed.id).values(**values))
    await session.commit()


async def deliver_notifications(
    sessions: async_sessionmaker[AsyncSession],
    *,
    smtp: SmtpServer | None,
    sender: str,
    max_attempts: int = 10,
    limit: int | None = None,
    printing: Printing | None = None,
    mailboxes: Mailboxes | None = None,
) -> DeliveryReport:
    """Work through the unsent outbox once, oldest first; each row is tried at most once a run.

    Rows that failed ``max_attempts`` times stay in the outbox (unsent, with their last error)
    but are no longer picked up automatically. ``printing`` renders the invoice PDFs attached
    to invoice emails; without it they print no enrollment token (``serve`` and
    ``send-notifications`` pass the settings'). ``mailboxes`` give a ticket's emails their
    ``Reply-To`` (the inbound address of its department).
    """
    printing = printing or Printing.of(Tunables())
    report = DeliveryReport()
    client: aiosmtplib.SMTP | None = None
    last_id = 0
    try:
        while limit is None or report.sent + report.failed + report.marked < limit:
            async with sessions() as session:
                claimed = await _claim_next(session, after_id=last_id, max_attempts=max_attempts)
                if claimed is None:
                    await session.rollback()
                    break
                last_id = claimed.id
                if smtp is None:
                    logger.info("no SMTP server: marking notification %s to %s as sent",
                                claimed.id, claimed.recipient)
                    await _finish(session, claimed, None)
                    report.marked += 1
                    continue
                try:
                    enclosures = await enclosures_for(session, claimed, printing, sender=sender,
                                                      mailboxes=mailboxes)
                except Exception as error:  # one row that cannot be rendered must not stop the rest
                    logger.exception("notification %s (attempt %s) not sent: its attachment "
                                     "could not be made", claimed.id, claimed.attempts)
                    await _finish(session, claimed, f"attachment: {type(error).__name__}: {error}")
                    report.failed += 1
                    continue
                try:
                    if client is None:
                        client = aiosmtplib.SMTP(
                            hostname=smtp.hostname, port=smtp.port, username=smtp.username,
                            password=smtp.password, use_tls=smtp.use_tls, start_tls=smtp.start_tls,
                            timeout=30,
                        )
                        await client.connect()
                    await client.send_message(build_message(claimed, sender, enclosures))
                except (aiosmtplib.SMTPException, OSError) as error:
                    logger.warning("notification %s (attempt %s) not sent: %s",
                                   claimed.id, claimed.attempts, error)
                    await _finish(session, claimed, f"{type(error).__name__}: {error}")
                    report.failed += 1
                    if isinstance(error, _CONNECTION_FAILURES):
                        break  # the rest stay queued, their attempts untouched
                    continue
                await _finish(session, claimed, None)
                report.sent += 1
    finally:
        if client is not None and client.is_connected:
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):  # pragma: no cover - best effort
                client.close()
    return report


async def run_delivery_loop(
    sessions: async_sessionmaker[AsyncSession],
    *,
    smtp: SmtpServer | None,
    sender: str,
    max_attempts: int,
    interval_seconds: float,
    printing: Printing | None = None,
    mailboxes: Mailboxes | None = None,
) -> None:
    """The optional background loop of ``linkgate serve``: deliver, sleep, repeat, until
    cancelled. Every replica may run it; the per-row claims keep them from sending twice."""
    while True:
        try:
            report = await deliver_notifications(
                sessions, smtp=smtp, sender=sender, max_attempts=max_attempts, printing=printing,
                mailboxes=mailboxes,
            )
            if report.sent or report.failed or report.marked:
                logger.info("notification delivery: %s", report)
        except asyncio.CancelledError:
            raise
        except Exception:  # a database hiccup must not end the loop
            logger.exception("notification delivery run failed")
        await asyncio.sleep(interval_seconds)


@dataclass(frozen=True, slots=True)
class OutboxBacklog:
    unsent: int  # still to be sent (fewer than the maximum attempts so far)
    failed: int  # given up on: unsent after the maximum attempts, kept for a person to see
    oldest_unsent_age_seconds: float  # 0 when nothing is waiting


async def outbox_backlog(executor: AsyncSession | AsyncConnection, *, max_attempts: int) -> OutboxBacklog:
    """What the outbox holds, in one statement (the metrics read it at every scrape). Rows
    given up on are counted apart and kept out of the age, so one stuck row does not look
    like a worker that stopped."""
    table = Notification.__table__.c
    pending = table.attempts < max_attempts
    statement = select(
        func.count(case((pending, 1))),
        func.count(case((~pending, 1))),
        func.min(case((pending, table.created_at))),
    ).where(table.sent_at.is_(None))
    unsent, failed, oldest = (await executor.execute(statement)).one()
    if oldest is None:
        age = 0.0
    else:
        if isinstance(oldest, str):  # SQLite, should a driver hand the text back
            oldest = datetime.fromisoformat(oldest)
        if oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=timezone.utc)
        age = max(0.0, (utcnow() - oldest).total_seconds())
    return OutboxBacklog(unsent=int(unsent or 0), failed=int(failed or 0), oldest_unsent_age_seconds=age)
