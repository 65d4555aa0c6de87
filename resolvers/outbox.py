"""The notification outbox writer: every email is queued in the caller's transaction.

Call ``queue_email`` from inside the change that causes the email, before that change
commits, so the email and the change land (or roll back) together.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from models.contacts import EmailPreference
from models.notifications import Notification


def queue_email(
    session: AsyncSession,
    *,
    recipients: Iterable[str],
    category: EmailPreference,
    subject: str,
    body: str,
    account_id: int | None,
    related: tuple[str, int] | None = None,
) -> list[Notification]:
    """One outbox row per distinct recipient (case-insensitive), in first-seen order."""
    seen: set[str] = set()
    rows: list[Notification] = []
    for recipient in recipients:
        address = recipient.strip().lower()
        if not address or address in seen:
            continue
        seen.add(address)
        row = Notification(
            account_id=account_id, recipient=address, category=category.value,
            subject=subject[:200], body=body,
            related_type=related[0] if related else None,
            related_id=related[1] if related else None,
        )
        session.add(row)
        rows.append(row)
    return rows
