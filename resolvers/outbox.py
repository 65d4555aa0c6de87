"""The notification outbox writer: every email is queued in the caller's transaction.

Call ``queue_email`` (or ``queue_security_email``) from inside the change that causes the
email, before that change commits, so the email and the change land (or roll back) together.

Who gets a categorised email is decided here, once, for every writer: a recipient whose
address is a login that opted out of the category (``User.email_opt_outs``) gets no row at
all, so the account's email history (``EMAILS_READ``) lists only emails that are sent.
Security mail has no category and no opt-out.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.accounts import Account
from models.contacts import Contact, EmailPreference
from models.notifications import SECURITY_CATEGORY, Notification
from models.users import User


async def queue_email(
    session: AsyncSession,
    *,
    recipients: Iterable[str],
    category: EmailPreference,
    subject: str,
    body: str,
    account_id: int | None,
    related: tuple[str, int] | None = None,
) -> list[Notification]:
    """One outbox row per distinct recipient (case-insensitive), in first-seen order, but
    none for a login that opted out of ``category``."""
    addresses = _distinct(recipients)
    opted_out = await _opted_out(session, addresses, category)
    return _add_rows(
        session, [address for address in addresses if address not in opted_out],
        category=category.value, subject=subject, body=body, account_id=account_id,
        related=related,
    )


def queue_security_email(
    session: AsyncSession, *, recipient: str, subject: str, body: str,
    related: tuple[str, int] | None = None,
) -> Notification:
    """Security mail (invitations, password resets, sign-up links, sign-in alerts): never
    optional, and attached to no account, so no account's email history (``EMAILS_READ``)
    lists it: the links it carries are for its recipient alone. The delivery worker redacts
    the link's token from the stored body once the message is sent."""
    return _add_rows(
        session, _distinct([recipient]), category=SECURITY_CATEGORY, subject=subject, body=body,
        account_id=None, related=related,
    )[0]


async def queue_account_notice(
    session: AsyncSession, *, account_id: int, category: EmailPreference, subject: str, body: str,
    related: tuple[str, int] | None = None,
) -> list[Notification]:
    """A notice about an account (DESIGN §1 Contacts): to its owner, and a copy to every
    contact of the account holding ``category`` among its email preferences.

    GENERAL notices are links, unlinks and sub-account changes. PRODUCT (service changes) has
    no sender yet: services are provisioned outside the gateway, and whatever changes one
    (an API mutation or the provisioning import, once there is one) sends its notice here."""
    owner = await session.scalar(
        select(User.email).join(Account, Account.owner_id == User.id).where(Account.id == account_id)
    )
    copies = await contacts_receiving(session, account_id, category)
    return await queue_email(
        session, recipients=[*([owner] if owner else []), *copies], category=category,
        subject=subject, body=body, account_id=account_id, related=related,
    )


async def contacts_receiving(
    session: AsyncSession, account_id: int, category: EmailPreference
) -> list[str]:
    """The emails of the account's contacts holding ``category``, oldest contact first: the
    copies an email of that category gets besides its own recipients."""
    contacts = (await session.execute(
        select(Contact.email, Contact.email_preferences)
        .where(Contact.account_id == account_id).order_by(Contact.id)
    )).all()
    return [email for email, preferences in contacts if category.value in (preferences or [])]


def link_to(public_url: str, path: str, token: str) -> str:
    """A link into the dashboard carrying a single-use token.

    The token travels in the fragment (``#token=``), which browsers never send to a server:
    it stays out of access logs, proxies and ``Referer`` headers.
    """
    return f"{public_url.rstrip('/')}/{path.lstrip('/')}#token={token}"


def _distinct(recipients: Iterable[str]) -> list[str]:
    """Trimmed, lower-cased (logins and contacts are stored so), blanks and repeats dropped."""
    return list(dict.fromkeys(
        address for address in (recipient.strip().lower() for recipient in recipients) if address
    ))


async def _opted_out(
    session: AsyncSession, addresses: list[str], category: EmailPreference
) -> set[str]:
    """Which of ``addresses`` are logins that opted out of ``category``: one statement, the
    category checked here (a JSON list is not portably queryable in SQL)."""
    if not addresses:
        return set()
    logins = (await session.execute(
        select(User.email, User.email_opt_outs).where(User.email.in_(addresses))
    )).all()
    return {email for email, opt_outs in logins if category.value in (opt_outs or [])}


def _add_rows(
    session: AsyncSession, addresses: list[str], *, category: str, subject: str, body: str,
    account_id: int | None, related: tuple[str, int] | None,
) -> list[Notification]:
    rows = [
        Notification(
            account_id=account_id, recipient=address, category=category, subject=subject[:200],
            body=body, related_type=related[0] if related else None,
            related_id=related[1] if related else None,
        )
        for address in addresses
    ]
    session.add_all(rows)
    return rows
