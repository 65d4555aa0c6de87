"""The audit log writer: one event per change, in the caller's transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from auth.principals import Principal
from models.audit import AuditEvent


def record_event(
    session: AsyncSession,
    *,
    actor: Principal | None,
    action: str,
    account_id: int | None,
    target: tuple[str, int] | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEvent:
    """``action`` is a dotted verb such as ``account.renamed`` or ``link.created``."""
    event = AuditEvent(
        account_id=account_id,
        actor_user_id=actor.user_id if actor else None,
        actor_is_staff=bool(actor and actor.is_staff),
        action=action,
        target_type=target[0] if target else None,
        target_id=target[1] if target else None,
        before=before,
        after=after,
    )
    session.add(event)
    return event
