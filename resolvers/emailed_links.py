"""Single-use links sent by email (password reset, sign-up confirmation): made with the change
that sends them, spent exactly once.

Only the token's digest is stored; a token is looked up together with its purpose, so a
sign-up link never resets a password, and spending is one conditional UPDATE, so two
requests racing with the same link cannot both succeed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from auth.secrets import digest, new_secret
from models.base import utcnow
from models.identity import EmailedLink, LinkPurpose

PREFIXES = {LinkPurpose.PASSWORD_RESET: "lgp_", LinkPurpose.SIGN_UP: "lgs_"}


async def create_link(
    session: AsyncSession, *, purpose: LinkPurpose, email: str, ttl: timedelta,
    user_id: int | None = None, payload: dict[str, Any] | None = None,
) -> str:
    """A new link's token (the caller emails it, in the same transaction)."""
    token, token_hash = new_secret(PREFIXES[purpose])
    now = utcnow()
    session.add(EmailedLink(
        purpose=purpose, token_hash=token_hash, email=email, user_id=user_id, payload=payload,
        created_at=now, expires_at=now + ttl,
    ))
    await session.flush()
    return token


async def spend_link(session: AsyncSession, *, purpose: LinkPurpose, token: str) -> EmailedLink | None:
    """The link, now used; None when the token is unknown, of another purpose, used or expired."""
    now = utcnow()
    spent = (await session.execute(
        update(EmailedLink)
        .where(
            EmailedLink.token_hash == digest(token), EmailedLink.purpose == purpose,
            EmailedLink.used_at.is_(None), EmailedLink.expires_at > now,
        )
        .values(used_at=now)
        .returning(EmailedLink.id)
    )).scalar_one_or_none()
    return None if spent is None else await session.get(EmailedLink, spent)


async def recent_links(
    session: AsyncSession, *, purpose: LinkPurpose, email: str, since: timedelta
) -> int:
    """How many links of ``purpose`` went to ``email`` lately (to cap mail to one address)."""
    return int(await session.scalar(
        select(func.count()).select_from(EmailedLink).where(
            EmailedLink.purpose == purpose, EmailedLink.email == email,
            EmailedLink.created_at > utcnow() - since,
        )
    ) or 0)


async def retire_links(session: AsyncSession, *, purpose: LinkPurpose, user_id: int) -> None:
    """Spend every open link of ``purpose`` for a user (a reset link dies with the password)."""
    await session.execute(
        update(EmailedLink)
        .where(EmailedLink.purpose == purpose, EmailedLink.user_id == user_id,
               EmailedLink.used_at.is_(None))
        .values(used_at=utcnow())
    )
