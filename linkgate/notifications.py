"""Server glue for mail: settings → the delivery worker (``resolvers.delivery``) and the
inbound addresses (``resolvers.inbound_mail.Mailboxes``)."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from linkgate.settings import Settings
from models.database import create_session_factory
from resolvers.delivery import SmtpServer, mail_domain, run_delivery_loop
from resolvers.inbound_mail import Mailboxes
from resolvers.invoice_documents import Printing


def smtp_server(settings: Settings) -> SmtpServer | None:
    """``LINKGATE_SMTP_URL`` parsed; ``None`` when unset (then rows are only marked as sent)."""
    return SmtpServer.from_url(settings.smtp_url) if settings.smtp_url else None


def mailboxes_of(settings: Settings) -> Mailboxes:
    """The inbound addresses (``LINKGATE_SUPPORT_ADDRESS``/``_BILLING_ADDRESS``), where ticket
    emails point ``Reply-To``, and the domain of the Message-IDs we send (``LINKGATE_MAIL_FROM``'s),
    by which the listener knows a reply to one of them."""
    return Mailboxes(support=settings.support_address, billing=settings.billing_address,
                     domain=mail_domain(settings.mail_from))


def start_delivery_loop(settings: Settings, engine: AsyncEngine) -> asyncio.Task[None] | None:
    """The background loop of ``serve``, when ``LINKGATE_NOTIFICATION_INTERVAL_SECONDS`` > 0."""
    if settings.notification_interval_seconds <= 0:
        return None
    return asyncio.create_task(run_delivery_loop(
        create_session_factory(engine), smtp=smtp_server(settings), sender=settings.mail_from,
        max_attempts=settings.notification_max_attempts,
        interval_seconds=settings.notification_interval_seconds,
        printing=Printing.of(settings.tunables()), mailboxes=mailboxes_of(settings),
    ), name="linkgate-notification-delivery")


async def stop_delivery_loop(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
