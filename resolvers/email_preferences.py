"""A login's own email preferences: the categories it receives (WHMCS: opting out of
newsletters).

Stored as what the login opted out of (``User.email_opt_outs``), so a category added later is
received until declined. The outbox writer (``resolvers.outbox.queue_email``) honours it for
every categorised email, whoever it is addressed as (owner, contact, reminder recipient);
security mail (invitations, password resets, sign-in alerts) has no category and is always sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from auth.principals import Principal
from models.contacts import EmailPreference
from models.users import User
from resolvers.audit_log import record_event
from resolvers.two_factor import locked_user


def received(opt_outs: Sequence[str] | None) -> list[EmailPreference]:
    """The categories a login receives, in the enum's order: every one it has not opted out of."""
    declined = set(opt_outs or [])
    return [category for category in EmailPreference if category.value not in declined]


async def set_email_preferences(
    session: AsyncSession, *, principal: Principal, receive: Iterable[EmailPreference]
) -> User:
    """The caller's login receives exactly ``receive`` from now on (repeats do not matter);
    audited on no account, as the login's other settings are, when it changes."""
    user = await locked_user(session, principal)
    wanted = set(receive)
    before = [category.value for category in received(user.email_opt_outs)]
    after = [category.value for category in EmailPreference if category in wanted]
    if after != before:
        user.email_opt_outs = [category.value for category in EmailPreference if category not in wanted]
        record_event(session, actor=principal, action="user.email_preferences_set", account_id=None,
                     target=("user", user.id), before={"receive": before}, after={"receive": after})
    await session.commit()
    return user
