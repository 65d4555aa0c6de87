"""Throttling of repeated failures (logins, link proofs), counted in the database.

The counters live in ``throttle_buckets`` so every replica sees the same state. A bucket counts
failures in a window; at ``max_failures`` it blocks until the window has passed, whatever the
next attempt would have been, so a correct guess after the limit still gets ``RATE_LIMITED``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from auth.errors import RateLimited
from models.base import UTCDateTime, utcnow
from models.throttle import ThrottleBucket


@dataclass(frozen=True, slots=True)
class ThrottleSettings:
    max_failures: int = 5
    window: timedelta = timedelta(minutes=15)


async def ensure_not_blocked(
    session: AsyncSession, buckets: list[tuple[str, str]], *, now: datetime | None = None
) -> None:
    """Raise ``RateLimited`` (with seconds to wait) if any of ``(scope, key)`` is blocked."""
    now = now or utcnow()
    for scope, key in buckets:
        blocked_until = await session.scalar(
            select(ThrottleBucket.blocked_until).where(
                ThrottleBucket.scope == scope, ThrottleBucket.key == key
            )
        )
        if blocked_until is not None and blocked_until > now:
            retry_after = math.ceil((blocked_until - now).total_seconds())
            raise RateLimited(
                f"Too many failed attempts; try again in {retry_after} seconds.",
                retryAfter=retry_after,
            )


async def record_failure(
    session: AsyncSession, scope: str, key: str, settings: ThrottleSettings,
    *, now: datetime | None = None,
) -> None:
    """Count one failure atomically (an upsert, so concurrent replicas never lose a count)."""
    now = now or utcnow()
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(ThrottleBucket).values(
        scope=scope, key=key, failures=1, window_started_at=now, blocked_until=None
    )
    table = ThrottleBucket.__table__.c
    window_expired = table.window_started_at < now - settings.window
    statement = statement.on_conflict_do_update(
        index_elements=["scope", "key"],
        set_={
            "failures": case((window_expired, 1), else_=table.failures + 1),
            "window_started_at": case(
                (window_expired, literal(now, UTCDateTime())), else_=table.window_started_at
            ),
        },
    )
    await session.execute(statement)
    await session.execute(
        update(ThrottleBucket)
        .where(
            ThrottleBucket.scope == scope,
            ThrottleBucket.key == key,
            ThrottleBucket.failures >= settings.max_failures,
        )
        .values(blocked_until=now + settings.window)
    )


async def clear_failures(session: AsyncSession, scope: str, key: str) -> None:
    await session.execute(
        update(ThrottleBucket)
        .where(ThrottleBucket.scope == scope, ThrottleBucket.key == key)
        .values(failures=0, blocked_until=None)
    )

