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
email (``auth.throttle``), so linking gives no password guesses beyond the sign-in's own.

Whoever is linked is told (``_tell_member``): every link and unlink is audited on both accounts
and noticed, in category GENERAL, to the linked account's owner and its GENERAL contacts.

A proof is checked in one transaction and the link written in a second (see ``link_account``),
so the write re-checks it on the linked account's locked row (``_still_proven``): a rotated
enrollment token or a changed password stops proving anything the moment that change
commits, even for a link already past its check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

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
from models.contacts import EmailPreference
from models.links import LinkGroup, LinkKind, LinkMember, LinkMethod, LinkPeriod
from models.users import User
from resolvers.accounts import require_account
from resolvers.audit_log import record_event
from resolvers.database import begin_write
from resolvers.ledger import lock_accounts
from resolvers.outbox import queue_account_notice, queue_security_email
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


@dataclass(frozen=True)
class LinkRequest:
    """What a link asks for besides its proof."""

    head_account_id: int
    kind: LinkKind
    friendly_name: str | None = None
    group_name: str | None = None


@dataclass(frozen=True)
class LinkPlan:
    """A link checked up to its proof: the head the caller may link into, the names cleaned."""

    head: Account
    kind: LinkKind
    friendly_name: str | None
    group_name: str | None


async def plan_link(session: AsyncSession, access: AccessMap, request: LinkRequest) -> LinkPlan | UserError:
    """LINKS_MANAGE on the head (and BILLING_MANAGE for a BILLING group), then the names:
    what ``linkAccount`` and ``registerAccount``'s ``link`` ask alike, before any proof."""
    head = await require_account(session, access, request.head_account_id, Permission.LINKS_MANAGE)
    if request.kind is LinkKind.BILLING:
        access.require(head.id, Permission.BILLING_MANAGE)
    friendly = clean_friendly_name(request.friendly_name)
    if isinstance(friendly, UserError):
        return friendly
    group_label = clean_optional_text(request.group_name, max_length=MAX_FRIENDLY_NAME,
                                      field=["groupName"], too_long_code="NAME_TOO_LONG")
    if isinstance(group_label, UserError):
        return group_label
    return LinkPlan(head=head, kind=request.kind, friendly_name=friendly, group_name=group_label)


def clean_friendly_name(value: str | None) -> str | None | UserError:
    """One line, at most ``MAX_FRIENDLY_NAME`` characters; empty means none."""
    return clean_optional_text(value, max_length=MAX_FRIENDLY_NAME, field=["friendlyName"],
                               too_long_code="NAME_TOO_LONG")


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
    plan = await plan_link(session, access, LinkRequest(head_account_id, kind, friendly_name, group_name))
    if isinstance(plan, UserError):
        return plan
    head = plan.head
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
        return _closed(head, target)
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
        return HEAD_IS_MEMBER
    # The throttle bookkeeping above is committed on its own: a lost race below rolls back.
    await session.commit()
    await begin_write(session)
    # Links into one head take turns on the head account's row, so the first of two
    # concurrent links creates the group and the second joins it (rather than both creating
    # one and the loser reading ALREADY_LINKED). The linked account's row is locked with it
    # (ascending ids, the order every writer uses), the row a token rotation locks, and the
    # proof is checked again against it.
    locked = await lock_accounts(session, [head.id, target.id])
    if not await _still_proven(session, proof, checked, locked[target.id], enrollment_key):
        # The token was rotated, or the password changed, since the check. Not counted as a
        # failed proof: the secret was right when checked (that check already counted and
        # forgave it), so this says nothing a guesser could use; the same stale secret sent
        # again is counted by the first check, like any wrong one.
        await session.rollback()
        return INVALID_PROOF
    linked = await join_group(session, principal=principal, plan=plan, head=locked[head.id],
                              target=locked[target.id], method=method)
    if isinstance(linked, UserError):
        return linked
    await session.commit()
    return linked


HEAD_IS_MEMBER = UserError(
    message="The head account is itself a member of a group of this kind; groups do not chain.",
    code="ALREADY_LINKED", field=["headAccountId"],
)


def _closed(head: Account, target: Account) -> UserError:
    return UserError(
        message="A closed account cannot be linked.", code="ACCOUNT_CLOSED",
        field=["accountNumber" if target.status is AccountStatus.CLOSED else "headAccountId"],
    )


async def join_group(
    session: AsyncSession, *, principal: Principal, plan: LinkPlan, head: Account,
    target: Account, method: LinkMethod,
) -> Linked | UserError:
    """Writes one link, the only way one is written: ``target`` joins the group of
    ``plan.kind`` headed by ``head`` (created if there is none), its link period opens, the
    link is audited on both accounts and ``target``'s owner is told. Not committed: the
    caller's other changes (a new account) land with it. A ``UserError`` comes back with the
    transaction rolled back, the caller's changes included.

    ``head`` and ``target`` are as ``lock_accounts`` re-read them, so a concurrent unlink
    dissolving the group either went first (a new group starts) or waits for this link, and
    the head's place is read again here, locked, before it is relied on.
    """
    kind = plan.kind
    if AccountStatus.CLOSED in (head.status, target.status):
        await session.rollback()
        return _closed(head, target)
    head_place = await session.scalar(
        select(LinkMember).where(LinkMember.kind == kind, LinkMember.account_id == head.id)
        .with_for_update()
    )
    if head_place is not None and not head_place.is_head:
        await session.rollback()
        return HEAD_IS_MEMBER
    try:
        if head_place is None:
            group = LinkGroup(kind=kind, name=plan.group_name)
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
            friendly_name=plan.friendly_name, linked_via=method, linked_at=utcnow(),
        )
        session.add(member)
        _open_period(session, member, head_account_id=head.id)
        await session.flush()
    except IntegrityError:
        # A concurrent link won the unique (kind, account_id) index.
        await session.rollback()
        return ALREADY_LINKED
    details = _details(group, head, target, member)
    for account_id in (head.id, target.id):
        record_event(
            session, actor=principal, action="link.created", account_id=account_id,
            target=("link_group", group.id), after=details,
        )
    await _tell_member(session, principal=principal, group=group, head=head, member=target,
                       method=method, linked=True)
    return Linked(group=group, head_account_id=head.id, member=member)


def _details(group: LinkGroup, head: Account, account: Account, member: LinkMember) -> dict[str, Any]:
    """What the audit events of a link name: the group, both accounts, the member's place."""
    return {
        "kind": group.kind.value, "group_id": group.id, "head": head.number,
        "account": account.number, "friendly_name": member.friendly_name,
        "linked_via": member.linked_via.value,
    }


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


# How each way of linking reads in the notice, and what to do if no one meant it.
_HOW_LINKED = {
    LinkMethod.OWNER_CREDENTIALS: (" with its owner's email and password",
                                   ", change the owner's password"),
    LinkMethod.ENROLLMENT_TOKEN: (" with its enrollment token",
                                  ", rotate its enrollment token (rotateEnrollmentToken)"),
    LinkMethod.SAME_OWNER: (" by its owner", ""),
    LinkMethod.STAFF: (" by our staff", ""),
}
# A proof another person may hold: a link made with one is an alarm when its owner did not
# make it, as a sign-in alert is.
_SECRETS = frozenset({LinkMethod.OWNER_CREDENTIALS, LinkMethod.ENROLLMENT_TOKEN})


async def _tell_member(
    session: AsyncSession, *, principal: Principal, group: LinkGroup, head: Account,
    member: Account, method: LinkMethod, linked: bool,
) -> None:
    """The linked account's notice of a link or an unlink, in its transaction (DESIGN §1:
    whoever is linked is told): category GENERAL, to its owner and its GENERAL contacts, on
    the account's email history. It names the head and the kind, never a secret.

    Sent even when the owner made the link (``registerAccount``'s, or one with their own
    proof): the contacts and the history hear of every link alike. One exception to the
    category: a link made with the owner's password or the account's enrollment token by
    someone else is what a sign-in alert is, someone using the owner's secret, so when the
    owner opted out of GENERAL it reaches them as security mail (which no one can switch off,
    and which is in no account's history) instead: never silenced, never twice.
    """
    kind = group.kind
    flowing = ", ".join(permission.value for permission in sorted_permissions(LINK_SCOPES[kind]))
    account = f"\"{member.name}\" ({member.number})"
    head_name = f"\"{head.name}\" ({head.number})"
    if linked:
        how, advice = _HOW_LINKED[method]
        subject = f"Your Linkgate account {member.number} was linked to another account"
        billing = (f" Its charges from now on are billed to {head_name}."
                   if kind is LinkKind.BILLING else "")
        body = (
            f"Hello,\n\nthe Linkgate account {account} was linked{how} into the {kind.value} "
            f"group headed by the account {head_name}. People with these permissions on that "
            f"account now hold them on this one too: {flowing}.{billing}\n\n"
            "If that was expected, there is nothing to do. If not, unlink it at once "
            f"(unlinkAccount, from this account's side){advice}, and tell our support.\n"
        )
    else:
        subject = f"Your Linkgate account {member.number} was unlinked"
        billing = (f" Its charges from now on are billed to it again; charges made before stay "
                   f"with {head_name}." if kind is LinkKind.BILLING else "")
        body = (
            f"Hello,\n\nthe Linkgate account {account} was unlinked from the {kind.value} group "
            f"headed by the account {head_name}. The permissions that flowed from that account "
            f"({flowing}) no longer do.{billing}\n"
        )
    related = ("link_group", group.id)
    sent = await queue_account_notice(session, account_id=member.id, category=EmailPreference.GENERAL,
                                      subject=subject, body=body, related=related)
    if not (linked and method in _SECRETS and principal.user_id != member.owner_id):
        return
    owner = await session.get(User, member.owner_id)
    if owner is not None and owner.email not in {row.recipient for row in sent}:
        queue_security_email(session, recipient=owner.email, subject=subject, body=body,
                             related=related)


@dataclass(frozen=True)
class _Place:
    """An account's place in a group, as ``_find_place`` found it (rows locked)."""

    group: LinkGroup
    head: LinkMember
    member: LinkMember | None  # None when the account is not a member (or is the head)


async def _find_place(
    session: AsyncSession, access: AccessMap, link_group_id: int, account_id: int
) -> _Place:
    """The group and the account's place in it, for a change to that place.

    A group is there for the caller if it sees its head, or if the account it names is a
    member it sees: another customer's group answers as a group that does not exist
    (``NotFound``), dissolved or not.
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
    if group is None or head is None or not (
        access.can_see(head.account_id) or (member is not None and access.can_see(account_id))
    ):
        raise NotFound("No such link group.")
    return _Place(group=group, head=head, member=member)


def _must_be_member(place: _Place, account_id: int, head_message: str) -> LinkMember | UserError:
    if account_id == place.head.account_id:
        return UserError(message=head_message, code="HEAD_ACCOUNT", field=["accountId"])
    if place.member is None:
        return UserError(
            message="The account is not a member of this group.", code="NOT_LINKED",
            field=["accountId"],
        )
    return place.member


async def _accounts(session: AsyncSession, place: _Place, member: LinkMember) -> tuple[Account, Account]:
    """The head and member accounts of a place, for audit details and notices."""
    rows = (await session.scalars(
        select(Account).where(Account.id.in_([place.head.account_id, member.account_id]))
    )).all()
    by_id = {row.id: row for row in rows}
    return by_id[place.head.account_id], by_id[member.account_id]


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
    the payer they were made with. Audited on both accounts; the member is told.
    """
    place = await _find_place(session, access, link_group_id, account_id)
    group, head = place.group, place.head
    if not (access.has(head.account_id, Permission.LINKS_MANAGE)
            or access.has(account_id, Permission.LINKS_MANAGE)):
        raise PermissionDenied(
            "You need the LINKS_MANAGE permission on the head account or on the member.",
            permission=Permission.LINKS_MANAGE.value,
        )
    member = _must_be_member(
        place, account_id, "The head account cannot be unlinked; unlink its members instead."
    )
    if isinstance(member, UserError):
        return member
    head_account, member_account = await _accounts(session, place, member)
    details = _details(group, head_account, member_account, member)
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
    await _tell_member(session, principal=principal, group=group, head=head_account,
                       member=member_account, method=member.linked_via, linked=False)
    await session.commit()
    return Unlinked(group=None if dissolved else group, head_account_id=head.account_id)


async def update_link_member(
    session: AsyncSession,
    access: AccessMap,
    *,
    principal: Principal,
    link_group_id: int,
    account_id: int,
    friendly_name: str | None,
) -> Linked | UserError:
    """Names a member for its head (null clears the name). LINKS_MANAGE on the head only:
    the friendly name is the head's label for the member, the one its dashboard lists and
    account search matches, so the member's side may leave the group (``unlinkAccount``)
    but not relabel itself in the head's list. Audited on both accounts when it changes."""
    place = await _find_place(session, access, link_group_id, account_id)
    if not access.has(place.head.account_id, Permission.LINKS_MANAGE):
        raise PermissionDenied(
            "You need the LINKS_MANAGE permission on the head account.",
            permission=Permission.LINKS_MANAGE.value,
        )
    member = _must_be_member(place, account_id, "The head account has no friendly name; its members do.")
    if isinstance(member, UserError):
        return member
    friendly = clean_friendly_name(friendly_name)
    if isinstance(friendly, UserError):
        return friendly
    if friendly != member.friendly_name:
        head_account, member_account = await _accounts(session, place, member)
        before = _details(place.group, head_account, member_account, member)
        member.friendly_name = friendly
        after = {**before, "friendly_name": friendly}
        for audited in (place.head.account_id, account_id):
            record_event(
                session, actor=principal, action="link.updated", account_id=audited,
                target=("link_group", place.group.id), before=before, after=after,
            )
        await session.commit()
    return Linked(group=place.group, head_account_id=place.head.account_id, member=member)
