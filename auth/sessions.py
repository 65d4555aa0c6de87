"""Sign-in sessions: short-lived access tokens plus a refresh token that rotates on every use.

A session is a row (``UserSession``); each access token names it (``sid``) and every request
reads it with the user in one statement (``auth.principals.principal_for``), so ending a
session (logout, a password reset, a detected theft) holds on every replica at once.

Refresh tokens are single-use. Using one marks it used and issues the next; presenting a used
one again means two parties hold the session (a stolen copy, or a replayed request), so the
whole session is revoked and both must sign in again (OAuth 2.0 Security BCP §4.14).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from auth.secrets import digest, new_secret
from auth.tokens import TokenSettings
from models.base import utcnow
from models.identity import RefreshToken, UserSession
from models.users import User

REFRESH_TOKEN_PREFIX = "lgr_"


@dataclass(frozen=True, slots=True)
class SessionSettings:
    tokens: TokenSettings
    lifetime: timedelta = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    """What a client keeps after signing in or refreshing."""

    access_token: str
    expires_at: datetime
    refresh_token: str
    session_id: int
    user_id: int


async def _issue(
    session: AsyncSession, row: UserSession, user: User, settings: SessionSettings,
    now: datetime,
) -> IssuedTokens:
    refresh_token, token_hash = new_secret(REFRESH_TOKEN_PREFIX)
    session.add(RefreshToken(session_id=row.id, token_hash=token_hash, created_at=now))
    await session.flush()
    issued_at = now.replace(microsecond=0)
    return IssuedTokens(
        access_token=settings.tokens.issue(
            user_id=user.id, token_version=user.token_version, session_id=row.id, now=issued_at
        ),
        expires_at=issued_at + settings.tokens.ttl,
        refresh_token=refresh_token,
        session_id=row.id,
        user_id=user.id,
    )


async def start_session(
    session: AsyncSession, *, user: User, client_address: str, user_agent: str | None,
    settings: SessionSettings,
) -> IssuedTokens:
    """A new session for ``user``, in the caller's transaction (the caller commits)."""
    now = utcnow()
    row = UserSession(
        user_id=user.id, client_address=client_address[:64],
        user_agent=(user_agent or "")[:200] or None, created_at=now, last_used_at=now,
        expires_at=now + settings.lifetime,
    )
    session.add(row)
    await session.flush()
    return await _issue(session, row, user, settings, now)


async def open_session_for(
    session: AsyncSession, *, user_id: int, settings: SessionSettings, client_address: str
) -> IssuedTokens:
    """A session for a user known by id, committed: for tools that act as a user (the
    benchmarks, the tests); people sign in through ``resolvers.sign_in``."""
    user = await session.get(User, user_id)
    if user is None:
        raise LookupError(f"no user {user_id}")
    issued = await start_session(
        session, user=user, client_address=client_address, user_agent=None, settings=settings
    )
    await session.commit()
    return issued


async def refresh_session(
    session: AsyncSession, *, refresh_token: str, settings: SessionSettings
) -> IssuedTokens | None:
    """Spends ``refresh_token`` and issues the next pair; commits either way. None when the
    token is unknown, spent (the session is then revoked), or its session has ended.

    The spend is one conditional UPDATE, so of two replicas presenting the same token at
    once exactly one succeeds; the other sees a used token and revokes the session.
    """
    now = utcnow()
    token_hash = digest(refresh_token)
    spent = (await session.execute(
        update(RefreshToken)
        .where(RefreshToken.token_hash == token_hash, RefreshToken.used_at.is_(None))
        .values(used_at=now)
        .returning(RefreshToken.session_id)
    )).scalar_one_or_none()
    if spent is None:
        reused = await session.scalar(
            select(RefreshToken.session_id).where(RefreshToken.token_hash == token_hash)
        )
        if reused is not None:
            await revoke_sessions(session, UserSession.id == reused, reason="refresh_token_reuse")
            await session.commit()
        return None
    row = await session.get(UserSession, spent)
    user = await session.get(User, row.user_id) if row is not None else None
    if row is None or user is None or row.revoked_at is not None or row.expires_at <= now:
        await session.rollback()
        return None
    row.last_used_at = now
    issued = await _issue(session, row, user, settings, now)
    await session.commit()
    return issued


async def revoke_sessions(session: AsyncSession, *where: object, reason: str) -> None:
    """Ends every session matching ``where`` (in the caller's transaction)."""
    await session.execute(
        update(UserSession)
        .where(UserSession.revoked_at.is_(None), *where)  # type: ignore[arg-type]
        .values(revoked_at=utcnow(), revoked_reason=reason)
    )


async def end_session(session: AsyncSession, *, session_id: int, reason: str = "logout") -> None:
    await revoke_sessions(session, UserSession.id == session_id, reason=reason)


async def end_all_sessions(session: AsyncSession, *, user_id: int, reason: str) -> None:
    await revoke_sessions(session, UserSession.user_id == user_id, reason=reason)
