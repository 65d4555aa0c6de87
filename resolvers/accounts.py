"""Reading accounts: the viewer's visible accounts and look-ups by number."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.policy import AccessMap
from models.accounts import Account
from resolvers.pagination import Page, SortKey, paginate

ACCOUNT_ORDER = SortKey((Account.name, Account.id))
MAX_SEARCH_LENGTH = 100


def _visible(statement: Any, access: AccessMap) -> Any:
    if access.sees_every_account:
        return statement
    return statement.where(Account.id.in_(sorted(access.visible_account_ids)))


async def list_accounts(
    session: AsyncSession,
    access: AccessMap,
    *,
    first: int | None,
    after: str | None,
    search: str | None,
) -> Page[Account]:
    """Accounts the principal can see, by name; ``search`` matches name or number."""
    statement = _visible(select(Account), access)
    if search and search.strip():
        pattern = "%" + _escape_like(search.strip()[:MAX_SEARCH_LENGTH].lower()) + "%"
        statement = statement.where(
            or_(
                func.lower(Account.name).like(pattern, escape="\\"),
                func.lower(Account.number).like(pattern, escape="\\"),
            )
        )
    return await paginate(session, statement, ACCOUNT_ORDER, first=first, after=after)


async def find_account_by_number(
    session: AsyncSession, access: AccessMap, number: str
) -> Account | None:
    """None both when it does not exist and when it is not visible: the two read the same."""
    account = await session.scalar(select(Account).where(Account.number == number.strip().upper()))
    if account is None or not access.can_see(account.id):
        return None
    return account


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
