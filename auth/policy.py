"""The one place that decides who may: effective permissions per account (DESIGN §1).

    effective(U, A) = direct(U, A) ∪ ⋃ over groups G containing A: direct(U, head(G)) ∩ scope(G.kind)

``compute_effective`` is the rule as a pure function; ``load_access`` fetches what it needs for
one principal in two statements, once per request, and returns an ``AccessMap`` that answers
every later check from memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import bindparam, literal, null, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from auth.errors import PermissionDenied, Unauthenticated
from auth.permissions import ALL, LINK_SCOPES, NONE, STAFF_PERMISSIONS, Permission, Permissions, parse_permissions
from auth.principals import Principal
from models.accounts import Account, Membership
from models.links import LinkKind, LinkMember
from models.users import StaffRole


@dataclass(frozen=True, slots=True)
class GroupMembership:
    """Account ``member_id`` stands in a group of ``kind`` headed by ``head_id``."""

    kind: LinkKind
    head_id: int
    member_id: int


def compute_effective(
    direct: Mapping[int, Permissions], memberships: Iterable[GroupMembership]
) -> dict[int, Permissions]:
    effective = {account_id: perms for account_id, perms in direct.items() if perms}
    for link in memberships:
        flowing = direct.get(link.head_id, NONE) & LINK_SCOPES[link.kind]
        if flowing and link.member_id != link.head_id:
            effective[link.member_id] = effective.get(link.member_id, NONE) | flowing
    return effective


@dataclass(frozen=True)
class AccessMap:
    """A principal's effective permissions on every account, resolved once per request."""

    by_account: Mapping[int, Permissions] = field(default_factory=dict)
    owned: frozenset[int] = frozenset()
    staff_permissions: Permissions = NONE

    def permissions_on(self, account_id: int) -> Permissions:
        return self.by_account.get(account_id, NONE) | self.staff_permissions

    def has(self, account_id: int, permission: Permission) -> bool:
        # Customers hold no staff permissions: one set lookup, not two (it runs per field).
        staff = self.staff_permissions
        return (bool(staff) and permission in staff) or permission in self.by_account.get(account_id, NONE)

    def can_see(self, account_id: int) -> bool:
        """An account is visible when the principal holds any permission on it."""
        return bool(self.staff_permissions) or bool(self.by_account.get(account_id))

    def is_owner(self, account_id: int) -> bool:
        return account_id in self.owned

    @property
    def sees_every_account(self) -> bool:
        return bool(self.staff_permissions)

    @property
    def visible_account_ids(self) -> frozenset[int]:
        """The customer-side visible accounts (staff see every account besides these)."""
        return frozenset(self.by_account)

    def with_owned(self, account_id: int) -> AccessMap:
        """The same map after the principal became the owner of ``account_id``."""
        return AccessMap(
            {**self.by_account, account_id: ALL}, self.owned | {account_id}, self.staff_permissions
        )

    def require(self, account_id: int, permission: Permission) -> None:
        """For argument-dependent checks in mutations: the same rule as ``@requires``."""
        if not self.has(account_id, permission):
            raise PermissionDenied(
                f"You need the {permission.value} permission on this account.",
                permission=permission.value,
            )


ANONYMOUS_ACCESS = AccessMap()


def require_staff_role(principal: Principal | None, roles: frozenset[StaffRole]) -> Principal:
    """For staff-only operations: the principal, if its staff role is one of ``roles``."""
    if principal is None:
        raise Unauthenticated("Sign in to do this.")
    if principal.staff_role not in roles:
        names = " or ".join(sorted(role.value for role in roles))
        raise PermissionDenied(f"Only {names} staff may do this.")
    return principal


async def load_access(session: AsyncSession, principal: Principal | None) -> AccessMap:
    if principal is None:
        return ANONYMOUS_ACCESS
    direct = await _load_direct(session, principal.user_id)
    links = await _load_group_memberships(session, direct.keys())
    owned = frozenset(account_id for account_id, perms in direct.items() if perms is ALL)
    staff = STAFF_PERMISSIONS[principal.staff_role] if principal.staff_role else NONE
    return AccessMap(compute_effective(direct, links), owned, staff)


# Built once: these run on every signed-in request, and building a statement costs more
# Python than SQLAlchemy's compiled cache then saves (bench/RESULTS.md, issue 17).
# The membership select comes first: the union takes its column types (JSON permissions).
_DIRECT = union_all(
    select(Membership.account_id, Membership.permissions, literal(False).label("is_owner"))
    .where(Membership.user_id == bindparam("user_id")),
    select(Account.id, null(), literal(True)).where(Account.owner_id == bindparam("user_id")),
)
_HEAD, _MEMBER = aliased(LinkMember), aliased(LinkMember)
_GROUP_MEMBERS = (
    select(_HEAD.kind, _HEAD.account_id, _MEMBER.account_id)
    .join(_MEMBER, _MEMBER.group_id == _HEAD.group_id)
    .where(_HEAD.is_head, _HEAD.account_id.in_(bindparam("heads", expanding=True)),
           _MEMBER.account_id != _HEAD.account_id)
)


async def _load_direct(session: AsyncSession, user_id: int) -> dict[int, Permissions]:
    direct: dict[int, Permissions] = {}
    for account_id, names, is_owner in (await session.execute(_DIRECT, {"user_id": user_id})).all():
        # The owner holds every permission; a membership row never restricts an owner.
        if is_owner or direct.get(account_id) is ALL:
            direct[account_id] = ALL
        else:
            direct[account_id] = parse_permissions(names)
    return direct


async def _load_group_memberships(
    session: AsyncSession, head_candidates: Iterable[int]
) -> list[GroupMembership]:
    """Members of every group headed by an account the user holds direct rights on."""
    candidates = list(head_candidates)
    if not candidates:
        return []
    rows = (await session.execute(_GROUP_MEMBERS, {"heads": candidates})).all()
    return [GroupMembership(kind, head_id, member_id) for kind, head_id, member_id in rows]
