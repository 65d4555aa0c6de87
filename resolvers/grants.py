"""What a manager may give or take away: only permissions it holds itself, on that account.

The one rule for every path that changes a sub-account's permissions: setting them,
inviting with them, and deleting the contact that carries them (which takes them all away).
"""

from __future__ import annotations

from auth.permissions import Permissions, permission_names
from auth.policy import AccessMap
from resolvers.user_errors import UserError


def granted_permissions(
    access: AccessMap, account_id: int, current: Permissions, requested: Permissions,
    *, field: str = "permissions",
) -> Permissions | UserError:
    """The new set: the caller decides within what it holds; the rest stays as it was."""
    missing = ((requested - current) | (current - requested)) - access.permissions_on(account_id)
    if missing:
        return UserError(
            message="You can only grant (or take away) permissions you hold on this account "
            f"yourself: {', '.join(permission_names(missing))}.",
            code="PERMISSION_NOT_HELD", field=[field],
        )
    return requested
