"""Each user's rights, computed once per change instead of once per request.

``load_access`` costs two statements and a merge of every link group in reach: most of what a
small request (an account header, a badge) pays. What it computes changes only when someone's
memberships, links or owned accounts change, and the database counts those changes itself
(``models/rights.py``). The caller's own statement (``auth.principals.principal_for``) reads
that count with the session, so a replica reuses what it computed only while the count has not
moved: a revoked right is never honoured after the revoking transaction committed, on any
replica, whoever wrote it. A change anywhere makes every replica read everyone's rights again
once; rights change seldom next to how often they are read.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import MappingProxyType

from sqlalchemy.ext.asyncio import AsyncSession

from auth.policy import ANONYMOUS_ACCESS, AccessMap, load_access
from auth.principals import Principal
from models.rights import CURRENT_VERSION
from models.users import StaffRole


@dataclass(frozen=True, slots=True)
class _Entry:
    rights_version: int
    staff_role: StaffRole | None
    access: AccessMap


class AccessCache:
    """Per process. At most ``max_users`` users are kept, the oldest entry leaving first;
    ``max_users=0`` turns caching off (every request reads its rights)."""

    def __init__(self, max_users: int = 10_000) -> None:
        self.max_users = max_users
        self.hits = 0
        self.misses = 0
        self._entries: dict[int, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def load(self, session: AsyncSession, principal: Principal | None) -> AccessMap:
        """The same answer as ``load_access``, from memory when it is still exact."""
        if principal is None:
            return ANONYMOUS_ACCESS
        version = principal.rights_version
        if version is None or not self.max_users:
            return await load_access(session, principal)
        entry = self._entries.get(principal.user_id)
        if entry is not None and entry.rights_version == version and entry.staff_role == principal.staff_role:
            self.hits += 1
            return entry.access
        self.misses += 1
        access = await load_access(session, principal)
        # Kept only if nothing moved the version while it was read: otherwise this map may
        # hold a change newer than ``version`` (a concurrent request of the same user could
        # then reuse it after that change was undone). Read-only from here on: shared.
        if await session.scalar(CURRENT_VERSION) == version:
            access = replace(access, by_account=MappingProxyType(dict(access.by_account)))
            self._store(principal.user_id, _Entry(version, principal.staff_role, access))
        return access

    def _store(self, user_id: int, entry: _Entry) -> None:
        entries = self._entries
        entries.pop(user_id, None)
        if len(entries) >= self.max_users:
            del entries[next(iter(entries))]
        entries[user_id] = entry
