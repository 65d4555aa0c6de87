"""Who is calling: a signed-in user (customer or staff), or nobody."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.errors import Unauthenticated
from auth.tokens import TokenSettings
from models.users import StaffRole, User


class Credentials(Protocol):
    """What a verified bearer token or download link says: who, and at which token version."""

    @property
    def user_id(self) -> int: ...

    @property
    def token_version(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: int
    staff_role: StaffRole | None = None

    @property
    def is_staff(self) -> bool:
        return self.staff_role is not None


async def authenticate(session: AsyncSession, token: str, tokens: TokenSettings) -> Principal:
    """The principal behind a bearer token; revoked (older token version) or unknown → error."""
    return await principal_for(session, tokens.read(token))


async def principal_for(session: AsyncSession, claims: Credentials, *, ended: str | None = None) -> Principal:
    """The principal behind verified claims, if the user still exists and the token version
    is current (a password change bumps it, revoking every earlier token or link)."""
    row = (
        await session.execute(
            select(User.token_version, User.staff_role).where(User.id == claims.user_id)
        )
    ).one_or_none()
    if row is None or row.token_version != claims.token_version:
        raise Unauthenticated(ended or "The token has been revoked; sign in again.")
    return Principal(user_id=claims.user_id, staff_role=row.staff_role)
