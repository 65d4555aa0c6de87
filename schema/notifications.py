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
    body: str = strawberry.field(
        description="What was sent, as plain text (an invoice email also carried the invoice's PDF)."
    )
    created_at: datetime
    sent_at: datetime | None

    @classmethod
    def from_model(cls, row: NotificationRow) -> Notification | None:
        """None for security mail (no account: invitations, resets, sign-in alerts): it is
        its recipient's alone, so the API holds no such object for anyone, staff included,
        and ``node(id:)`` answers as for an unknown ID. (No stand-in account id would do:
        staff permissions cover every account id.)"""
        if row.account_id is None:
            return None
        return cls(
            pk=row.id, account_id=row.account_id, category=row.category,
            recipient=row.recipient, subject=row.subject, body=row.body, created_at=row.created_at,
            sent_at=row.sent_at,
        )
