"""Live events: what changed, published when the transaction that changed it commits.

A resolver that changes something a dashboard shows calls ``publish(session, event)`` in the
same transaction. Nothing leaves the process then: the event waits in the session until
that transaction commits, and is dropped if it rolls back, so a subscriber never hears of a
change that did not happen. Who carries committed events to subscribers on every replica
(PostgreSQL ``NOTIFY`` inside the committing transaction, or in-process on SQLite) is the
server's choice (``linkgate/event_bus.py``); subscribers read them through an ``EventFeed``.

An event names only ids: whoever receives it reads the rows again, with their own rights,
at delivery time.
"""

from __future__ import annotations

import enum
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

_PENDING = "linkgate.live_events"


class Topic(enum.StrEnum):
    TICKET = "ticket"  # a ticket opened, replied to (by anyone, by email too), closed
    CREDIT = "credit"  # a credit ledger entry written: the balance changed
    INVOICE_ISSUED = "invoice_issued"
    INVOICE_UPDATED = "invoice_updated"  # paid (fully or in part) or voided


@dataclass(frozen=True, slots=True)
class LiveEvent:
    topic: Topic
    account_id: int  # the account whose rights decide who may hear of it
    subject_id: int  # the ticket, ledger entry or invoice
    detail_id: int | None = None  # the ticket message, when there is one

    def encode(self) -> str:
        return json.dumps([self.topic.value, self.account_id, self.subject_id, self.detail_id],
                          separators=(",", ":"))

    @classmethod
    def decode(cls, text: str) -> LiveEvent | None:
        """``None`` for anything that is not an event this version wrote (a notification from
        an older or newer replica, or from someone else on the channel)."""
        try:
            topic, account_id, subject_id, detail_id = json.loads(text)
            if not all(isinstance(value, int) and not isinstance(value, bool)
                       for value in (account_id, subject_id)):
                return None
            if detail_id is not None and (not isinstance(detail_id, int) or isinstance(detail_id, bool)):
                return None
            return cls(Topic(topic), account_id, subject_id, detail_id)
        except (ValueError, TypeError):
            return None


def publish(session: AsyncSession | Session, event: LiveEvent) -> None:
    """Announce ``event`` when the session's current transaction commits."""
    session.info.setdefault(_PENDING, []).append(event)


def take_pending(session: Session) -> list[LiveEvent]:
    """The events of the transaction ending now (for the commit hooks that send them)."""
    return session.info.pop(_PENDING, None) or []


class EventStream(Protocol):
    """One subscriber's view of the events reaching this process, in commit order."""

    overflowed: bool  # it fell too far behind and was cut off
    on_overflow: Callable[[], None] | None  # told once, when that happens

    def __aiter__(self) -> AsyncIterator[LiveEvent]: ...

    def close(self) -> None: ...


class EventFeed(Protocol):
    """Where subscriptions read committed events from."""

    def open_stream(self) -> EventStream: ...


def matches(event: LiveEvent, topics: frozenset[Topic], account_id: int | None) -> bool:
    return event.topic in topics and (account_id is None or event.account_id == account_id)

