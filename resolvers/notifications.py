"""Reading an account's notification (email) history."""

from __future__ import annotations

from models.notifications import Notification
from resolvers.pagination import ChildList, SortKey

NEWEST_FIRST = SortKey((Notification.id,), descending=True)


# Emails sent about an account, newest first.
NOTIFICATIONS_BY_ACCOUNT = ChildList(Notification, Notification.account_id, NEWEST_FIRST)
