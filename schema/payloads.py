"""What every mutation payload shares: expected failures as ``userErrors``."""

from __future__ import annotations

import strawberry

from resolvers.user_errors import UserError as UserErrorValue


@strawberry.type(description="An expected business failure; `code` is stable, `message` is for people.")
class UserError:
    field: list[str] | None
    message: str
    code: str

    @classmethod
    def from_value(cls, value: UserErrorValue) -> UserError:
        return cls(field=value.field, message=value.message, code=value.code)

    @classmethod
    def list_from(cls, value: UserErrorValue | list[UserErrorValue]) -> list[UserError]:
        """A resolver's one failure or several, as the payload's ``userErrors``."""
        values = value if isinstance(value, list) else [value]
        return [cls.from_value(item) for item in values]
