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
