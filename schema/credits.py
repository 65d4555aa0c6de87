"""The credit ledger and low-credit reminder settings."""

from __future__ import annotations

from datetime import datetime

import strawberry

from auth.permissions import Permission
from models.credits import CreditLedgerEntry as LedgerRow
from models.credits import LowCreditReminder as ReminderRow
from schema.directives import Requires
from schema.enums import LedgerEntryKind
from schema.relay import Node
from schema.users import user_name

@strawberry.type(directives=[Requires(permission=Permission.CREDITS_READ)])
class CreditLedgerEntry(Node):
    kind: LedgerEntryKind
    delta: int
    balance_after: int
    created_at: datetime
    note: str | None
    transfer_id: str | None
    actor_user_id: strawberry.Private[int | None]

    @strawberry.field(description="Who made the entry (name), if a user did.")
    async def actor(self, info: strawberry.Info) -> str | None:
        return await user_name(info, self.actor_user_id)

    @classmethod
    def from_model(cls, row: LedgerRow) -> CreditLedgerEntry:
        return cls(
            pk=row.id, account_id=row.account_id, kind=row.kind, delta=row.delta,
            balance_after=row.balance_after, created_at=row.created_at, note=row.note,
            transfer_id=row.transfer_id, actor_user_id=row.actor_user_id,
        )

@strawberry.type(
    description="Email when a debit takes the balance below `threshold`; re-arms on recovery.",
)
class LowCreditReminder:
    enabled: bool
    threshold: int
    recipients: list[str]

    @classmethod
    def from_model(cls, row: ReminderRow | None) -> LowCreditReminder:
        if row is None:
            return cls(enabled=False, threshold=0, recipients=[])
        return cls(enabled=row.enabled, threshold=row.threshold, recipients=list(row.recipients))
