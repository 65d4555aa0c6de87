"""Audit events."""

from __future__ import annotations

import json
from datetime import datetime

import strawberry

from auth.permissions import Permission
from models.audit import AuditEvent as AuditRow
from schema.directives import Requires
from schema.relay import Node
from schema.users import user_name

@strawberry.type(directives=[Requires(permission=Permission.AUDIT_READ)])
class AuditEvent(Node):
    action: str
    actor_is_staff: bool
    target_type: str | None
    created_at: datetime
    actor_user_id: strawberry.Private[int | None]
    _before: strawberry.Private[dict[str, object] | None]
    _after: strawberry.Private[dict[str, object] | None]

    @strawberry.field(description="The state before, as a JSON string.")
    def before(self) -> str | None:
        return None if self._before is None else json.dumps(self._before, sort_keys=True)

    @strawberry.field(description="The state after, as a JSON string.")
    def after(self) -> str | None:
        return None if self._after is None else json.dumps(self._after, sort_keys=True)

    @strawberry.field(description="Who acted (name), if a user did.")
    async def actor(self, info: strawberry.Info) -> str | None:
        return await user_name(info, self.actor_user_id)

    @classmethod
    def from_model(cls, row: AuditRow) -> AuditEvent | None:
        """None for an event of no account (a login's own: two-factor on or off): as with
        security mail, the API holds no such object for anyone, staff included, since staff
        permissions cover every account id (``Notification.from_model``)."""
        if row.account_id is None:
            return None
        return cls(
            pk=row.id, account_id=row.account_id, action=row.action,
            actor_is_staff=row.actor_is_staff, target_type=row.target_type,
            created_at=row.created_at, actor_user_id=row.actor_user_id,
            _before=row.before, _after=row.after,
        )
