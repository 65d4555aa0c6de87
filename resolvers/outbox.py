"""The notification outbox writer: every email is queued in the caller's transaction.

Call ``queue_email`` from inside the change that causes the email, before that change
commits, so the email and the change land (or roll back) together.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.accounts import Account
from models.contacts import Contact, EmailPreference
from models.notifications import SECURITY_CATEGORY, Notification
from models.users import User


def queue_email(
    session: AsyncSession,
    *,
    recipients: Iterable[str],
    category: EmailPreference | None,
    subject: str,
    body: str,
    account_id: int | None,
    related: tuple[str, int] | None = None,
) -> list[Notification]:
    """One outbox row per distinct recipient (case-insensitive), in first-seen order.

    ``category=None`` is security mail (``queue_security_email``), which no one can opt out of.
    """
    seen: set[str] = set()
    rows: list[Notification] = []
    for recipient in recipients:
        address = recipient.strip().lower()
        if not address or address in seen:
            continue
        seen.add(address)
        row = Notification(
            account_id=account_id, recipient=address, category=category.value if category else SECURITY_CATEGORY,
            subject=subject[:200], body=body,
            related_type=related[0] if related else None,
            related_id=related[1] if related else None,
        )
        session.add(row)
        rows.append(row)
    return rows


def queue_security_email(
    session: AsyncSession, *, recipient: str, subject: str, body: str,
    related: tuple[str, int] | None = None,
) -> Notification:
    """Security mail (invitations, password resets, sign-up links, sign-in alerts): never
    optional, and attached to no account, so no account's email history (``EMAILS_READ``)
    lists it: the links it carries are for its recipient alone. The delivery worker redacts
    the link's token from the stored body once the message is sent."""
    return queue_email(
        session, recipients=[recipient], category=None, subject=subject, body=body,
        account_id=None, related=related,
    )[0]


def link_to(public_url: str, path: str, token: str) -> str:
    """A link into the dashboard carrying a single-use token.

    The token travels in the fragment (``#token=``), which browsers never send to a server:
    it stays out of access logs, proxies and ``Referer`` headers.
    """
    return f"{public_url.rstrip('/')}/{path.lstrip('/')}#token={token}"



async def queue_account_notice(
    session: AsyncSession, *, account_id: int, category: EmailPreference, subject: str, body: str,
    related: tuple[str, int] | None = None,
) -> list[Notification]:
    """A notice about an account (DESIGN §1 Contacts): to its owner, and a copy to every
    contact of the account holding ``category`` among its email preferences."""
    owner = await session.scalar(
        select(User.email).join(Account, Account.owner_id == User.id).where(Account.id == account_id)
    )
    contacts = (await session.scalars(
        select(Contact).where(Contact.account_id == account_id).order_by(Contact.id))).all()
    copies = [contact.email for contact in contacts if category.value in contact.email_preferences]
    return queue_email(session, recipients=[*([owner] if owner else []), *copies], category=category,
                       subject=subject, body=body, account_id=account_id, related=related)
