"""Keeping a session alive (refresh) and ending it (logout), for the signed-in client."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from auth.principals import Principal
from auth.sessions import IssuedTokens, SessionSettings, end_all_sessions, end_session, refresh_session
from resolvers.user_errors import UserError

INVALID_REFRESH_TOKEN = UserError(
    message="The refresh token is invalid, spent or expired; sign in again.",
    code="INVALID_TOKEN", field=["refreshToken"],
)


async def refresh(
    session: AsyncSession, *, refresh_token: str, sessions: SessionSettings
) -> IssuedTokens | UserError:
    """The next access and refresh token. A spent token presented again ends its session
    (someone else holds a copy): both holders must sign in again."""
    issued = await refresh_session(session, refresh_token=refresh_token, settings=sessions)
    return INVALID_REFRESH_TOKEN if issued is None else issued


async def logout(session: AsyncSession, *, principal: Principal, everywhere: bool) -> None:
    """Ends the caller's session, or every session of the caller's login."""
    if everywhere or principal.session_id is None:
        await end_all_sessions(session, user_id=principal.user_id, reason="logout_everywhere")
    else:
        await end_session(session, session_id=principal.session_id)
    await session.commit()
