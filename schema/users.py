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

    @strawberry.field(description="Identifies the user in mutations such as setSubAccountPermissions.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(encode_global_id("User", self.pk))

    @classmethod
    def from_model(cls, row: UserRow) -> User:
        return cls(pk=row.id, email=row.email, name=row.name, staff_role=row.staff_role)


async def user_name(info: strawberry.Info, user_id: int | None) -> str | None:
    """The display name of the user behind an ``actor``/author id, through the user loader."""
    if user_id is None:
        return None
    user = await info.context.loaders.user_by_id.load(user_id)
    return user.name if user is not None else None
