"""Signing up, signing in and changing a password.

Nothing here tells a caller whether an email is registered (DESIGN: "no oracle"): a wrong
password and an unknown email read the same and each run one password hash; signing up with
a taken email answers exactly as a new one does, and the mail it sends tells the owner.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from auth.errors import Unauthenticated
from auth.passwords import hash_password, verify_password
from auth.sessions import IssuedTokens, SessionSettings, end_all_sessions, start_session
from auth.throttle import FailureThrottle, ThrottleSettings
from models.accounts import Account
from models.identity import LinkPurpose, UserSession
from models.users import User
from resolvers.accounts import create_account
from resolvers.emailed_links import (
    MailCaps, create_link, mail_allowed, open_link, retire_links, spend_link,
)
from resolvers.outbox import link_to, queue_security_email
from resolvers.timing import answered_no_sooner_than
from resolvers.tunables import Tunables
from resolvers.two_factor import second_factor_matches
from resolvers.user_errors import UserError
from resolvers.validation import (
    clean_account_name, clean_email, clean_password, clean_person_name, normalize_email,
)

INVALID_CREDENTIALS = UserError(
    message="The email or password is incorrect.", code="INVALID_CREDENTIALS"
)
OTP_REQUIRED = UserError(
    message="Enter the code from your authenticator app (or a recovery code).",
    code="OTP_REQUIRED", field=["otp"],
)
INVALID_OTP = UserError(message="The code is incorrect or was already used.", code="INVALID_OTP",
                        field=["otp"])
TWO_FACTOR_SETUP_REQUIRED = UserError(
    message="Staff logins must use two-factor sign-in; ask an administrator to set it up "
    "(linkgate create-staff --totp).", code="TWO_FACTOR_SETUP_REQUIRED",
)
# Sign-up mail: 5 a day to one address from one client.
SIGN_UP_MAILS_PER_ADDRESS = 5
PASSWORD_MISMATCH = UserError(
    message="This is not the password chosen when signing up.", code="INVALID_CREDENTIALS",
    field=["password"],
)


@dataclass(frozen=True)
class SignedIn:
    tokens: IssuedTokens
    user: User


@dataclass(frozen=True)
class SignedUp:
    """A confirmed sign-up: the new login, signed in, and its first account."""

    tokens: IssuedTokens
    user: User
    account: Account
    enrollment_token: str


async def login(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    otp: str | None,
    client_address: str,
    user_agent: str | None,
    sessions: SessionSettings,
    throttle: ThrottleSettings,
    tunables: Tunables,
) -> SignedIn | UserError:
    """Check the password (and the second factor), throttled as ``auth.throttle`` explains."""
    address = normalize_email(email)
    guard = FailureThrottle(
        "login", address or email[:254], client_address, throttle,
        known_client=await _signed_in_before(session, address, client_address),
    )
    await guard.attempt(session)
    await session.commit()  # counted before the slow hash: parallel guesses see it
    user = None if address is None else await session.scalar(select(User).where(User.email == address))
    # One hash whatever was found: an unknown email costs what a wrong password costs.
    password_ok = verify_password(user.password_hash if user else None, password)
    if user is None or not password_ok:
        return INVALID_CREDENTIALS  # the attempt stays counted
    if user.has_two_factor:
        if not otp:
            # The password was right: no failure, and the client asks for the code. Not a
            # success either: the client's earlier failures stand (no free code guesses).
            await guard.forgive(session)
            await session.commit()
            return OTP_REQUIRED
        if not await second_factor_matches(session, user, otp):
            await session.commit()
            return INVALID_OTP
    elif user.staff_role is not None and tunables.staff_require_totp:
        await guard.forgive(session)
        await session.commit()
        return TWO_FACTOR_SETUP_REQUIRED
    await guard.succeeded(session)
    known_client = await _signed_in_before(session, user.email, client_address)
    tokens = await start_session(
        session, user=user, client_address=client_address, user_agent=user_agent,
        settings=sessions,
    )
    if not known_client:
        queue_security_email(
            session, recipient=user.email, subject="New sign-in to your Linkgate login",
            body=f"Hello {user.name},\n\nyour Linkgate login was just used to sign in from "
            f"{client_address} ({user_agent or 'unknown browser'}).\n\nIf that was you, there is "
            "nothing to do. If not, reset your password at once: every session ends with it.\n",
            related=("user", user.id),
        )
    await session.commit()
    return SignedIn(tokens=tokens, user=user)


async def _signed_in_before(session: AsyncSession, email: str | None, client_address: str) -> bool:
    """Whether the login of ``email`` ever had a session from this client: one statement,
    run for unknown emails too (it finds nothing), so it costs the same either way."""
    if email is None:
        return False
    return bool(await session.scalar(select(exists().where(
        UserSession.client_address == client_address,
        UserSession.user_id == select(User.id).where(User.email == email).scalar_subquery(),
    ))))


async def sign_up(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    name: str,
    account_name: str,
    client_address: str,
    tunables: Tunables,
) -> list[UserError]:
    """Starts a sign-up: emails a confirmation link, or, when the email already has a login,
    a note to its owner. Both answer the same, in the same time; ``confirm_sign_up`` creates
    the login and its account once the link is followed *and* the password is given again,
    so whoever reads the mailbox cannot be signed up with a password someone else chose."""
    checked = {
        "email": clean_email(email),
        "password": clean_password(password),
        "name": clean_person_name(name),
        "accountName": clean_account_name(account_name, field="accountName"),
    }
    errors = [value for value in checked.values() if isinstance(value, UserError)]
    if errors:
        return errors
    address = str(checked["email"])
    async with answered_no_sooner_than(tunables.answer_floor_seconds):
        password_hash = hash_password(password)  # both paths pay for it
        taken = await session.scalar(select(User.id).where(User.email == address)) is not None
        if not await mail_allowed(session, purpose=LinkPurpose.SIGN_UP, email=address,
                                  requested_by=client_address, caps=MailCaps(
                                      per_address_and_client=SIGN_UP_MAILS_PER_ADDRESS,
                                      per_client=tunables.mail_links_per_client,
                                      window=timedelta(days=1))):
            return []  # enough mail from this client; the answer stays the same
        token = await create_link(
            session, purpose=LinkPurpose.SIGN_UP, email=address,
            ttl=timedelta(seconds=tunables.sign_up_ttl_seconds),
            payload=None if taken else {
                "name": checked["name"], "password_hash": password_hash,
                "account_name": checked["accountName"],
            },
        )
        if taken:
            queue_security_email(
                session, recipient=address, subject="Someone tried to sign up with your email",
                body="Hello,\n\nsomeone (perhaps you) tried to create a Linkgate login with this "
                "email address, which already has one. Nothing was changed.\n\nSign in at "
                f"{tunables.public_url}/ or, if you forgot your password, reset it at "
                f"{tunables.public_url}/forgot-password.\n",
            )
        else:
            # No text the signer-up typed: it could be anyone, writing to anyone's mailbox.
            queue_security_email(
                session, recipient=address, subject="Confirm your Linkgate sign-up",
                body="Hello,\n\nconfirm this email address to create your Linkgate login; you "
                "will be asked for the password you chose when signing up:\n\n"
                f"{link_to(tunables.public_url, 'confirm-sign-up', token)}\n\n"
                f"The link works once, for {tunables.sign_up_ttl_seconds // 3600} hours. "
                "If you did not sign up, ignore this email: nothing is created without it.\n",
            )
        await session.commit()
    return []


INVALID_SIGN_UP_LINK = UserError(
    message="This sign-up link is invalid, was already used or has expired; sign up again.",
    code="INVALID_TOKEN", field=["token"],
)


async def confirm_sign_up(
    session: AsyncSession, *, token: str, password: str, client_address: str,
    user_agent: str | None, sessions: SessionSettings, enrollment_key: bytes,
) -> SignedUp | UserError:
    """Creates the login and its first account from a followed sign-up link and the password
    chosen at sign-up, signed in. A wrong password leaves the link as it was."""
    pending = await open_link(session, purpose=LinkPurpose.SIGN_UP, token=token)
    if pending is None or not pending.payload:
        await session.rollback()
        return INVALID_SIGN_UP_LINK
    if not verify_password(pending.payload["password_hash"], password):
        await session.rollback()
        return PASSWORD_MISMATCH
    link = await spend_link(session, purpose=LinkPurpose.SIGN_UP, token=token)
    if link is None or not link.payload:  # a racing confirmation spent it first
        await session.rollback()
        return INVALID_SIGN_UP_LINK
    if await session.scalar(select(User.id).where(User.email == link.email)) is not None:
        # Two sign-ups for one address, both confirmed: the first made the login.
        await session.commit()
        return INVALID_SIGN_UP_LINK
    payload = link.payload
    user = User(email=link.email, name=payload["name"], password_hash=payload["password_hash"])
    session.add(user)
    await session.flush()
    account, enrollment_token = await create_account(
        session, owner_id=user.id, name=payload["account_name"], enrollment_key=enrollment_key
    )
    link.payload = None  # the password hash has no business staying here
    tokens = await start_session(
        session, user=user, client_address=client_address, user_agent=user_agent,
        settings=sessions,
    )
    await session.commit()
    return SignedUp(tokens=tokens, user=user, account=account, enrollment_token=enrollment_token)


async def change_password(
    session: AsyncSession,
    *,
    user_id: int,
    current_password: str,
    new_password: str,
    client_address: str,
    user_agent: str | None,
    sessions: SessionSettings,
    throttle: ThrottleSettings,
) -> SignedIn | UserError:
    """Ends every session and token (the token version moves on) and starts a new session.

    A wrong current password counts as a failed sign-in: a stolen access token is no way to
    guess the password behind it."""
    checked = clean_password(new_password, field="newPassword")
    if isinstance(checked, UserError):
        return checked
    user = await session.get(User, user_id)
    if user is None:
        raise Unauthenticated("Sign in first.")
    # Signed in as that login: a known client (auth.throttle), never slowed by others' guesses.
    guard = FailureThrottle("login", user.email, client_address, throttle, known_client=True)
    await guard.attempt(session)
    await session.commit()
    if not verify_password(user.password_hash, current_password):
        return UserError(
            message="The current password is incorrect.", code="INVALID_CREDENTIALS",
            field=["currentPassword"],
        )
    await guard.succeeded(session)
    await set_password(session, user, checked, reason="password_changed")
    tokens = await start_session(
        session, user=user, client_address=client_address, user_agent=user_agent,
        settings=sessions,
    )
    await session.commit()
    return SignedIn(tokens=tokens, user=user)


async def set_password(session: AsyncSession, user: User, password: str, *, reason: str) -> None:
    """The one way a password changes: every earlier token, reset link and session stops
    working, and the owner is told by security mail."""
    user.password_hash = hash_password(password)
    user.token_version += 1
    await end_all_sessions(session, user_id=user.id, reason=reason)
    # A reset link still in a mailbox would undo the change.
    await retire_links(session, purpose=LinkPurpose.PASSWORD_RESET, user_id=user.id)
    queue_security_email(
        session, recipient=user.email, subject="Your Linkgate password was changed",
        body=f"Hello {user.name},\n\nthe password of your Linkgate login was just changed, and "
        "every session was signed out. If that was not you, reset it at once and tell your "
        "account's owner.\n",
        related=("user", user.id),
    )
    await session.flush()
