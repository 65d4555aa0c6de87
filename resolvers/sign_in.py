"""Signing up and signing in."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.passwords import verify_password
from auth.throttle import ThrottleSettings, clear_failures, ensure_not_blocked, record_failure
from auth.tokens import TokenSettings
from models.users import User
from resolvers.user_errors import UserError


@dataclass(frozen=True)
class SignedIn:
    token: str
    user: User


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def login(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    client_address: str,
    tokens: TokenSettings,
    throttle: ThrottleSettings,
) -> SignedIn | UserError:
    """Check a password, throttled per email and per client address (state in the database)."""
    email = normalize_email(email)
    buckets = [("login:email", email), ("login:client", client_address)]
    await ensure_not_blocked(session, buckets)
    user = await session.scalar(select(User).where(User.email == email))
    if user is None or not verify_password(user.password_hash, password):
        # Neither half is named: a wrong email and a wrong password read the same.
        for scope, key in buckets:
            await record_failure(session, scope, key, throttle)
        await session.commit()
        return UserError(
            message="The email or password is incorrect.", code="INVALID_CREDENTIALS"
        )
    await clear_failures(session, "login:email", email)
    await session.commit()
    return SignedIn(token=tokens.issue(user_id=user.id, token_version=user.token_version), user=user)


