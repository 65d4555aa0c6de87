"""Reading accounts: the viewer's visible accounts and look-ups by number."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.enrollment import enrollment_token
from auth.errors import NotFound
from auth.permissions import Permission
from auth.policy import AccessMap
from models.accounts import Account
from models.links import LinkMember
from resolvers.id_sets import among, dialect_of
from resolvers.pagination import Page, PageBounds, SortKey, paginate

ACCOUNT_ORDER = SortKey((Account.name, Account.id))
MAX_SEARCH_LENGTH = 100


def _visible(statement: Any, access: AccessMap, dialect: str) -> Any:
    if access.sees_every_account:
        return statement
    return statement.where(among(Account.id, access.visible_account_ids, dialect))


async def list_accounts(
    session: AsyncSession,
    access: AccessMap,
    *,
    first: int | None,
    after: str | None,
    search: str | None,
    bounds: PageBounds = PageBounds(),
) -> Page[Account]:
    """Accounts the principal can see, by name; ``search`` matches name, number or a friendly
    name the account has as a member of a link group, in one statement.

    A member's friendly name is shown (``LinkMember.friendlyName``) to whoever sees that
    account, and so is its group (``Account.linkGroups``): matching it tells a viewer nothing
    the account's own page does not. A head's friendly name is shown nowhere, so it is not
    matched either.
    """
    statement = _visible(select(Account), access, dialect_of(session))
    if search and search.strip():
        pattern = "%" + _escape_like(search.strip()[:MAX_SEARCH_LENGTH].lower()) + "%"
        named = select(LinkMember.account_id).where(
            LinkMember.is_head.is_(False),
            func.lower(LinkMember.friendly_name).like(pattern, escape="\\"),
        )
        statement = statement.where(
            or_(
                func.lower(Account.name).like(pattern, escape="\\"),
                func.lower(Account.number).like(pattern, escape="\\"),
                Account.id.in_(named),
            )
        )
    return await paginate(session, statement, ACCOUNT_ORDER, first=first, after=after, bounds=bounds)


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


async def create_account(
    session: AsyncSession, *, owner_id: int, name: str, enrollment_key: bytes
) -> tuple[Account, str]:
    """A new account owned by ``owner_id`` and its enrollment token (derived, never stored)."""
    for _attempt in range(10):
        number = f"ACC-{secrets.randbelow(900_000) + 100_000}"
        taken = await session.scalar(select(Account.id).where(Account.number == number))
        if taken is None:
            break
    else:  # pragma: no cover - 10 collisions in 900,000 numbers
        raise RuntimeError("could not find a free account number")
    account = Account(number=number, name=name, owner_id=owner_id, enrollment_token_version=1)
    session.add(account)
    await session.flush()
    return account, current_enrollment_token(account, enrollment_key)


def current_enrollment_token(account: Account, enrollment_key: bytes) -> str:
    """The token that proves control of ``account`` now (printed on its new invoices)."""
    return enrollment_token(enrollment_key, account.id, account.enrollment_token_version)


async def require_account(
    session: AsyncSession, access: AccessMap, account_id: int, permission: Permission | None = None
) -> Account:
    """The account a mutation acts on, after the same checks ``@requires`` makes.

    Unknown and invisible accounts both raise ``NotFound``; a visible account without
    ``permission`` raises ``PermissionDenied`` naming it.
    """
    account = await session.get(Account, account_id)
    if account is None or not access.can_see(account_id):
        raise NotFound("No such account.")
    if permission is not None:
        access.require(account_id, permission)
    return account
