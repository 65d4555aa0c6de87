"""Two-factor sign-in: checking a second factor at sign-in.

A second factor is a current TOTP code (never one already used) or one of the user's unused
recovery codes, which it spends.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from auth.totp import matching_step, recovery_code_digest
from models.base import utcnow
from models.identity import RecoveryCode
from models.users import User


async def second_factor_matches(session: AsyncSession, user: User, code: str) -> bool:
    """True, and the code is spent, when ``code`` is a valid TOTP code or recovery code."""
    if user.totp_secret is None or user.totp_enabled_at is None:
        return False
    step = matching_step(user.totp_secret, code, last_step=user.totp_last_step)
    if step is not None:
        # Conditional, so two sign-ins racing with one code cannot both pass.
        spent = await session.execute(
            update(User)
            .where(User.id == user.id,
                   (User.totp_last_step.is_(None)) | (User.totp_last_step < step))
            .values(totp_last_step=step)
        )
        if spent.rowcount == 1:
            user.totp_last_step = step
            return True
        return False
    spent = await session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None),
               RecoveryCode.code_hash == recovery_code_digest(code))
        .values(used_at=utcnow())
    )
    return spent.rowcount == 1
