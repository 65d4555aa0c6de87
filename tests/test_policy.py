"""The effective-permission policy (DESIGN §1 "Effective permissions"), rule by rule.

``compute_effective`` and ``AccessMap`` are pure, so most of this file needs no database. The
expected sets are written out by hand from DESIGN.md, on purpose not taken from
``auth.permissions``: a change to the vocabulary or the link scopes has to show up here.
The last part runs ``load_access`` against the demo data and a purpose-built scenario.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from auth.errors import PermissionDenied
from auth.permissions import ALL, STAFF_PERMISSIONS, Permission
from auth.policy import ANONYMOUS_ACCESS, AccessMap, GroupMembership, compute_effective, load_access
from auth.principals import Principal
from linkgate.demo import BILL, CONTOSO, DEV, EVE, HEAD_OFFICE, LABS, LOGISTICS, OLIVIA, RETAIL
from models.accounts import Account, Membership
from models.database import create_session_factory
from models.links import LinkGroup, LinkKind, LinkMember, LinkMethod
from models.users import StaffRole, User

P = Permission
EVERY = frozenset(Permission)

# DESIGN §1, "Permission vocabulary".
BILLING = frozenset({P.INVOICES_READ, P.CREDITS_READ, P.CREDITS_PURCHASE, P.CREDITS_TRANSFER,
                     P.BILLING_MANAGE, P.INVOICES_PAY})
TECHNICAL = frozenset({P.SERVICES_READ, P.TICKETS_READ, P.TICKETS_WRITE})
# DESIGN §1: scope(MANAGEMENT) = technical family ∪ {PROFILE_MANAGE, CONTACTS_READ, EMAILS_READ};
# scope(BILLING) = billing family; CONTACTS_MANAGE, LINKS_MANAGE and AUDIT_READ never flow.
MANAGEMENT_SCOPE = TECHNICAL | {P.PROFILE_MANAGE, P.CONTACTS_READ, P.EMAILS_READ}
BILLING_SCOPE = BILLING
NEVER_FLOWS = frozenset({P.CONTACTS_MANAGE, P.LINKS_MANAGE, P.AUDIT_READ})
# DESIGN §1, staff roles.
STAFF = {
    StaffRole.SUPPORT: TECHNICAL | {P.CONTACTS_READ, P.EMAILS_READ, P.AUDIT_READ},
    StaffRole.BILLING: BILLING | {P.EMAILS_READ, P.AUDIT_READ},
    StaffRole.ADMIN: EVERY,
}

HEAD, MEMBER, OTHER_MEMBER, UNRELATED = 1, 2, 3, 4


def group(kind: LinkKind, head: int, *members: int) -> list[GroupMembership]:
    return [GroupMembership(kind, head, member) for member in members]


def test_every_permission_is_classified_by_this_file() -> None:
    """A new permission must be placed in a family and in (or out of) each link scope here."""
    assert BILLING | TECHNICAL | {P.PROFILE_MANAGE, P.CONTACTS_READ, P.CONTACTS_MANAGE,
                                  P.LINKS_MANAGE, P.EMAILS_READ, P.AUDIT_READ} == EVERY
    assert MANAGEMENT_SCOPE | BILLING_SCOPE | NEVER_FLOWS == EVERY
    assert not (MANAGEMENT_SCOPE & BILLING_SCOPE)
    assert not ((MANAGEMENT_SCOPE | BILLING_SCOPE) & NEVER_FLOWS)


# --- direct grants -----------------------------------------------------------------------


def test_direct_grants_are_effective_as_given() -> None:
    direct = {HEAD: frozenset({P.INVOICES_READ}), MEMBER: frozenset({P.TICKETS_READ, P.AUDIT_READ})}
    assert compute_effective(direct, []) == direct


def test_an_empty_grant_is_not_an_entry() -> None:
    """Visibility is "effective not empty": a membership with no permissions shows nothing."""
    effective = compute_effective({HEAD: frozenset(), MEMBER: frozenset({P.EMAILS_READ})}, [])
    assert effective == {MEMBER: frozenset({P.EMAILS_READ})}
    access = AccessMap(effective)
    assert not access.can_see(HEAD)
    assert access.can_see(MEMBER)
    assert access.visible_account_ids == {MEMBER}


def test_owner_holds_everything_and_it_flows_by_scope() -> None:
    effective = compute_effective(
        {HEAD: ALL},
        group(LinkKind.BILLING, HEAD, MEMBER) + group(LinkKind.MANAGEMENT, HEAD, OTHER_MEMBER),
    )
    assert effective == {HEAD: EVERY, MEMBER: BILLING_SCOPE, OTHER_MEMBER: MANAGEMENT_SCOPE}


# --- link scopes, one permission at a time ------------------------------------------------


@pytest.mark.parametrize("permission", list(Permission), ids=lambda p: p.value)
@pytest.mark.parametrize("kind", list(LinkKind), ids=lambda k: k.value)
def test_one_permission_through_one_link(kind: LinkKind, permission: Permission) -> None:
    effective = compute_effective({HEAD: frozenset({permission})}, group(kind, HEAD, MEMBER))
    scope = MANAGEMENT_SCOPE if kind is LinkKind.MANAGEMENT else BILLING_SCOPE
    assert effective[HEAD] == {permission}, "the head keeps its own grant"
    if permission in scope:
        assert effective[MEMBER] == {permission}
    else:
        assert MEMBER not in effective, f"{permission.value} must not flow through {kind.value}"


@pytest.mark.parametrize("permission", sorted(NEVER_FLOWS, key=lambda p: p.value), ids=lambda p: p.value)
def test_never_flowing_permissions_stay_on_the_head_even_through_both_kinds(permission: Permission) -> None:
    effective = compute_effective(
        {HEAD: frozenset({permission})},
        group(LinkKind.BILLING, HEAD, MEMBER) + group(LinkKind.MANAGEMENT, HEAD, MEMBER),
    )
    assert effective == {HEAD: {permission}}


def test_management_scope_of_a_full_grant() -> None:
    effective = compute_effective({HEAD: EVERY}, group(LinkKind.MANAGEMENT, HEAD, MEMBER))
    assert effective[MEMBER] == {
        P.SERVICES_READ, P.TICKETS_READ, P.TICKETS_WRITE, P.PROFILE_MANAGE, P.CONTACTS_READ,
        P.EMAILS_READ,
    }


def test_billing_scope_of_a_full_grant() -> None:
    effective = compute_effective({HEAD: EVERY}, group(LinkKind.BILLING, HEAD, MEMBER))
    assert effective[MEMBER] == {
        P.INVOICES_READ, P.CREDITS_READ, P.CREDITS_PURCHASE, P.CREDITS_TRANSFER, P.BILLING_MANAGE,
        P.INVOICES_PAY,
    }


def test_an_account_in_both_groups_gets_both_halves() -> None:
    grant = frozenset({P.INVOICES_READ, P.SERVICES_READ, P.EMAILS_READ, P.LINKS_MANAGE})
    effective = compute_effective(
        {HEAD: grant},
        group(LinkKind.BILLING, HEAD, MEMBER, OTHER_MEMBER) + group(LinkKind.MANAGEMENT, HEAD, OTHER_MEMBER),
    )
    assert effective[MEMBER] == {P.INVOICES_READ}
    assert effective[OTHER_MEMBER] == {P.INVOICES_READ, P.SERVICES_READ, P.EMAILS_READ}


def test_flowed_permissions_add_to_a_direct_grant_on_the_member() -> None:
    effective = compute_effective(
        {HEAD: frozenset({P.CREDITS_READ}), MEMBER: frozenset({P.AUDIT_READ})},
        group(LinkKind.BILLING, HEAD, MEMBER),
    )
    assert effective[MEMBER] == {P.CREDITS_READ, P.AUDIT_READ}


# --- direction ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(LinkKind), ids=lambda k: k.value)
def test_nothing_flows_from_a_member_to_the_head_or_to_another_member(kind: LinkKind) -> None:
    effective = compute_effective({MEMBER: EVERY}, group(kind, HEAD, MEMBER, OTHER_MEMBER))
    assert effective == {MEMBER: EVERY}


def test_nothing_reaches_an_account_outside_the_groups() -> None:
    effective = compute_effective(
        {HEAD: EVERY}, group(LinkKind.BILLING, HEAD, MEMBER) + group(LinkKind.MANAGEMENT, HEAD, MEMBER)
    )
    assert UNRELATED not in effective
    assert not AccessMap(effective).can_see(UNRELATED)


def test_a_head_listed_as_its_own_member_gains_nothing() -> None:
    effective = compute_effective(
        {HEAD: frozenset({P.AUDIT_READ})}, [GroupMembership(LinkKind.MANAGEMENT, HEAD, HEAD)]
    )
    assert effective == {HEAD: {P.AUDIT_READ}}


def test_a_grant_on_an_account_that_heads_nothing_reaches_no_group() -> None:
    """The groups of *another* head do not care about this user's grant."""
    effective = compute_effective(
        {UNRELATED: EVERY}, group(LinkKind.BILLING, HEAD, MEMBER) + group(LinkKind.MANAGEMENT, HEAD, MEMBER)
    )
    assert effective == {UNRELATED: EVERY}


# --- one user, every kind of right at once ------------------------------------------------

OWNED, OWNED_MEMBER, SUB_HEAD, BILLED, MANAGED_AND_BILLED, STRANGER = 10, 11, 20, 21, 22, 30
SUB_GRANT = frozenset({P.INVOICES_READ, P.SERVICES_READ, P.EMAILS_READ, P.CONTACTS_MANAGE, P.AUDIT_READ})


def mixed_user_groups() -> list[GroupMembership]:
    """The user owns OWNED, which heads a BILLING group and sits in SUB_HEAD's MANAGEMENT group.
    The user is a sub-account on SUB_HEAD, which heads BILLING {BILLED, MANAGED_AND_BILLED} and
    MANAGEMENT {MANAGED_AND_BILLED, OWNED}."""
    return (
        group(LinkKind.BILLING, OWNED, OWNED_MEMBER)
        + group(LinkKind.BILLING, SUB_HEAD, BILLED, MANAGED_AND_BILLED)
        + group(LinkKind.MANAGEMENT, SUB_HEAD, MANAGED_AND_BILLED, OWNED)
    )


MIXED_EXPECTED = {
    OWNED: EVERY,
    OWNED_MEMBER: BILLING,
    SUB_HEAD: SUB_GRANT,
    BILLED: frozenset({P.INVOICES_READ}),
    MANAGED_AND_BILLED: frozenset({P.INVOICES_READ, P.SERVICES_READ, P.EMAILS_READ}),
}


def test_owner_and_sub_account_and_both_link_kinds_at_once() -> None:
    effective = compute_effective({OWNED: ALL, SUB_HEAD: SUB_GRANT}, mixed_user_groups())
    assert effective == MIXED_EXPECTED
    access = AccessMap(effective, owned=frozenset({OWNED}))
    assert access.is_owner(OWNED) and not access.is_owner(SUB_HEAD)
    assert access.visible_account_ids == set(MIXED_EXPECTED)
    assert not access.can_see(STRANGER)
    assert access.has(MANAGED_AND_BILLED, P.SERVICES_READ)
    assert not access.has(MANAGED_AND_BILLED, P.CONTACTS_MANAGE)
    assert not access.has(BILLED, P.SERVICES_READ)


# --- AccessMap ----------------------------------------------------------------------------


def test_access_map_answers_from_the_effective_map() -> None:
    access = AccessMap({HEAD: frozenset({P.INVOICES_READ}), MEMBER: frozenset({P.TICKETS_READ})})
    assert access.permissions_on(HEAD) == {P.INVOICES_READ}
    assert access.permissions_on(UNRELATED) == frozenset()
    assert access.has(HEAD, P.INVOICES_READ) and not access.has(HEAD, P.TICKETS_READ)
    assert access.has(MEMBER, P.TICKETS_READ) and not access.has(MEMBER, P.INVOICES_READ)
    assert access.can_see(HEAD) and access.can_see(MEMBER) and not access.can_see(UNRELATED)
    assert not access.sees_every_account
    assert not access.is_owner(HEAD)


def test_require_raises_forbidden_naming_the_permission() -> None:
    access = AccessMap({HEAD: frozenset({P.INVOICES_READ})})
    access.require(HEAD, P.INVOICES_READ)
    with pytest.raises(PermissionDenied) as raised:
        access.require(HEAD, P.CREDITS_TRANSFER)
    assert raised.value.code == "FORBIDDEN"
    assert raised.value.extensions == {"permission": "CREDITS_TRANSFER"}
    with pytest.raises(PermissionDenied):
        access.require(UNRELATED, P.INVOICES_READ)


def test_anonymous_access_sees_nothing() -> None:
    assert not ANONYMOUS_ACCESS.can_see(HEAD)
    assert ANONYMOUS_ACCESS.visible_account_ids == frozenset()
    assert all(not ANONYMOUS_ACCESS.has(HEAD, permission) for permission in Permission)


@pytest.mark.parametrize("role", list(StaffRole), ids=lambda r: r.value)
def test_staff_roles_hold_their_set_on_every_account(role: StaffRole) -> None:
    access = AccessMap({}, staff_permissions=STAFF_PERMISSIONS[role])
    for account_id in (HEAD, UNRELATED, 987654):
        assert access.can_see(account_id)
        assert access.permissions_on(account_id) == STAFF[role]
        for permission in Permission:
            assert access.has(account_id, permission) is (permission in STAFF[role]), permission
    assert access.sees_every_account
    assert not access.is_owner(HEAD)


def test_staff_permissions_add_to_a_customer_side_grant() -> None:
    access = AccessMap({HEAD: frozenset({P.CREDITS_READ})},
                       staff_permissions=STAFF_PERMISSIONS[StaffRole.SUPPORT])
    assert access.permissions_on(HEAD) == STAFF[StaffRole.SUPPORT] | {P.CREDITS_READ}
    assert access.permissions_on(MEMBER) == STAFF[StaffRole.SUPPORT]


# --- load_access against the database -----------------------------------------------------


@pytest.fixture
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with create_session_factory(engine)() as session:
        yield session


async def _user_id(session: AsyncSession, email: str) -> int:
    user_id = await session.scalar(select(User.id).where(User.email == email))
    assert user_id is not None, email
    return user_id


async def _account_ids(session: AsyncSession) -> dict[str, int]:
    numbers = [HEAD_OFFICE, RETAIL, LOGISTICS, LABS, CONTOSO]
    rows = (await session.execute(select(Account.number, Account.id).where(Account.number.in_(numbers)))).all()
    ids = {number: account_id for number, account_id in rows}
    assert set(ids) == set(numbers)
    return ids


async def _access(session: AsyncSession, email: str) -> AccessMap:
    user = (await session.execute(select(User.id, User.staff_role).where(User.email == email))).one()
    return await load_access(session, Principal(user_id=user.id, staff_role=user.staff_role))


async def _demo_access(session: AsyncSession, email: str) -> dict[str, frozenset[Permission]]:
    access = await _access(session, email)
    return {number: access.permissions_on(account_id) for number, account_id in (await _account_ids(session)).items()}


async def test_load_access_owner(session: AsyncSession) -> None:
    access = await _access(session, OLIVIA)
    ids = await _account_ids(session)
    for number in (HEAD_OFFICE, RETAIL, LOGISTICS, LABS):
        assert access.permissions_on(ids[number]) == EVERY, number
        assert access.is_owner(ids[number])
    assert not access.can_see(ids[CONTOSO]) and not access.is_owner(ids[CONTOSO])
    assert not access.sees_every_account


async def test_load_access_bill_billing_family_through_the_billing_group(session: AsyncSession) -> None:
    assert await _demo_access(session, BILL) == {
        HEAD_OFFICE: BILLING, RETAIL: BILLING, LOGISTICS: BILLING, LABS: frozenset(), CONTOSO: frozenset(),
    }
    access = await _access(session, BILL)
    ids = await _account_ids(session)
    assert not access.can_see(ids[LABS])
    assert access.owned == frozenset()


async def test_load_access_dev_technical_through_the_management_group_only(session: AsyncSession) -> None:
    assert await _demo_access(session, DEV) == {
        HEAD_OFFICE: TECHNICAL, RETAIL: frozenset(), LOGISTICS: TECHNICAL, LABS: frozenset(),
        CONTOSO: frozenset(),
    }


async def test_load_access_unrelated_customer(session: AsyncSession) -> None:
    assert await _demo_access(session, EVE) == {
        HEAD_OFFICE: frozenset(), RETAIL: frozenset(), LOGISTICS: frozenset(), LABS: frozenset(),
        CONTOSO: EVERY,
    }


@pytest.mark.parametrize(
    ("email", "role"),
    [("agent@linkgate.example", StaffRole.SUPPORT), ("finance@linkgate.example", StaffRole.BILLING)],
)
async def test_load_access_staff(session: AsyncSession, email: str, role: StaffRole) -> None:
    demo = await _demo_access(session, email)
    assert demo == {number: STAFF[role] for number in demo}
    assert (await _access(session, email)).sees_every_account


async def test_load_access_anonymous(session: AsyncSession) -> None:
    assert await load_access(session, None) is ANONYMOUS_ACCESS


@dataclass
class _Scenario:
    user_id: int
    ids: dict[int, int]  # the symbolic ids of this file -> database ids


@pytest.fixture
async def mixed_scenario(engine: AsyncEngine) -> AsyncIterator[_Scenario]:
    """The "every kind of right at once" user of ``mixed_user_groups``, in the database.

    Besides, the user holds a direct grant on a *member* of a group (STRANGER's BILLING group),
    which must not reach that group's head nor its other member.
    """
    tag = uuid.uuid4().hex[:10].upper()
    sessions = create_session_factory(engine)
    async with sessions() as session:
        user = User(email=f"policy-{tag.lower()}@test.example", name="Policy user", password_hash="!")
        other = User(email=f"policy-other-{tag.lower()}@test.example", name="Someone else", password_hash="!")
        session.add_all([user, other])
        await session.flush()
        symbolic = [OWNED, OWNED_MEMBER, SUB_HEAD, BILLED, MANAGED_AND_BILLED, STRANGER, 31, 32]
        accounts = {
            key: Account(number=f"ACC-P{tag}{index}", name=f"Policy {key}",
                         owner_id=user.id if key == OWNED else other.id, enrollment_token_hash="x")
            for index, key in enumerate(symbolic)
        }
        session.add_all(accounts.values())
        await session.flush()
        ids = {key: account.id for key, account in accounts.items()}
        session.add_all([
            Membership(user_id=user.id, account_id=ids[SUB_HEAD], permissions=[p.value for p in SUB_GRANT]),
            Membership(user_id=user.id, account_id=ids[31], permissions=[p.value for p in EVERY]),
        ])
        links = mixed_user_groups() + group(LinkKind.BILLING, STRANGER, 31, 32)
        groups: dict[tuple[LinkKind, int], LinkGroup] = {}
        for link in links:
            if (link.kind, link.head_id) not in groups:
                row = LinkGroup(kind=link.kind, name=f"policy {tag}")
                session.add(row)
                await session.flush()
                groups[link.kind, link.head_id] = row
                session.add(LinkMember(group_id=row.id, kind=link.kind, account_id=ids[link.head_id],
                                       is_head=True, linked_via=LinkMethod.SAME_OWNER))
            session.add(LinkMember(group_id=groups[link.kind, link.head_id].id, kind=link.kind,
                                   account_id=ids[link.member_id], linked_via=LinkMethod.SAME_OWNER))
        await session.commit()
        group_ids = [row.id for row in groups.values()]
    try:
        yield _Scenario(user_id=user.id, ids=ids)
    finally:
        async with sessions() as session:
            await session.execute(delete(LinkMember).where(LinkMember.group_id.in_(group_ids)))
            await session.execute(delete(LinkGroup).where(LinkGroup.id.in_(group_ids)))
            await session.execute(delete(Membership).where(Membership.user_id == user.id))
            await session.execute(delete(Account).where(Account.id.in_(ids.values())))
            await session.execute(delete(User).where(User.id.in_([user.id, other.id])))
            await session.commit()


async def test_load_access_owner_sub_account_and_both_link_kinds(
    engine: AsyncEngine, mixed_scenario: _Scenario
) -> None:
    async with create_session_factory(engine)() as session:
        access = await load_access(session, Principal(user_id=mixed_scenario.user_id))
    ids = mixed_scenario.ids
    expected = {ids[key]: perms for key, perms in MIXED_EXPECTED.items()} | {ids[31]: EVERY}
    assert dict(access.by_account) == expected
    assert access.owned == {ids[OWNED]}, "a sub-account holding every permission is not an owner"
    for key in (STRANGER, 32):
        assert not access.can_see(ids[key]), "a grant on a member reaches neither head nor sibling"
