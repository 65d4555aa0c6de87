"""Answers that take the same time whatever they found (DESIGN: "no oracle").

Mutations that must not tell whether an email is registered (``requestPasswordReset``,
``signUp``) do different work for a known and an unknown email: a few inserts, or none.
Each ends no earlier than a fixed time after it began, well above what either path costs,
so the response time says nothing about which path ran.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

# Both paths cost a few milliseconds plus, where one runs, an argon2 hash (~50–200 ms here).
DEFAULT_FLOOR_SECONDS = 0.4


@asynccontextmanager
async def answered_no_sooner_than(seconds: float = DEFAULT_FLOOR_SECONDS) -> AsyncIterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        remaining = seconds - (time.monotonic() - started)
        if remaining > 0:
            await asyncio.sleep(remaining)
