"""Single-use links sent by email (password reset, sign-up confirmation): made with the change
that sends them, spent exactly once.

Only the token's digest is stored; a token is looked up together with its purpose, so a
sign-up link never resets a password, and spending is one conditional UPDATE, so two
requests racing with the same link cannot both succeed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from auth.secrets import digest, new_secret
from auth.throttle import client_key, count_in_window
from models.base import utcnow
from models.identity import EmailedLink, LinkPurpose

PREFIXES = {LinkPurpose.PASSWORD_RESET: "lgp_", LinkPurpose.SIGN_UP: "lgs_"}


@dataclass(frozen=True, slots=True)
class MailCaps:
    """How many links of one purpose may go out: to one address from one client, and from
    one client to any address. Per client, so nobody can use up an address's allowance and
    keep its owner from getting a link (nor flood a mailbox from one place)."""

    per_address_and_client: int
    per_client: int
    window: timedelta


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


async def mail_allowed(
    session: AsyncSession, *, purpose: LinkPurpose, email: str, requested_by: str, caps: MailCaps
) -> bool:
    """Whether one more link of ``purpose`` may go to ``email`` for this client now. Counted
    with atomic upserts (``auth.throttle.count_in_window``), so requests racing in parallel,
    on one replica or several, cannot all pass a check made before any of them was counted.
    The caller's transaction holds the counts: a rollback uncounts."""
    client = client_key(requested_by)
    scope = f"mail:{purpose.value}"
    to_address = await count_in_window(session, f"{scope}:pair", f"{email}\n{client}", window=caps.window)
    in_all = await count_in_window(session, f"{scope}:client", client, window=caps.window)
    return to_address <= caps.per_address_and_client and in_all <= caps.per_client


async def open_link(session: AsyncSession, *, purpose: LinkPurpose, token: str) -> EmailedLink | None:
    """The unspent, unexpired link of ``purpose`` behind ``token``, without spending it."""
    return await session.scalar(select(EmailedLink).where(
        EmailedLink.token_hash == digest(token), EmailedLink.purpose == purpose,
        EmailedLink.used_at.is_(None), EmailedLink.expires_at > utcnow(),
    ))


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


async def retire_links(session: AsyncSession, *, purpose: LinkPurpose, user_id: int) -> None:
    """Spend every open link of ``purpose`` for a user (a reset link dies with the password)."""
    await session.execute(
        update(EmailedLink)
        .where(EmailedLink.purpose == purpose, EmailedLink.user_id == user_id,
               EmailedLink.used_at.is_(None))
        .values(used_at=utcnow())
    )
