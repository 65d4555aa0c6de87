"""The notification outbox as an account's email history."""

from __future__ import annotations

from datetime import datetime

import strawberry

from auth.permissions import Permission
from models.notifications import Notification as NotificationRow
from schema.directives import Requires
from schema.relay import Node


@strawberry.type(directives=[Requires(permission=Permission.EMAILS_READ)])
class Notification(Node):
    category: str
    recipient: str
    subject: str
    created_at: datetime
    sent_at: datetime | None

    @classmethod
    def from_model(cls, row: NotificationRow) -> Notification:
        return cls(
            pk=row.id, account_id=row.account_id or 0, category=row.category,
            recipient=row.recipient, subject=row.subject, created_at=row.created_at,
            sent_at=row.sent_at,
        )
