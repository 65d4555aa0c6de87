"""Two-factor sign-in: turning it on and off, recovery codes, and checking a second factor.

A second factor is a current TOTP code (never one already used) or one of the user's unused
recovery codes, which it spends. Turning it on takes two steps so nobody is locked out by a
secret their app never read: ``enable_two_factor`` hands out a pending secret, and
``confirm_two_factor`` puts it in force once a code made from it comes back, together with the
password (a stolen access token alone must not lock the owner out with a secret of its own).

Whatever weakens the login (turning it off, new recovery codes) takes a second factor, is
throttled with the sign-in's own counters (so it cannot be used to guess codes instead of
signing in), and is told to the user by security mail.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from auth.errors import Unauthenticated
from auth.passwords import verify_password
from auth.principals import Principal
from auth.throttle import FailureThrottle, ThrottleSettings
from auth.totp import (
    matching_step,
    new_recovery_codes,
    new_totp_secret,
    provisioning_uri,
    recovery_code_digest,
)
from models.base import utcnow
from models.identity import RecoveryCode
from models.users import User
from resolvers.audit_log import record_event
from resolvers.database import begin_write
from resolvers.outbox import queue_security_email
from resolvers.user_errors import UserError
from resolvers.validation import untypable_character

# Longer than any TOTP or recovery code however it is spaced: longer input is not a code.
MAX_CODE_LENGTH = 64

TWO_FACTOR_ALREADY_ENABLED = UserError(
    message="Two-factor sign-in is already on; to start over, turn it off first (that takes "
    "your password and a code).", code="TWO_FACTOR_ALREADY_ENABLED",
)
TWO_FACTOR_NOT_STARTED = UserError(
    message="There is no code to confirm yet: start with enableTwoFactor.",
    code="TWO_FACTOR_NOT_STARTED",
)
TWO_FACTOR_NOT_ENABLED = UserError(
    message="Two-factor sign-in is not on.", code="TWO_FACTOR_NOT_ENABLED",
)
TWO_FACTOR_REQUIRED = UserError(
    message="Staff logins must keep two-factor sign-in on: without it they cannot sign in.",
    code="TWO_FACTOR_REQUIRED",
)
INVALID_CODE = UserError(
    message="The code is incorrect or was already used.", code="INVALID_OTP", field=["code"],
)
INVALID_PASSWORD = UserError(
    message="The password is incorrect.", code="INVALID_CREDENTIALS", field=["password"],
)


@dataclass(frozen=True)
class PendingTwoFactor:
    """A secret for the authenticator app, not in force until confirmed."""

    secret: str
    otpauth_uri: str


@dataclass(frozen=True)
class TwoFactorSetUp:
    """Two-factor sign-in set up by an administrator (``linkgate create-staff --totp``)."""

    secret: str
    otpauth_uri: str
    recovery_codes: list[str]


def plausible_code(code: str) -> bool:
    """Short, without NUL and encodable: anything else cannot be a code and is not looked at."""
    return len(code) <= MAX_CODE_LENGTH and not untypable_character(code)


async def second_factor_matches(session: AsyncSession, user: User, code: str) -> bool:
    """True, and the code is spent, when ``code`` is a valid TOTP code or recovery code."""
    if user.totp_secret is None or user.totp_enabled_at is None or not plausible_code(code):
        return False
    if await _spend_totp_code(session, user, code):
        return True
    spent = await session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None),
               RecoveryCode.code_hash == recovery_code_digest(code))
        .values(used_at=utcnow())
    )
    return spent.rowcount == 1


async def _spend_totp_code(session: AsyncSession, user: User, code: str) -> bool:
    """A current TOTP code of the user's secret, newer than the last one accepted: spent."""
    if user.totp_secret is None:
        return False
    step = matching_step(user.totp_secret, code, last_step=user.totp_last_step)
    if step is None:
        return False
    # Conditional, so two requests racing with one code cannot both pass.
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


async def enable_two_factor(
    session: AsyncSession, *, principal: Principal
) -> PendingTwoFactor | UserError:
    """A new pending secret (replacing an unconfirmed one); sign-in is unchanged until
    ``confirm_two_factor``, so no mail yet."""
    user = await locked_user(session, principal)
    if user.has_two_factor:
        await session.rollback()
        return TWO_FACTOR_ALREADY_ENABLED
    user.totp_secret = new_totp_secret()
    user.totp_last_step = None
    pending = PendingTwoFactor(user.totp_secret, provisioning_uri(user.totp_secret, user.email))
    await session.commit()
    return pending


async def confirm_two_factor(
    session: AsyncSession,
    *,
    principal: Principal,
    code: str,
    password: str,
    client_address: str,
    throttle: ThrottleSettings,
) -> list[str] | UserError:
    """Puts the pending secret in force with a current code made from it and the password;
    returns the new recovery codes, the only time they are shown.

    The password, because an access token alone must not turn two-factor on: whoever stole
    one could put a secret of their own in force and lock the owner out of their login. A
    wrong password counts as a failed sign-in (a token is no way to guess the password
    behind it). The code itself is not guessed at: the pending secret was handed to this
    caller.
    """
    user = await locked_user(session, principal)
    if user.has_two_factor:
        await session.rollback()
        return TWO_FACTOR_ALREADY_ENABLED
    if user.totp_secret is None:
        await session.rollback()
        return TWO_FACTOR_NOT_STARTED
    guard = FailureThrottle("login", user.email, client_address, throttle, known_client=True)
    await guard.attempt(session)
    if not verify_password(user.password_hash, password):
        await session.commit()  # the attempt stays counted; two-factor stays off
        return INVALID_PASSWORD
    await guard.succeeded(session)
    step = matching_step(user.totp_secret, code, last_step=None) if plausible_code(code) else None
    if step is None:
        await session.commit()  # only the throttle's bookkeeping
        return INVALID_CODE
    user.totp_enabled_at = utcnow()
    user.totp_last_step = step  # the confirming code cannot sign in afterwards
    codes = await _replace_recovery_codes(session, user)
    record_event(session, actor=principal, action="user.two_factor_enabled", account_id=None,
                 target=("user", user.id))
    _tell(session, user, "Two-factor sign-in is on for your Linkgate login",
          "two-factor sign-in was turned on for your Linkgate login: signing in now also takes "
          "a code from your authenticator app, or one of your recovery codes.")
    await session.commit()
    return codes


async def disable_two_factor(
    session: AsyncSession,
    *,
    principal: Principal,
    password: str,
    code: str,
    client_address: str,
    throttle: ThrottleSettings,
    staff_require_totp: bool,
) -> UserError | None:
    """Turns two-factor sign-in off with the password and a second factor (TOTP or recovery
    code): a stolen session alone cannot. Failures count as failed sign-ins."""
    user = await locked_user(session, principal)
    if not user.has_two_factor:
        await session.rollback()
        return TWO_FACTOR_NOT_ENABLED
    if user.staff_role is not None and staff_require_totp:
        # Without it the staff login could not sign in again (TWO_FACTOR_SETUP_REQUIRED).
        await session.rollback()
        return TWO_FACTOR_REQUIRED
    guard = FailureThrottle("login", user.email, client_address, throttle, known_client=True)
    await guard.attempt(session)
    if not verify_password(user.password_hash, password):
        await session.commit()  # the attempt stays counted
        return INVALID_PASSWORD
    if not await second_factor_matches(session, user, code):
        await session.commit()
        return INVALID_CODE
    await guard.succeeded(session)
    user.totp_secret = None
    user.totp_enabled_at = None
    user.totp_last_step = None
    await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    record_event(session, actor=principal, action="user.two_factor_disabled", account_id=None,
                 target=("user", user.id))
    _tell(session, user, "Two-factor sign-in is off for your Linkgate login",
          "two-factor sign-in was turned off for your Linkgate login: signing in takes only "
          "the password now, and your recovery codes no longer work.")
    await session.commit()
    return None


async def regenerate_recovery_codes(
    session: AsyncSession,
    *,
    principal: Principal,
    code: str,
    client_address: str,
    throttle: ThrottleSettings,
) -> list[str] | UserError:
    """Ten new recovery codes for a current TOTP code; the old ones stop working. A recovery
    code does not do: it would turn one code found on paper into ten."""
    user = await locked_user(session, principal)
    if not user.has_two_factor:
        await session.rollback()
        return TWO_FACTOR_NOT_ENABLED
    guard = FailureThrottle("login", user.email, client_address, throttle, known_client=True)
    await guard.attempt(session)
    if not plausible_code(code) or not await _spend_totp_code(session, user, code):
        await session.commit()  # the attempt stays counted
        return INVALID_CODE
    await guard.succeeded(session)
    codes = await _replace_recovery_codes(session, user)
    record_event(session, actor=principal, action="user.recovery_codes_regenerated",
                 account_id=None, target=("user", user.id))
    _tell(session, user, "New recovery codes for your Linkgate login",
          "new two-factor recovery codes were made for your Linkgate login; the earlier ones "
          "no longer work.")
    await session.commit()
    return codes


async def set_up_two_factor(session: AsyncSession, *, user: User) -> TwoFactorSetUp:
    """In force at once, without a confirming code: for an administrator setting up a login
    (``linkgate create-staff --totp``), who hands the secret and codes to its owner."""
    await begin_write(session)
    secret = new_totp_secret()
    user.totp_secret = secret
    user.totp_enabled_at = utcnow()
    user.totp_last_step = None
    codes = await _replace_recovery_codes(session, user)
    record_event(session, actor=None, action="user.two_factor_enabled", account_id=None,
                 target=("user", user.id))
    await session.commit()
    return TwoFactorSetUp(secret, provisioning_uri(secret, user.email), codes)


async def locked_user(session: AsyncSession, principal: Principal) -> User:
    """The caller's row, locked for this transaction: changes to its own settings queue up
    (two-factor, email preferences), and so do its throttled checks (a burst of guesses cannot all pass one throttle check)."""
    await begin_write(session)
    user = await session.scalar(
        select(User).where(User.id == principal.user_id)
        .with_for_update(key_share=True).execution_options(populate_existing=True)
    )
    if user is None:
        raise Unauthenticated("The session has ended; sign in again.")
    return user


async def _replace_recovery_codes(session: AsyncSession, user: User) -> list[str]:
    """Ten new codes, stored as digests only; every earlier one stops working."""
    codes = new_recovery_codes()
    await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    session.add_all(RecoveryCode(user_id=user.id, code_hash=recovery_code_digest(code)) for code in codes)
    await session.flush()
    return codes


def _tell(session: AsyncSession, user: User, subject: str, change: str) -> None:
    """Security mail about a change to the login's second factor, in the same transaction."""
    queue_security_email(
        session, recipient=user.email, subject=subject,
        body=f"Hello {user.name},\n\n{change}\n\nIf that was not you, reset your password at "
        "once (every session ends with it) and tell our support.\n",
        related=("user", user.id),
    )
