"""The SMTP listener of ``linkgate receive-mail``: tickets by email (DESIGN §1 Tickets).

aiosmtpd speaks SMTP; ``InboundHandler`` takes mail for the support and billing addresses only
(any other ``RCPT TO`` is 550: this is no relay), reads each message (``linkgate.mail_parser``,
in a thread: a large message must not stall the other connections) and hands it to
``resolvers.inbound_mail`` with a database session of its own. Every message gets one SMTP reply
and one log line:

- 250 taken (a ticket opened, a reply added, a second delivery of a message already taken,
  an automatic reply dropped);
- 550 refused by the rules (an unknown or ambiguous sender, a ticket the sender may not see,
  a closed ticket) and 552 too big: aiosmtpd counts ``DATA`` as it arrives and stops keeping
  it past ``LINKGATE_INBOUND_MAX_BYTES`` (a client that announces ``SIZE=`` hears 552 at
  ``MAIL FROM``); 554 malformed MIME;
- 451 anything unexpected (the database is down, say): the sending server tries again later.

A client that hangs up in the middle of ``DATA`` has sent no message: nothing is read or stored.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from linkgate.mail_parser import Malformed, read_mail
from linkgate.notifications import mailboxes_of
from linkgate.settings import Settings
from models.database import create_engine, create_session_factory
from resolvers.inbound_mail import Mailboxes, receive_mail
from resolvers.tunables import Tunables

logger = logging.getLogger("linkgate.mail")

TEMPORARY_FAILURE = "451 4.3.0 Temporary failure: try again later"
# How long a stopping listener waits for the messages it is storing.
STOP_GRACE_SECONDS = 30.0


@dataclass(frozen=True)
class ListenerConfig:
    mailboxes: Mailboxes
    tunables: Tunables
    max_bytes: int


class InboundHandler:
    """aiosmtpd's handler: ``RCPT`` for our addresses only, ``DATA`` to the resolver."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], config: ListenerConfig) -> None:
        self.sessions = sessions
        self.config = config
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        mailboxes = self.config.mailboxes
        if mailboxes.department_for(address) is None:
            logger.info("mail for %s refused: not an address we take mail for", address[:254])
            return (f"550 5.1.1 No mailbox {address[:254]} here: this server takes mail for "
                    f"{mailboxes.support} and {mailboxes.billing} only")
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Never raises: whatever goes wrong is one log line and a 451."""
        self.in_flight += 1
        self.idle.clear()
        try:
            return await self._receive(envelope)
        except Exception as error:  # the listener keeps serving
            logger.error("inbound mail from %s not handled (451): %s: %s",
                         envelope.mail_from, type(error).__name__, str(error)[:300])
            return TEMPORARY_FAILURE
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self.idle.set()

    async def _receive(self, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        try:
            mail = await asyncio.to_thread(
                read_mail, raw, recipients=list(envelope.rcpt_tos),
                envelope_sender=envelope.mail_from, mailboxes=self.config.mailboxes,
            )
        except Malformed as error:
            logger.info("mail from %s refused (554): %s", envelope.mail_from, error)
            return f"554 5.6.0 The message {error}; nothing was stored"
        async with self.sessions() as database:
            outcome = await receive_mail(database, mail, mailboxes=self.config.mailboxes,
                                         tunables=self.config.tunables)
        logger.info("mail %s from %s to %s: %s, %s %s%s", mail.message_id, mail.sender,
                    mail.recipient, outcome.kind, outcome.code, outcome.text,
                    f" ({outcome.reason})" if outcome.reason else "")
        return outcome.reply


def smtp_factory(handler: InboundHandler, *, hostname: str) -> Any:
    """A new aiosmtpd protocol per connection, on the running loop."""
    loop = asyncio.get_running_loop()

    def make() -> SMTP:
        return SMTP(
            handler, data_size_limit=handler.config.max_bytes, enable_SMTPUTF8=True,
            hostname=hostname, ident="Linkgate inbound mail", loop=loop,
        )

    return make


@dataclass
class Listener:
    server: asyncio.Server
    handler: InboundHandler

    async def stop(self, grace_seconds: float = STOP_GRACE_SECONDS) -> None:
        """No new connections; the messages being stored are finished (for a while)."""
        self.server.close()
        try:
            await asyncio.wait_for(self.handler.idle.wait(), grace_seconds)
        except asyncio.TimeoutError:  # pragma: no cover - a database that hangs
            logger.warning("stopped with %s message(s) unfinished", self.handler.in_flight)


def listener_config(settings: Settings) -> ListenerConfig:
    return ListenerConfig(
        mailboxes=mailboxes_of(settings), tunables=settings.tunables(),
        max_bytes=settings.inbound_max_bytes,
    )


async def start_listener(
    sessions: async_sessionmaker[AsyncSession], config: ListenerConfig, *, host: str, port: int
) -> Listener:
    """Listening on ``host:port`` on the running loop, until ``stop()``."""
    handler = InboundHandler(sessions, config)
    hostname = config.mailboxes.support.rpartition("@")[2] or "linkgate"
    server = await asyncio.get_running_loop().create_server(
        smtp_factory(handler, hostname=hostname), host=host, port=port,
    )
    return Listener(server, handler)


async def receive_until_stopped(
    settings: Settings, *, host: str, port: int, ready: Callable[[], None] = lambda: None
) -> None:
    """``linkgate receive-mail``: listen until SIGINT or SIGTERM, then finish what is in hand."""
    if settings.log_level != "DEBUG":
        logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's line per command
    engine = create_engine(settings.database_url)
    try:
        listener = await start_listener(create_session_factory(engine), listener_config(settings),
                                        host=host, port=port)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signal_number, stopping.set)
        ready()
        await stopping.wait()
        logger.info("stopping the mail listener")
        await listener.stop()
    finally:
        await engine.dispose()
