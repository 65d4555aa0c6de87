"""Reading an account's audit log."""

from __future__ import annotations

from models.audit import AuditEvent
from resolvers.pagination import ChildList, SortKey

NEWEST_FIRST = SortKey((AuditEvent.id,), descending=True)


# An account's audit log, newest first.
AUDIT_BY_ACCOUNT = ChildList(AuditEvent, AuditEvent.account_id, NEWEST_FIRST)
