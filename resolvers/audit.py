"""Reading an account's audit log."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.audit import AuditEvent
from resolvers.pagination import Page, SortKey, paginate

NEWEST_FIRST = SortKey((AuditEvent.id,), descending=True)


async def list_audit_events(
    session: AsyncSession, *, account_id: int, first: int | None, after: str | None
) -> Page[AuditEvent]:
    statement = select(AuditEvent).where(AuditEvent.account_id == account_id)
    return await paginate(session, statement, NEWEST_FIRST, first=first, after=after)
