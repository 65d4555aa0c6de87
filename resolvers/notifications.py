"""Reading an account's notification (email) history."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.notifications import Notification
from resolvers.pagination import Page, SortKey, paginate

NEWEST_FIRST = SortKey((Notification.id,), descending=True)


async def list_notifications(
    session: AsyncSession, *, account_id: int, first: int | None, after: str | None
) -> Page[Notification]:
    statement = select(Notification).where(Notification.account_id == account_id)
    return await paginate(session, statement, NEWEST_FIRST, first=first, after=after)
