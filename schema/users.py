"""The User type: a login."""

from __future__ import annotations

import strawberry

from models.users import User as UserRow
from schema.enums import StaffRole
from schema.relay import encode_global_id


@strawberry.type(description="A login: a customer, or internal staff when `staffRole` is set.")
class User:
    pk: strawberry.Private[int]
    email: str
    name: str
    staff_role: StaffRole | None
    has_two_factor: strawberry.Private[bool]

    @strawberry.field(description="Identifies the user in mutations such as setSubAccountPermissions.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(encode_global_id("User", self.pk))

    @strawberry.field(
        description="Whether your two-factor sign-in is on. Null on every user but "
        "yourself (in `members`, say, and for staff too): which logins lack a second factor "
        "would tell an attacker where to aim.",
    )
    def two_factor_enabled(self, info: strawberry.Info) -> bool | None:
        principal = info.context.principal
        return self.has_two_factor if principal is not None and principal.user_id == self.pk else None

    @classmethod
    def from_model(cls, row: UserRow) -> User:
        # ``row`` may be a plain table row (the loaders'), without the model's properties.
        return cls(
            pk=row.id, email=row.email, name=row.name, staff_role=row.staff_role,
            has_two_factor=row.totp_enabled_at is not None,
        )


async def user_name(info: strawberry.Info, user_id: int | None) -> str | None:
    """The display name of the user behind an ``actor``/author id, through the user loader."""
    if user_id is None:
        return None
    user = await info.context.loaders.user_by_id.load(user_id)
    return user.name if user is not None else None
