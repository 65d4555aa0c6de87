"""Forgotten passwords: a single-use link by email (30 minutes), then a new password that
ends every session and token.

``request_password_reset`` answers the same, in the same time, for any email (DESIGN: "no
oracle"); at most a few links go to one address per window, so it cannot flood a mailbox.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.identity import LinkPurpose
from models.users import User
from resolvers.emailed_links import MailCaps, create_link, mail_allowed, spend_link
from resolvers.outbox import link_to, queue_security_email
from resolvers.sign_in import set_password
from resolvers.timing import answered_no_sooner_than
from resolvers.tunables import Tunables
from resolvers.user_errors import UserError
from resolvers.validation import clean_password, normalize_email

# Reset mail: 3 an hour to one address from one client.
RESET_MAILS_PER_ADDRESS = 3
INVALID_RESET_LINK = UserError(
    message="This reset link is invalid, was already used or has expired; ask for a new one.",
    code="INVALID_TOKEN", field=["token"],
)


async def request_password_reset(
    session: AsyncSession, *, email: str, client_address: str, tunables: Tunables
) -> None:
    """Emails a reset link when ``email`` has a login; does nothing visible otherwise."""
    async with answered_no_sooner_than(tunables.answer_floor_seconds):
        address = normalize_email(email)
        # Counted for every request, registered email or not: the same work either way, and
        # the per-client cap bounds what one client may ask, not only what it gets.
        allowed = await mail_allowed(
            session, purpose=LinkPurpose.PASSWORD_RESET, email=address or email[:254],
            requested_by=client_address, caps=MailCaps(
                per_address_and_client=RESET_MAILS_PER_ADDRESS,
                per_client=tunables.mail_links_per_client, window=timedelta(hours=1)),
        )
        user = None if address is None else await session.scalar(
            select(User).where(User.email == address)
        )
        if user is None or not allowed:
            await session.commit()
            return
        ttl = tunables.password_reset_ttl_seconds
        token = await create_link(
            session, purpose=LinkPurpose.PASSWORD_RESET, email=user.email, user_id=user.id,
            ttl=timedelta(seconds=ttl),
        )
        queue_security_email(
            session, recipient=user.email, subject="Reset your Linkgate password",
            body=f"Hello {user.name},\n\nsomeone (perhaps you) asked to reset the password of "
            "your Linkgate login. Choose a new one here:\n\n"
            f"{link_to(tunables.public_url, 'reset-password', token)}\n\n"
            f"The link works once, for {ttl // 60} minutes. Setting a new password signs you "
            "out everywhere. If you did not ask, ignore this email: your password stays.\n",
            related=("user", user.id),
        )
        await session.commit()


async def reset_password(
    session: AsyncSession, *, token: str, password: str
) -> User | UserError:
    """Sets the password from a followed reset link; every session and token ends."""
    checked = clean_password(password)
    if isinstance(checked, UserError):
        return checked
    link = await spend_link(session, purpose=LinkPurpose.PASSWORD_RESET, token=token)
    user = None if link is None or link.user_id is None else await session.get(User, link.user_id)
    if user is None:
        await session.rollback()
        return INVALID_RESET_LINK
    await set_password(session, user, checked, reason="password_reset")
    await session.commit()
    return user
