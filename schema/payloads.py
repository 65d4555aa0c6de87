"""What every mutation payload shares: expected failures as ``userErrors``."""

from __future__ import annotations

import strawberry

from resolvers.user_errors import UserError as UserErrorValue
from schema.enums import UserErrorCode


@strawberry.type(description="An expected business failure; `code` is stable, `message` is for people.")
class UserError:
    field: list[str] | None
    message: str
    code: UserErrorCode = strawberry.field(  # type: ignore[valid-type]
        description="What went wrong; every value is listed, with its meaning, in `UserErrorCode`."
    )

    @classmethod
    def from_value(cls, value: UserErrorValue) -> UserError:
        return cls(field=value.field, message=value.message, code=UserErrorCode(value.code))

    @classmethod
    def list_from(cls, value: UserErrorValue | list[UserErrorValue]) -> list[UserError]:
        """A resolver's one failure or several, as the payload's ``userErrors``."""
        values = value if isinstance(value, list) else [value]
        return [cls.from_value(item) for item in values]
