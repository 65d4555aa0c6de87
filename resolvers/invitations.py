"""Invitations: the only way a login joins an account as a sub-account.

Whoever activates a contact never chooses (or learns) anything about the login behind its
email: activating it (``create_invitation``) only emails a single-use link to that address.
Whoever follows the link proves they read that mailbox, and then either creates the login
with a name and password of their own or, when the email already has a login, accepts it
signed in as that very user. So
an inviter cannot plant a password on an address, nor attach a login it does not control,
nor tell from the answer whether an email is registered (DESIGN: "no oracle").

Only the token's digest is stored (``auth.secrets``); the link travels as security mail,
attached to no account, so no account's email history shows it. Accepting spends the
invitation with one conditional UPDATE: two requests racing with one link cannot both win.

An invitation speaks for its inviter, so it is worth no more than the inviter's rights *at
acceptance*: the inviter is looked up again then (``_inviter_holds``). If the inviter's login
is gone or no longer holds CONTACTS_MANAGE on the account, the link is dead (``INVALID_TOKEN``,
nothing changes); otherwise the membership gets the invitation's permissions that the inviter
still holds there, and no others. So a sub-account that is removed or demoted cannot come back,
or keep what it lost, through an invitation it sent to an address of its own beforehand.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from auth.errors import NotFound
from auth.passwords import hash_password
from auth.permissions import Permission, Permissions, parse_permissions, permission_names
from auth.policy import AccessMap, load_access
from auth.principals import Principal
from auth.secrets import digest, new_secret
from auth.sessions import IssuedTokens, SessionSettings, start_session
from auth.throttle import count_in_window
from models.accounts import Account, Membership
from models.base import utcnow
from models.contacts import Contact, EmailPreference
from models.identity import Invitation
from models.users import User
from resolvers.accounts import require_account
from resolvers.audit_log import record_event
from resolvers.database import begin_write
from resolvers.outbox import link_to, queue_account_notice, queue_security_email
from resolvers.tunables import Tunables
from resolvers.user_errors import UserError
from resolvers.validation import clean_password, clean_person_name

TOKEN_PREFIX = "lgi_"
# ``lgi_`` + 43 URL-safe characters (32 random bytes); anything else is no token of ours.
_TOKEN_SHAPE = re.compile(r"lgi_[A-Za-z0-9_-]{20,100}")
# Invitations (resends included) a day: to one address from one account, and from one account
# or one inviter in all. They bound the mail anyone can have sent to addresses they typed in;
# counted per address, not per contact, so deleting and re-adding a contact changes nothing.
MAX_INVITATIONS_PER_ADDRESS_PER_DAY = 5
MAX_INVITATIONS_PER_DAY = 50


class InvitationStatus(enum.Enum):
    """Derived from the timestamps, never stored: an invitation expires by itself."""

    PENDING = "PENDING"
    ACCEPTED = "ACCEPTED"
    REVOKED = "REVOKED"
    EXPIRED = "EXPIRED"


def status_of(accepted_at: datetime | None, revoked_at: datetime | None, expires_at: datetime,
              now: datetime | None = None) -> InvitationStatus:
    if accepted_at is not None:
        return InvitationStatus.ACCEPTED
    if revoked_at is not None:
        return InvitationStatus.REVOKED
    if expires_at <= (now or utcnow()):
        return InvitationStatus.EXPIRED
    return InvitationStatus.PENDING


INVALID_INVITATION = UserError(
    message="This invitation link is invalid, was already used, was withdrawn or has expired; "
    "ask the account for a new one.",
    code="INVALID_TOKEN", field=["token"],
)
SIGN_IN_REQUIRED = UserError(
    message="This invitation is for an email that already has a login: sign in as that user, "
    "then accept it.",
    code="SIGN_IN_REQUIRED", field=["token"],
)
WRONG_USER = UserError(
    message="This invitation is for another email than the login you are signed in with: "
    "sign out, or sign in as the invited user, then accept it.",
    code="WRONG_USER", field=["token"],
)
OWNER_CANNOT_JOIN = UserError(
    message="The owner holds every permission on the account and cannot be a sub-account.",
    code="OWNER_NOT_RESTRICTABLE", field=["token"],
)
STAFF_CANNOT_JOIN = UserError(
    message="Staff logins cannot be sub-accounts.", code="STAFF_USER", field=["token"],
)
ALREADY_MEMBER = UserError(
    message="You are already a sub-account of this account; its permissions are changed with "
    "setSubAccountPermissions.",
    code="ALREADY_ACTIVATED", field=["token"],
)


@dataclass(frozen=True)
class Accepted:
    """An accepted invitation: the membership, and fresh tokens when a login was created."""

    invitation: Invitation
    membership: Membership
    user: User
    tokens: IssuedTokens | None


async def create_invitation(
    session: AsyncSession, *, principal: Principal, account: Account, contact: Contact,
    permissions: Permissions, tunables: Tunables,
) -> Invitation | UserError:
    """A new pending invitation for the contact, emailed in the caller's transaction.

    Resending is allowed: the contact's pending invitation (if any) is revoked and a new link
    goes out, so only the newest link works. The caller has locked the contact's row.
    """
    now = utcnow()
    if not await _invitation_allowed(session, account_id=account.id, email=contact.email,
                                     inviter_id=principal.user_id):
        return UserError(
            message="Too many invitations today (at most "
            f"{MAX_INVITATIONS_PER_ADDRESS_PER_DAY} to one address per account, and "
            f"{MAX_INVITATIONS_PER_DAY} from one account or one inviter); try again tomorrow.",
            code="TOO_MANY_INVITATIONS", field=["contactId"],
        )
    await revoke_pending(session, principal=principal, reason="resent", contact_id=contact.id)
    token, token_hash = new_secret(TOKEN_PREFIX)
    ttl = tunables.invitation_ttl_seconds
    invitation = Invitation(
        account_id=account.id, contact_id=contact.id, email=contact.email,
        permissions=permission_names(permissions), invited_by_id=principal.user_id,
        token_hash=token_hash, created_at=now, expires_at=now + timedelta(seconds=ttl),
    )
    session.add(invitation)
    await session.flush()
    inviter = await session.get(User, principal.user_id)
    # Names the account and the inviter, nothing more: the mailbox may not be the person
    # the inviter meant, and a mail says nothing of any login the address may have.
    queue_security_email(
        session, recipient=contact.email,
        subject="You are invited to a Linkgate account",  # no typed text in the subject
        body=f"Hello,\n\n{inviter.name if inviter else 'Someone'} invited you to join the "
        f"Linkgate account \"{account.name}\". Accept here:\n\n"
        f"{link_to(tunables.public_url, 'accept-invitation', token)}\n\n"
        "You choose your own name and password; if this email already has a Linkgate login, "
        f"sign in first. The link works once, for {max(ttl // 86_400, 1)} day(s). If you did "
        "not expect this invitation, ignore this email.\n",
        related=("invitation", invitation.id),
    )
    record_event(
        session, actor=principal, action="invitation.created", account_id=account.id,
        target=("invitation", invitation.id),
        after={"email": invitation.email, "permissions": invitation.permissions,
               "contact_id": contact.id},
    )
    return invitation


async def _invitation_allowed(
    session: AsyncSession, *, account_id: int, email: str, inviter_id: int
) -> bool:
    """Counted atomically (``auth.throttle.count_in_window``): parallel requests cannot race
    past the caps. A refused request rolls back, and its counts with it."""
    day = timedelta(days=1)
    return (
        await count_in_window(session, "invite:address", f"{account_id}\n{email}", window=day)
        <= MAX_INVITATIONS_PER_ADDRESS_PER_DAY
    ) & (
        await count_in_window(session, "invite:account", str(account_id), window=day)
        <= MAX_INVITATIONS_PER_DAY
    ) & (
        await count_in_window(session, "invite:inviter", str(inviter_id), window=day)
        <= MAX_INVITATIONS_PER_DAY
    )


async def revoke_pending(
    session: AsyncSession, *, principal: Principal, reason: str, contact_id: int
) -> list[int]:
    """Revokes the contact's pending invitations (a resend, its deletion, a new email), each
    audited; the ids revoked. In the caller's transaction."""
    now = utcnow()
    rows = (await session.execute(
        update(Invitation)
        .where(Invitation.contact_id == contact_id, Invitation.accepted_at.is_(None),
               Invitation.revoked_at.is_(None))
        .values(revoked_at=now)
        .returning(Invitation.id, Invitation.account_id)
        .execution_options(synchronize_session=False)
    )).all()
    for invitation_id, account_id in rows:
        record_event(
            session, actor=principal, action="invitation.revoked", account_id=account_id,
            target=("invitation", invitation_id), after={"reason": reason},
        )
    return [invitation_id for invitation_id, _ in rows]


async def revoke_invitation(
    session: AsyncSession, access: AccessMap, *, principal: Principal, invitation_id: int
) -> Invitation | UserError:
    """Withdraws a pending invitation (its link stops working); revoking twice changes nothing.

    Unknown and invisible invitations are both NotFound; an accepted one is a userError (the
    sub-account is removed with deleteContact or reduced with setSubAccountPermissions)."""
    await begin_write(session)
    invitation = await session.get(Invitation, invitation_id)
    if invitation is None or not access.can_see(invitation.account_id):
        raise NotFound("No such invitation.")
    await require_account(session, access, invitation.account_id, Permission.CONTACTS_MANAGE)
    revoked = (await session.execute(
        update(Invitation)
        .where(Invitation.id == invitation.id, Invitation.accepted_at.is_(None),
               Invitation.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .returning(Invitation.id)
        .execution_options(synchronize_session=False)
    )).scalar_one_or_none()
    await session.refresh(invitation)
    if revoked is None:  # accepted, or already revoked: nothing to write
        await session.commit()
        if invitation.accepted_at is not None:
            return UserError(
                message="This invitation was already accepted; delete the contact or change "
                "the sub-account's permissions instead.",
                code="ALREADY_ACCEPTED", field=["invitationId"],
            )
        return invitation
    record_event(
        session, actor=principal, action="invitation.revoked", account_id=invitation.account_id,
        target=("invitation", invitation.id), after={"reason": "revoked"},
    )
    await session.commit()
    return invitation


def _checked_token(token: str) -> str | None:
    token = token.strip()
    return token if _TOKEN_SHAPE.fullmatch(token) else None


def _checked_new_login(name: str | None, password: str | None) -> tuple[str, str] | list[UserError]:
    """The new login's name and password, or every problem with them."""
    checked_name = clean_person_name(name or "")
    checked_password = clean_password(password or "")
    if isinstance(checked_name, str) and isinstance(checked_password, str):
        return checked_name, checked_password
    return [value for value in (checked_name, checked_password) if isinstance(value, UserError)]


async def accept_invitation(
    session: AsyncSession, *, principal: Principal | None, token: str, name: str | None,
    password: str | None, client_address: str, user_agent: str | None,
    sessions: SessionSettings,
) -> Accepted | UserError | list[UserError]:
    """Turns a followed invitation link into a membership.

    - The email has no login: one is created with the invitee's own name and password, and
      signed in (``tokens``). The caller must not be signed in as someone else.
    - The email has a login: it is attached only when the caller is signed in as it (name and
      password are ignored, nothing about the login changes). Otherwise nothing changes and the
      invitation stays pending (``SIGN_IN_REQUIRED`` / ``WRONG_USER``).
    - Owner and staff logins cannot join; an existing membership stays as it is. These refusals
      change nothing either.
    """
    checked = _checked_token(token)
    if checked is None:
        return INVALID_INVITATION
    await begin_write(session)
    now = utcnow()
    # Locked (PostgreSQL): a racing acceptance of the same link waits here, then finds it spent.
    invitation = await session.scalar(select(Invitation).where(
        Invitation.token_hash == digest(checked), Invitation.accepted_at.is_(None),
        Invitation.revoked_at.is_(None), Invitation.expires_at > now,
    ).with_for_update(key_share=True))
    contact = None if invitation is None or invitation.contact_id is None else await session.get(
        Contact, invitation.contact_id
    )
    if invitation is None or contact is None or contact.email != invitation.email:
        # (A deleted contact or a changed email revokes the invitation; this is the backstop.)
        await session.rollback()
        return INVALID_INVITATION
    inviter_holds = await _inviter_holds(session, invitation)
    if inviter_holds is None:
        await session.rollback()
        return INVALID_INVITATION
    user = await session.scalar(select(User).where(User.email == invitation.email))
    if principal is not None and (user is None or principal.user_id != user.id):
        await session.rollback()
        return WRONG_USER
    new_login: tuple[str, str] | None = None
    if user is None:
        checked_login = _checked_new_login(name, password)
        if isinstance(checked_login, list):
            await session.rollback()
            return checked_login
        new_login = checked_login
    elif principal is None:
        await session.rollback()
        return SIGN_IN_REQUIRED
    account = await session.get(Account, invitation.account_id)
    assert account is not None  # the invitation goes with its account (ON DELETE CASCADE)
    refusal = None if user is None else await _cannot_join(session, user, account)
    if refusal is not None:
        await session.rollback()
        return refusal
    spent = (await session.execute(
        update(Invitation)
        .where(Invitation.id == invitation.id, Invitation.accepted_at.is_(None),
               Invitation.revoked_at.is_(None), Invitation.expires_at > now)
        .values(accepted_at=now)
        .returning(Invitation.id)
        .execution_options(synchronize_session=False)
    )).scalar_one_or_none()
    if spent is None:  # another request spent (or revoked) it since it was read
        await session.rollback()
        return INVALID_INVITATION
    created = new_login is not None
    try:
        if new_login is not None:
            new_name, new_password = new_login
            user = User(email=invitation.email, name=new_name,
                        password_hash=hash_password(new_password))
            session.add(user)
            await session.flush()
        assert user is not None
        invited = parse_permissions(invitation.permissions)
        permissions = permission_names(invited & inviter_holds)
        membership = Membership(user_id=user.id, account_id=account.id, permissions=permissions)
        session.add(membership)
        await session.flush()
    except IntegrityError:
        # A concurrent acceptance made the login or the membership first (PostgreSQL; SQLite
        # queues writers). Nothing of this one stays.
        await session.rollback()
        return ALREADY_MEMBER if not created else SIGN_IN_REQUIRED
    await session.execute(
        update(Invitation).where(Invitation.id == invitation.id)
        .values(accepted_by_id=user.id).execution_options(synchronize_session=False)
    )
    if contact.user_id is None:
        contact.user_id = user.id
    actor = principal or Principal(user_id=user.id)
    record_event(
        session, actor=actor, action="subaccount.activated", account_id=account.id,
        target=("user", user.id), before={"permissions": []},
        after={"permissions": permissions, "contact_id": contact.id,
               "invitation_id": invitation.id,
               # What the invitation offered beyond the inviter's rights at acceptance.
               **({"withheld": permission_names(invited - inviter_holds)}
                  if invited - inviter_holds else {})},
    )
    await queue_account_notice(
        session, account_id=account.id, category=EmailPreference.GENERAL,
        subject=f"New sub-account on {account.name}",
        body=f"{user.name} ({user.email}) accepted an invitation and is now a sub-account of "
        f"{account.name} ({account.number}).\n\nPermissions: {', '.join(permissions) or 'none'}\n",
        related=("user", user.id),
    )
    tokens = None
    if created:
        tokens = await start_session(
            session, user=user, client_address=client_address, user_agent=user_agent,
            settings=sessions,
        )
    await session.commit()
    await session.refresh(invitation)
    return Accepted(invitation=invitation, membership=membership, user=user, tokens=tokens)


async def _inviter_holds(session: AsyncSession, invitation: Invitation) -> Permissions | None:
    """What the inviter holds on the invitation's account now, or None when the invitation no
    longer speaks for anyone: the inviter's login is gone, or it lost CONTACTS_MANAGE there
    (removed as a sub-account, demoted). Checked at acceptance, since rights change after an
    invitation is sent."""
    inviter = None if invitation.invited_by_id is None else await session.get(
        User, invitation.invited_by_id
    )
    if inviter is None:
        return None
    access = await load_access(
        session, Principal(user_id=inviter.id, staff_role=inviter.staff_role)
    )
    if not access.has(invitation.account_id, Permission.CONTACTS_MANAGE):
        return None
    return access.permissions_on(invitation.account_id)


async def _cannot_join(session: AsyncSession, user: User, account: Account) -> UserError | None:
    """Why an existing login cannot become a sub-account here, decided only at acceptance
    (when the one asking is that login): the invitation never tells the inviter."""
    if user.id == account.owner_id:
        return OWNER_CANNOT_JOIN
    if user.staff_role is not None:
        return STAFF_CANNOT_JOIN
    member = await session.scalar(select(Membership.id).where(
        Membership.user_id == user.id, Membership.account_id == account.id
    ))
    return None if member is None else ALREADY_MEMBER
