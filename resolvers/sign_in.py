"""Signing up, signing in and changing a password."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.passwords import hash_password, verify_password
from auth.throttle import ThrottleSettings, clear_failures, ensure_not_blocked, record_failure
from auth.tokens import TokenSettings
from models.accounts import Account
from models.users import User
from resolvers.accounts import create_account
from resolvers.user_errors import UserError
from resolvers.validation import clean_account_name, clean_email, clean_password, clean_person_name


@dataclass(frozen=True)
class SignedIn:
    token: str
    user: User


@dataclass(frozen=True)
class SignedUp:
    token: str
    user: User
    account: Account
    enrollment_token: str


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


async def sign_up(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    name: str,
    account_name: str,
    tokens: TokenSettings,
) -> SignedUp | list[UserError]:
    """A new customer login owning a new account, signed in at once."""
    checked = {
        "email": clean_email(email),
        "password": clean_password(password),
        "name": clean_person_name(name),
        "accountName": clean_account_name(account_name, field="accountName"),
    }
    errors = [value for value in checked.values() if isinstance(value, UserError)]
    if errors:
        return errors
    email_value = str(checked["email"])
    if await session.scalar(select(User.id).where(User.email == email_value)) is not None:
        return [UserError(
            message="An account with this email exists; sign in instead.", code="EMAIL_TAKEN",
            field=["email"],
        )]
    user = User(
        email=email_value, name=str(checked["name"]), password_hash=hash_password(password)
    )
    session.add(user)
    await session.flush()
    account, enrollment_token = await create_account(
        session, owner_id=user.id, name=str(checked["accountName"])
    )
    await session.commit()
    return SignedUp(
        token=tokens.issue(user_id=user.id, token_version=user.token_version),
        user=user, account=account, enrollment_token=enrollment_token,
    )


async def change_password(
    session: AsyncSession,
    *,
    user_id: int,
    current_password: str,
    new_password: str,
    tokens: TokenSettings,
) -> SignedIn | UserError:
    """Bumps the token version: every token issued before stops working."""
    user = await session.get(User, user_id)
    if user is None or not verify_password(user.password_hash, current_password):
        return UserError(
            message="The current password is incorrect.", code="INVALID_CREDENTIALS",
            field=["currentPassword"],
        )
    checked = clean_password(new_password, field="newPassword")
    if isinstance(checked, UserError):
        return checked
    user.password_hash = hash_password(checked)
    user.token_version += 1
    await session.commit()
    return SignedIn(token=tokens.issue(user_id=user.id, token_version=user.token_version), user=user)
