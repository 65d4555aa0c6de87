"""Who is calling: a signed-in user (customer or staff), or nobody."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.errors import Unauthenticated
from auth.tokens import TokenSettings
from models.base import utcnow
from models.identity import UserSession
from models.rights import CURRENT_VERSION
from models.users import StaffRole, User


class Credentials(Protocol):
    """What a verified bearer token or download link says: who, and at which token version."""

    @property
    def user_id(self) -> int: ...

    @property
    def token_version(self) -> int: ...

    @property
    def session_id(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    staff_role: StaffRole | None = None
    # The sign-in session the token belongs to (what ``logout`` ends); None for callers
    # built without one (tests, tools).
    session_id: int | None = None
    # ``models/rights.py``'s counter, read in the same statement as the user: a cached access
    # map computed at this version is still exact. None when not read (tests, tools).
    rights_version: int | None = None

    @property
    def is_staff(self) -> bool:
        return self.staff_role is not None


async def authenticate(session: AsyncSession, token: str, tokens: TokenSettings) -> Principal:
    """The principal behind a bearer token; revoked (older token version) or unknown → error."""
    return await principal_for(session, tokens.read(token))


# Built once: every signed-in request runs one of them (see auth/policy.py).
_USER = select(
    User.token_version, User.staff_role,
    CURRENT_VERSION.scalar_subquery().label("rights_version"),
).where(User.id == bindparam("user_id"))
_USER_AND_SESSION = _USER.add_columns(UserSession.revoked_at, UserSession.expires_at).outerjoin(
    UserSession, and_(UserSession.id == bindparam("session_id"), UserSession.user_id == User.id)
)


async def principal_for(session: AsyncSession, claims: Credentials, *, ended: str | None = None) -> Principal:
    """The principal behind verified claims, if the user still exists, the token version is
    current (a password change bumps it) and the token's session has not ended: one statement,
    which also reads the rights version (``auth/access_cache.py``)."""
    session_id = claims.session_id
    if session_id is None:
        row = (await session.execute(_USER, {"user_id": claims.user_id})).one_or_none()
    else:
        row = (await session.execute(
            _USER_AND_SESSION, {"user_id": claims.user_id, "session_id": session_id})).one_or_none()
    if (
        row is None or row.token_version != claims.token_version
        or (session_id is not None and (
            row.expires_at is None or row.revoked_at is not None or row.expires_at <= utcnow()
        ))
    ):
        raise Unauthenticated(ended or "The session has ended; sign in again.")
    return Principal(user_id=claims.user_id, staff_role=row.staff_role, session_id=session_id,
                     rights_version=row.rights_version)
