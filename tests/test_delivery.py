"""The delivery worker and ``linkgate send-notifications`` against a real local SMTP server.

These run on a database of their own (the shared one holds the demo's unsent outbox, which
other tests read), of the same kind as the run: SQLite, or a new PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from linkgate.app import create_app
from linkgate.migrations import upgrade_database
from linkgate.settings import ConfigurationError, Settings, load_settings
from models.database import create_engine, create_session_factory
from models.notifications import Notification
from resolvers.delivery import SmtpServer, deliver_notifications, message_id, plain_to_html
from models.contacts import EmailPreference
from resolvers.outbox import queue_email
from tests.conftest import TEST_SECRET
from tests.test_cli import run

SENDER = "Linkgate <notifications@linkgate.example>"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Mailbox:
    """An aiosmtpd handler keeping every message it accepts; some recipients can be refused."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.refuse: set[str] = set()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address in self.refuse:
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(0.005)  # a little latency, so concurrent workers overlap
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"

    def ids(self) -> list[int]:
        return sorted(int(message["X-Linkgate-Notification"]) for message in self.messages)


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    handler = Mailbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture
def outbox_url(empty_database: str) -> str:  # noqa: F811
    upgrade_database(empty_database)
    return empty_database


@pytest.fixture
async def sessions(outbox_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(outbox_url)
    yield create_session_factory(engine)
    await engine.dispose()


async def queue(sessions: async_sessionmaker[AsyncSession], *recipients: str) -> list[int]:
    async with sessions() as session:
        rows = [
            (await queue_email(session, recipients=[recipient], category=EmailPreference.SUPPORT,
                               subject=f"Hello {recipient}", body=f"Dear {recipient},\n\nA reply.",
                               account_id=None))[0]
            for recipient in recipients
        ]
        await session.commit()
        return [row.id for row in rows]


async def outbox(sessions: async_sessionmaker[AsyncSession]) -> dict[int, Notification]:
    async with sessions() as session:
        return {row.id: row for row in await session.scalars(select(Notification).order_by(Notification.id))}


def smtp(port: int) -> SmtpServer:
    return SmtpServer(hostname="127.0.0.1", port=port)


async def test_each_queued_email_arrives_once_and_is_marked_sent(
    sessions: async_sessionmaker[AsyncSession], mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    ids = await queue(sessions, "a@example.com", "b@example.com", "c@example.com")
    report = await deliver_notifications(sessions, smtp=smtp(port), sender=SENDER)
    assert (report.sent, report.failed, report.marked) == (3, 0, 0)
    assert box.ids() == ids
    first = next(m for m in box.messages if m["To"] == "a@example.com")
    assert first["Subject"] == "Hello a@example.com" and first["From"] == SENDER
    # Plain text alone (only an issued invoice's email has HTML and a PDF: test_invoice_emails).
    assert not first.is_multipart() and first.get_content_type() == "text/plain"
    assert "A reply." in first.get_payload()
    # The same on every attempt at the row: a copy re-sent after a crash is recognisably one.
    assert first["Message-ID"] == f"<notification-{ids[0]}@linkgate.example>"
    rows = await outbox(sessions)
    assert all(row.sent_at is not None and row.attempts == 1 and row.last_error is None for row in rows.values())
    # A second run has nothing to do: nothing is sent twice.
    again = await deliver_notifications(sessions, smtp=smtp(port), sender=SENDER)
    assert (again.sent, again.failed) == (0, 0) and len(box.messages) == 3


async def test_a_down_server_leaves_messages_queued_with_attempts_counted(
    sessions: async_sessionmaker[AsyncSession], mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    ids = await queue(sessions, "a@example.com", "b@example.com")
    down = await deliver_notifications(sessions, smtp=smtp(free_port()), sender=SENDER)
    assert (down.sent, down.failed) == (0, 1)  # the first fails; the run stops there
    rows = await outbox(sessions)
    assert rows[ids[0]].attempts == 1 and rows[ids[0]].last_error and rows[ids[0]].sent_at is None
    assert rows[ids[1]].attempts == 0 and rows[ids[1]].sent_at is None
    # The next run, with the server back, delivers everything exactly once.
    up = await deliver_notifications(sessions, smtp=smtp(port), sender=SENDER)
    assert up.sent == 2 and box.ids() == ids
    rows = await outbox(sessions)
    assert [(rows[i].attempts, rows[i].sent_at is not None, rows[i].last_error) for i in ids] == [
        (2, True, None), (1, True, None)
    ]


async def test_a_refused_recipient_fails_alone_and_is_never_lost(
    sessions: async_sessionmaker[AsyncSession], mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    box.refuse.add("gone@example.com")
    ids = await queue(sessions, "a@example.com", "gone@example.com", "c@example.com")
    report = await deliver_notifications(sessions, smtp=smtp(port), sender=SENDER, max_attempts=2)
    assert (report.sent, report.failed) == (2, 1)
    assert box.ids() == [ids[0], ids[2]]
    for _ in range(3):  # retried until max_attempts, then left alone, still in the outbox
        await deliver_notifications(sessions, smtp=smtp(port), sender=SENDER, max_attempts=2)
    refused = (await outbox(sessions))[ids[1]]
    assert refused.attempts == 2 and refused.sent_at is None and "550" in (refused.last_error or "")
    assert len(box.messages) == 2


async def test_two_workers_never_send_one_message_twice(
    outbox_url: str, sessions: async_sessionmaker[AsyncSession], mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    ids = await queue(sessions, *(f"user{i}@example.com" for i in range(24)))
    engines = [create_engine(outbox_url) for _ in range(2)]
    try:
        reports = await asyncio.gather(*(
            deliver_notifications(create_session_factory(engine), smtp=smtp(port), sender=SENDER)
            for engine in engines
        ))
    finally:
        for engine in engines:
            await engine.dispose()
    assert sum(report.sent for report in reports) == len(ids)
    assert box.ids() == ids  # every message once: none missing, none twice
    assert all(row.attempts == 1 for row in (await outbox(sessions)).values())


async def test_without_smtp_the_worker_only_marks_what_it_would_have_sent(
    sessions: async_sessionmaker[AsyncSession], mailbox: tuple[Mailbox, int]
) -> None:
    box, _port = mailbox
    await queue(sessions, "a@example.com", "b@example.com")
    report = await deliver_notifications(sessions, smtp=None, sender=SENDER)
    assert (report.marked, report.sent) == (2, 0)
    assert box.messages == []
    assert all(row.sent_at is not None for row in (await outbox(sessions)).values())


async def test_send_notifications_command(
    tmp_path: Path, outbox_url: str, sessions: async_sessionmaker[AsyncSession],
    mailbox: tuple[Mailbox, int],
) -> None:
    box, port = mailbox
    env = {"LINKGATE_DATABASE_URL": outbox_url, "LINKGATE_SECRET_KEY": TEST_SECRET}
    await queue(sessions, "a@example.com", "b@example.com")
    down = await asyncio.to_thread(run, ["send-notifications"], tmp_path,
                                   LINKGATE_SMTP_URL=f"smtp://127.0.0.1:{free_port()}", **env)
    assert down.returncode == 1 and "1 failed" in down.stdout and "Traceback" not in down.stderr
    sent = await asyncio.to_thread(run, ["send-notifications"], tmp_path,
                                   LINKGATE_SMTP_URL=f"smtp://127.0.0.1:{port}", **env)
    assert sent.returncode == 0, sent.stderr
    assert "Sent 2" in sent.stdout and sorted(m["To"] for m in box.messages) == ["a@example.com", "b@example.com"]
    await queue(sessions, "c@example.com")
    marked = await asyncio.to_thread(run, ["send-notifications"], tmp_path, **env)
    assert marked.returncode == 0 and "marked 1" in marked.stdout and len(box.messages) == 2
    bad = await asyncio.to_thread(run, ["send-notifications"], tmp_path, LINKGATE_SMTP_URL="http://x", **env)
    assert bad.returncode != 0 and "LINKGATE_SMTP_URL" in bad.stderr and "Traceback" not in bad.stderr
    # Sending renders invoice PDFs, which print enrollment tokens: no key, no sending.
    await queue(sessions, "d@example.com")
    keyless = await asyncio.to_thread(run, ["send-notifications"], tmp_path,
                                      LINKGATE_DATABASE_URL=outbox_url,
                                      LINKGATE_SMTP_URL=f"smtp://127.0.0.1:{port}")
    assert keyless.returncode == 2 and keyless.stderr.count("\n") == 1, keyless.stderr
    assert "LINKGATE_SECRET_KEY" in keyless.stderr and len(box.messages) == 2


def test_plain_text_as_html() -> None:
    body = ('Hello <Zoë> & co,\n\nPay: https://x.example/invoices/INV-1?a=1&b=2.\nThanks\n\n'
            '"https://x.example/q" <https://x.example/a>\n')
    html = plain_to_html(body)
    assert "<p>Hello &lt;Zoë&gt; &amp; co,</p>" in html
    assert ('<p>Pay: <a href="https://x.example/invoices/INV-1?a=1&amp;b=2">'
            'https://x.example/invoices/INV-1?a=1&amp;b=2</a>.<br>\nThanks</p>') in html
    assert ('<p>&quot;<a href="https://x.example/q">https://x.example/q</a>&quot; '
            '&lt;<a href="https://x.example/a">https://x.example/a</a>&gt;</p>') in html


@pytest.mark.parametrize(("sender", "domain"), [
    (SENDER, "linkgate.example"), ("bare@mail.example.com", "mail.example.com"),
    ("Odd <odd@exämple.com>", "linkgate.invalid"),
])
def test_message_ids_are_one_per_outbox_row(sender: str, domain: str) -> None:
    assert message_id(42, sender) == f"<notification-42@{domain}>"


def test_smtp_urls() -> None:
    plain = SmtpServer.from_url("smtp://mail.example.com")
    assert (plain.hostname, plain.port, plain.use_tls, plain.start_tls) == ("mail.example.com", 25, False, None)
    tls = SmtpServer.from_url("smtps://user%40x:p%2Fss@mail.example.com")
    assert (tls.port, tls.use_tls, tls.username, tls.password) == (465, True, "user@x", "p/ss")
    forced = SmtpServer.from_url("smtp://mail.example.com:587?starttls=true")
    assert (forced.port, forced.start_tls) == (587, True)
    with pytest.raises(ValueError):
        SmtpServer.from_url("mail.example.com:25")


async def test_serve_can_deliver_in_the_background(
    outbox_url: str, sessions: async_sessionmaker[AsyncSession], mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    settings = Settings(database_url=outbox_url, secret_key=TEST_SECRET,
                        smtp_url=f"smtp://127.0.0.1:{port}", notification_interval_seconds=0.05)
    app = create_app(settings, engine=create_engine(outbox_url))
    assert await outbox(sessions) == {}  # connected (and in WAL mode) before the loop starts
    async with app.router.lifespan_context(app):
        ids = await queue(sessions, "a@example.com", "b@example.com")
        for _ in range(200):
            if len(box.messages) >= 2:
                break
            await asyncio.sleep(0.05)
        assert box.ids() == ids
    rows = await outbox(sessions)
    assert all(row.sent_at is not None for row in rows.values())
    # Stopped with the app: later rows wait for the next worker.
    await queue(sessions, "c@example.com")
    await asyncio.sleep(0.2)
    assert len(box.messages) == 2


def test_a_malformed_smtp_url_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="smtp_url"):
        Settings(secret_key=TEST_SECRET, smtp_url="mail.example.com:25")
    monkeypatch.setenv("LINKGATE_SMTP_URL", "mail.example.com:25")
    with pytest.raises(ConfigurationError, match="^LINKGATE_SMTP_URL: the SMTP URL must look like"):
        load_settings()
    assert Settings(secret_key=TEST_SECRET, smtp_url="").smtp_url is None
