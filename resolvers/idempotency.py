"""Idempotency keys: a keyed mutation repeated returns its first result and writes nothing.

A key belongs to one user and one operation. The record is written in the same transaction
as the change it describes, so either both exist or neither does. Only successful results are
recorded: a request refused with a ``userError`` writes nothing, key included, so it can be
retried with the same key once the problem is fixed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models.credits import IdempotencyRecord
from resolvers.user_errors import UserError

MAX_KEY_LENGTH = 100


def clean_key(key: str | None, field: str = "idempotencyKey") -> str | None | UserError:
    """``None`` (no key), the trimmed key, or why it cannot be one."""
    if key is None:
        return None
    key = key.strip()
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        return UserError(
            message=f"An idempotency key is 1 to {MAX_KEY_LENGTH} printable characters.",
            code="INVALID_IDEMPOTENCY_KEY", field=[field],
        )
    return key


def request_hash(request: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


async def replay(
    session: AsyncSession, *, user_id: int, operation: str, key: str, request: dict[str, Any]
) -> dict[str, Any] | UserError | None:
    """The first result for this key, a ``userError`` if it came with other input, or None."""
    record = await session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.user_id == user_id, IdempotencyRecord.operation == operation,
            IdempotencyRecord.key == key,
        ).execution_options(populate_existing=True)
    )
    if record is None:
        return None
    if record.request_hash != request_hash(request):
        return UserError(
            message="This idempotency key was already used with different input.",
            code="IDEMPOTENCY_KEY_REUSED", field=["idempotencyKey"],
        )
    return dict(record.response)


def remember(
    session: AsyncSession, *, user_id: int, operation: str, key: str,
    request: dict[str, Any], response: dict[str, Any],
) -> None:
    """Store the result with the change (same transaction)."""
    session.add(IdempotencyRecord(
        user_id=user_id, operation=operation, key=key, request_hash=request_hash(request),
        response=response,
    ))
