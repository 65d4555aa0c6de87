"""The User type: a login."""

from __future__ import annotations

import strawberry

from models.users import User as UserRow
from resolvers.email_preferences import received
from schema.enums import EmailPreference, StaffRole
from schema.relay import encode_global_id


@strawberry.type(description="A login: a customer, or internal staff when `staffRole` is set.")
class User:
    pk: strawberry.Private[int]
    email: str
    name: str
    staff_role: StaffRole | None
    has_two_factor: strawberry.Private[bool]
    email_opt_outs: strawberry.Private[list[str]]

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

    @strawberry.field(
        description="The email categories your login receives (all but those you opted out of, "
        "with setEmailPreferences); security mail is no category and always comes. Null on "
        "every user but yourself: it is your own setting.",
    )
    def email_preferences(self, info: strawberry.Info) -> list[EmailPreference] | None:
        principal = info.context.principal
        if principal is None or principal.user_id != self.pk:
            return None
        return received(self.email_opt_outs)

    @classmethod
    def from_model(cls, row: UserRow) -> User:
        # ``row`` may be a plain table row (the loaders'), without the model's properties.
        return cls(
            pk=row.id, email=row.email, name=row.name, staff_role=row.staff_role,
            has_two_factor=row.totp_enabled_at is not None, email_opt_outs=list(row.email_opt_outs or []),
        )


async def user_name(info: strawberry.Info, user_id: int | None) -> str | None:
    """The display name of the user behind an ``actor``/author id, through the user loader."""
    if user_id is None:
        return None
    user = await info.context.loaders.user_by_id.load(user_id)
    return user.name if user is not None else None
