"""Linking accounts into groups and unlinking them (DESIGN §1 "Link groups").

The database holds the invariants: ``link_members`` is unique on ``(kind, account_id)`` (the
head has a row too), so per kind an account stands in at most one group and chains cannot
form. The code re-checks them first to answer with a ``userError`` instead of a failed insert;
the unique index still decides between two concurrent links.

``link_members`` is how things stand; ``link_periods`` is how they stood: every member row
(never a head's) has one open period, opened with it and closed when it is deleted, in the same
transaction, so the payer of a charge can be read for any moment (``resolvers.charges``).

A proof of control is the account's enrollment token or its owner's sign-in: email, password
and, when the owner has two-factor sign-in on, a second factor too, so a link never asks for
less than signing in would. Wrong owner credentials also count as failed sign-ins of that
email (``auth.throttle``), so linking gives no password guesses beyond the sign-in's own. Every
link made with a proof is told to the linked account's owner by security mail.

A proof is checked in one transaction and the link written in a second (see ``link_account``),
so the write re-checks it on the linked account's locked row (``_still_proven``): a rotated
enrollment token or a changed password stops proving anything the moment that change
commits, even for a link already past its check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from auth.enrollment import enrollment_token_matches, hash_enrollment_token
from auth.errors import NotFound, PermissionDenied
from auth.passwords import verify_password
from auth.permissions import LINK_SCOPES, Permission, sorted_permissions
from auth.policy import AccessMap
from auth.principals import Principal
from auth.throttle import FailureThrottle, ThrottleSettings
from models.accounts import Account, AccountStatus
from models.base import utcnow
from models.links import LinkGroup, LinkKind, LinkMember, LinkMethod, LinkPeriod
from models.users import User
from resolvers.accounts import require_account
from resolvers.audit_log import record_event
from resolvers.database import begin_write
from resolvers.ledger import lock_accounts
from resolvers.outbox import queue_security_email
from resolvers.two_factor import second_factor_matches
from resolvers.user_errors import UserError
from resolvers.validation import clean_optional_text, normalize_email, untypable_character

MAX_FRIENDLY_NAME = 100

# Verified against when the account number is unknown, so a missing account costs the same.
_NO_TOKEN_HASH = hash_enrollment_token("linkgate-no-such-account")


@dataclass(frozen=True)
class OwnerCredentials:
    account_number: str
    email: str
    password: str
    # The owner's second factor (TOTP or recovery code), needed when their two-factor is on.
    otp: str | None = None


@dataclass(frozen=True)
class EnrollmentProof:
    account_number: str
    enrollment_token: str


Proof = OwnerCredentials | EnrollmentProof


@dataclass(frozen=True)
class Linked:
    group: LinkGroup
    head_account_id: int
    member: LinkMember


@dataclass(frozen=True)
class Unlinked:
    group: LinkGroup | None  # None when the last member left, which dissolves the group
    head_account_id: int


def proof_throttle(principal: Principal, account_number: str, settings: ThrottleSettings) -> FailureThrottle:
    """Wrong proofs are counted per (account, user), per user and per account, as sign-ins
    are per (email, client) (``auth.throttle``): the caller is signed in, so its login is
    the client, and one user's wrong guesses block no one else from linking that account."""
    return FailureThrottle("link", account_number, f"user:{principal.user_id}", settings)


def credentials_throttle(email: str, client_address: str, settings: ThrottleSettings) -> FailureThrottle:
    """The sign-in's own buckets (``resolvers.sign_in.login``): owner credentials are a
    password guess like any sign-in, so they share its budget instead of adding to it."""
    return FailureThrottle("login", normalize_email(email) or email[:254], client_address, settings)


INVALID_PROOF = UserError(
    message="The account number and proof of control do not match.", code="INVALID_PROOF",
    field=["proof"],
)
ALREADY_LINKED = UserError(
    message="The account is already in a group of this kind.", code="ALREADY_LINKED",
    field=["accountNumber"],
)


@dataclass(frozen=True)
class _Checked:
    """What a proof showed. ``account`` is None unless the whole proof holds (a wrong half is
    never named); ``credentials_right`` says whether an owner-credentials proof had the right
    password (and second factor) for its email, whatever the account: that alone decides the
    sign-in throttle."""

    account: Account | None
    method: LinkMethod
    credentials_right: bool = False
    # The owner's sign-in as the credentials were checked against, for ``_still_proven``.
    owner_id: int | None = None
    owner_token_version: int | None = None
    owner_password_hash: str | None = None


async def _proven_account(session: AsyncSession, proof: Proof, enrollment_key: bytes) -> _Checked:
    """Checks the proof; spends the owner's second factor only after the password matched."""
    number = proof.account_number
    # A number no account can have (a NUL or a lone surrogate, which the database refuses)
    # is simply wrong, like any unknown number.
    account = None if untypable_character(number) else await session.scalar(
        select(Account).where(Account.number == number)
    )
    if isinstance(proof, EnrollmentProof):
        # An unknown number is checked against a made-up account, so it costs the same.
        matches = enrollment_token_matches(
            proof.enrollment_token, key=enrollment_key,
            account_id=account.id if account else 0,
            version=account.enrollment_token_version if account else 0,
            legacy_hash=account.enrollment_token_hash if account else _NO_TOKEN_HASH,
        ) and account is not None
        return _Checked(account if matches and account else None, LinkMethod.ENROLLMENT_TOKEN)
    email = normalize_email(proof.email)
    owner = None if email is None else await session.scalar(select(User).where(User.email == email))
    # The password is checked even when the rest is wrong, so every failure costs the same.
    password_ok = verify_password(owner.password_hash if owner else None, proof.password)
    otp = proof.otp or ""
    credentials_right = owner is not None and password_ok and (
        # As at sign-in: with two-factor on, the password alone proves nothing. A missing or
        # wrong code reads as any other wrong half.
        not owner.has_two_factor or (otp != "" and await second_factor_matches(session, owner, otp))
    )
    proven = credentials_right and account is not None and owner is not None and (
        account.owner_id == owner.id
    )
    return _Checked(
        account if proven else None, LinkMethod.OWNER_CREDENTIALS, credentials_right,
        owner_id=owner.id if owner else None,
        owner_token_version=owner.token_version if owner else None,
        owner_password_hash=owner.password_hash if owner else None,
    )


async def _still_proven(
    session: AsyncSession, proof: Proof, checked: _Checked, target: Account, enrollment_key: bytes
) -> bool:
    """Whether the proof checked in the first transaction still holds, on ``target`` as
    re-read under its row lock (``lock_accounts``).

    ``rotateEnrollmentToken`` bumps the version (and drops the legacy digest) under that same
    lock, so either it committed first and the token is checked against the new version here,
    or it waits until this link is in: never does a link made with the old token land after
    the rotation committed. A password change bumps the owner's ``token_version``; the owner's
    row is read ``FOR SHARE``, so a change in flight either committed first (and is seen) or
    waits for this link. Cheap either way: an HMAC, or two columns compared, no password hash.
    """
    if isinstance(proof, EnrollmentProof):
        return enrollment_token_matches(
            proof.enrollment_token, key=enrollment_key, account_id=target.id,
            version=target.enrollment_token_version, legacy_hash=target.enrollment_token_hash,
        )
    if checked.owner_id is None or target.owner_id != checked.owner_id:
        return False
    owner = (await session.execute(
        select(User.token_version, User.password_hash).where(User.id == checked.owner_id)
        .with_for_update(read=True)
    )).one_or_none()
    return owner is not None and (owner.token_version, owner.password_hash) == (
        checked.owner_token_version, checked.owner_password_hash
    )


async def link_account(
    session: AsyncSession,
    access: AccessMap,
    *,
    principal: Principal,
    head_account_id: int,
    kind: LinkKind,
    proof: Proof,
    friendly_name: str | None,
    group_name: str | None,
    client_address: str,
    throttle: ThrottleSettings,
    enrollment_key: bytes,
) -> Linked | UserError:
    """Link the proven account into the group of ``kind`` headed by ``head_account_id``.

    Needs LINKS_MANAGE on the head (and BILLING_MANAGE for a BILLING group). The group is
    created on the first link. Wrong proofs are throttled per account and user
    (``proof_throttle``); owner credentials also per email and ``client_address``, as
    sign-ins are (``credentials_throttle``).
    """
    await begin_write(session)
    head = await require_account(session, access, head_account_id, Permission.LINKS_MANAGE)
    if kind is LinkKind.BILLING:
        access.require(head.id, Permission.BILLING_MANAGE)
    friendly = clean_optional_text(friendly_name, max_length=MAX_FRIENDLY_NAME,
                                   field=["friendlyName"], too_long_code="NAME_TOO_LONG")
    if isinstance(friendly, UserError):
        return friendly
    group_label = clean_optional_text(group_name, max_length=MAX_FRIENDLY_NAME,
                                      field=["groupName"], too_long_code="NAME_TOO_LONG")
    if isinstance(group_label, UserError):
        return group_label
    number = proof.account_number.strip().upper()
    proof = (
        EnrollmentProof(number, proof.enrollment_token) if isinstance(proof, EnrollmentProof)
        else OwnerCredentials(number, proof.email, proof.password, proof.otp)
    )
    if number == head.number:
        return UserError(
            message="An account cannot be linked to itself.", code="SAME_ACCOUNT",
            field=["accountNumber"],
        )
    guard = proof_throttle(principal, number, throttle)
    await guard.attempt(session)
    sign_in_guard = None
    if isinstance(proof, OwnerCredentials):
        sign_in_guard = credentials_throttle(proof.email, client_address, throttle)
        await sign_in_guard.attempt(session)
    checked = await _proven_account(session, proof, enrollment_key)
    target, method = checked.account, checked.method
    if sign_in_guard is not None and checked.credentials_right:
        await sign_in_guard.succeeded(session)
    if target is None:
        await session.commit()  # the attempts stay counted
        return INVALID_PROOF
    await guard.succeeded(session)
    if AccountStatus.CLOSED in (head.status, target.status):
        await session.commit()
        return UserError(
            message="A closed account cannot be linked.", code="ACCOUNT_CLOSED",
            field=["accountNumber" if target.status is AccountStatus.CLOSED else "headAccountId"],
        )
    places = {
        row.account_id: row
        for row in (await session.scalars(
            select(LinkMember).where(
                LinkMember.kind == kind, LinkMember.account_id.in_([head.id, target.id])
            )
        )).all()
    }
    head_place = places.get(head.id)
    if target.id in places:
        await session.commit()
        return ALREADY_LINKED
    if head_place is not None and not head_place.is_head:
        await session.commit()
        return UserError(
            message="The head account is itself a member of a group of this kind; groups "
            "do not chain.", code="ALREADY_LINKED", field=["headAccountId"],
        )
    # The throttle bookkeeping above is committed on its own: a lost race below rolls back.
    await session.commit()
    await begin_write(session)
    # Links into one head take turns on the head account's row, so the first of two
    # concurrent links creates the group and the second joins it (rather than both creating
    # one and the loser reading ALREADY_LINKED). Then the head's place is read again, locked:
    # an unlink dissolving the group meanwhile either went first (start a new group) or
    # waits until this link is in. The linked account's row is locked with it (ascending
    # ids, the order every writer uses), the row a token rotation locks, and the proof is
    # checked again against it.
    locked = await lock_accounts(session, [head.id, target.id])
    head, target = locked[head.id], locked[target.id]
    if not await _still_proven(session, proof, checked, target, enrollment_key):
        # The token was rotated, or the password changed, since the check. Not counted as a
        # failed proof: the secret was right when checked (that check already counted and
        # forgave it), so this says nothing a guesser could use; the same stale secret sent
        # again is counted by the first check, like any wrong one.
        await session.rollback()
        return INVALID_PROOF
    head_place = await session.scalar(
        select(LinkMember).where(LinkMember.kind == kind, LinkMember.account_id == head.id)
        .with_for_update()
    )
    if head_place is not None and not head_place.is_head:
        await session.rollback()
        return UserError(
            message="The head account is itself a member of a group of this kind; groups "
            "do not chain.", code="ALREADY_LINKED", field=["headAccountId"],
        )
    try:
        if head_place is None:
            group = LinkGroup(kind=kind, name=group_label)
            session.add(group)
            await session.flush()
            session.add(LinkMember(
                group_id=group.id, kind=kind, account_id=head.id, is_head=True,
                linked_via=method,
            ))
        else:
            group = await session.get(LinkGroup, head_place.group_id)
            assert group is not None
        member = LinkMember(
            group_id=group.id, kind=kind, account_id=target.id, is_head=False,
            friendly_name=friendly, linked_via=method, linked_at=utcnow(),
        )
        session.add(member)
        _open_period(session, member, head_account_id=head.id)
        await session.flush()
    except IntegrityError:
        # A concurrent link won the unique (kind, account_id) index.
        await session.rollback()
        return ALREADY_LINKED
    details = {
        "kind": kind.value, "group_id": group.id, "head": head.number, "account": target.number,
        "friendly_name": friendly, "linked_via": method.value,
    }
    for account_id in (head.id, target.id):
        record_event(
            session, actor=principal, action="link.created", account_id=account_id,
            target=("link_group", group.id), after=details,
        )
    await _tell_owner(session, head=head, target=target, kind=kind, method=method,
                      group_id=group.id)
    await session.commit()
    return Linked(group=group, head_account_id=head.id, member=member)


def _open_period(session: AsyncSession, member: LinkMember, *, head_account_id: int) -> None:
    """The member's stretch under ``head_account_id``, from its ``linked_at``. A head has none:
    it pays for itself."""
    session.add(LinkPeriod(
        kind=member.kind, account_id=member.account_id, group_id=member.group_id,
        head_account_id=head_account_id, valid_from=member.linked_at,
    ))


async def _close_period(session: AsyncSession, group_id: int, account_id: int, at: datetime) -> None:
    """Ends the member's open period at ``at``, with its ``link_members`` row: a charge made
    from ``at`` on has the new payer, one made before keeps the old."""
    await session.execute(
        update(LinkPeriod).where(
            LinkPeriod.group_id == group_id, LinkPeriod.account_id == account_id,
            LinkPeriod.valid_to.is_(None),
        ).values(valid_to=at).execution_options(synchronize_session=False)
    )


# How each proof is named in the owner's mail, and what to do if the owner did not link.
_PROOF_WORDING = {
    LinkMethod.OWNER_CREDENTIALS: ("your email and password", "change your password"),
    LinkMethod.ENROLLMENT_TOKEN: ("the account's enrollment token",
                                  "check who has seen your invoices"),
}


async def _tell_owner(
    session: AsyncSession, *, head: Account, target: Account, kind: LinkKind,
    method: LinkMethod, group_id: int,
) -> None:
    """Security mail to the linked account's owner, in the link's transaction: whoever holds
    their password or enrollment token can hand part of the account to another one, so the
    owner hears of it at once. It names the head and the kind, never a secret."""
    owner = await session.get(User, target.owner_id)
    if owner is None:
        return
    flowing = ", ".join(permission.value for permission in sorted_permissions(LINK_SCOPES[kind]))
    proof, advice = _PROOF_WORDING.get(method, ("a proof of control", "check who could give it"))
    queue_security_email(
        session, recipient=owner.email,
        subject=f"Your Linkgate account {target.number} was linked to another account",
        body=f"Hello {owner.name},\n\nyour Linkgate account \"{target.name}\" ({target.number}) "
        f"was linked, with {proof}, into the "
        f"{kind.value} group headed by the account \"{head.name}\" ({head.number}). People "
        f"with these permissions on that account now hold them on yours too: {flowing}.\n\n"
        "If that was you, there is nothing to do. If not, unlink it at once (unlinkAccount, "
        f"from your account's side), {advice}, and tell our support.\n",
        related=("link_group", group_id),
    )


async def unlink_account(
    session: AsyncSession,
    access: AccessMap,
    *,
    principal: Principal,
    link_group_id: int,
    account_id: int,
) -> Unlinked | UserError:
    """LINKS_MANAGE on the head or on the member itself. The last member out dissolves the group.

    A BILLING unlink changes who pays for charges made from now on; charges already made keep
    the payer they were made with.
    """
    await begin_write(session)
    group = await session.get(LinkGroup, link_group_id)
    head_account_id = None if group is None else await session.scalar(
        select(LinkMember.account_id).where(
            LinkMember.group_id == link_group_id, LinkMember.is_head
        )
    )
    if head_account_id is not None:
        # The same first lock as ``link_account`` (the head account's row): links and unlinks
        # of one group take turns instead of deadlocking on each other's member rows.
        await lock_accounts(session, [head_account_id])
    # Locked (PostgreSQL) so a concurrent link into this group cannot land in a group being
    # dissolved; on SQLite ``begin_write`` already serialises writers.
    rows = [] if group is None else list((await session.scalars(
        select(LinkMember).where(LinkMember.group_id == link_group_id)
        .order_by(LinkMember.id).with_for_update()
    )).all())
    head = next((row for row in rows if row.is_head), None)
    member = next((row for row in rows if row.account_id == account_id and not row.is_head), None)
    # A group is there for the caller if it sees its head, or if the account it names is a
    # member it sees: another customer's group answers as a group that does not exist.
    if group is None or head is None or not (
        access.can_see(head.account_id) or (member is not None and access.can_see(account_id))
    ):
        raise NotFound("No such link group.")
    if not (access.has(head.account_id, Permission.LINKS_MANAGE)
            or access.has(account_id, Permission.LINKS_MANAGE)):
        raise PermissionDenied(
            "You need the LINKS_MANAGE permission on the head account or on the member.",
            permission=Permission.LINKS_MANAGE.value,
        )
    if account_id == head.account_id:
        return UserError(
            message="The head account cannot be unlinked; unlink its members instead.",
            code="HEAD_ACCOUNT", field=["accountId"],
        )
    if member is None:
        return UserError(
            message="The account is not a member of this group.", code="NOT_LINKED",
            field=["accountId"],
        )
    rows = (await session.execute(
        select(Account.id, Account.number).where(Account.id.in_([head.account_id, account_id]))
    )).all()
    numbers = {pk: number for pk, number in rows}
    details = {
        "kind": group.kind.value, "group_id": group.id, "head": numbers[head.account_id],
        "account": numbers[account_id], "friendly_name": member.friendly_name,
        "linked_via": member.linked_via.value,
    }
    await _close_period(session, group.id, account_id, utcnow())
    await session.execute(delete(LinkMember).where(LinkMember.id == member.id))
    remaining = await session.scalar(
        select(func.count()).select_from(LinkMember).where(
            LinkMember.group_id == group.id, LinkMember.is_head.is_(False)
        )
    )
    dissolved = not remaining
    if dissolved:
        # The head leaves too; the group row stays, so charges and invoices made while it
        # existed keep pointing at it (their payer never changes). A head has no period, and
        # the last member's was closed above, so the group leaves none open.
        await session.execute(delete(LinkMember).where(LinkMember.id == head.id))
    for audited in (head.account_id, account_id):
        record_event(
            session, actor=principal, action="link.removed", account_id=audited,
            target=("link_group", group.id), before=details,
            after={"group_dissolved": dissolved},
        )
    await session.commit()
    return Unlinked(group=None if dissolved else group, head_account_id=head.account_id)
