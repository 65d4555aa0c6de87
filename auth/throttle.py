"""Throttling of repeated failures (sign-ins, second factors, link proofs), in the database.

Failures are counted in three buckets at once, each with its own limit, so that the throttle
stops guessing without letting anyone lock out somebody else (DESIGN: "throttling that cannot
be turned against users"):

``pair`` (identity × client)
    A few failures (``max_failures``) block that identity *from that client* for the window.
    A colleague's typos behind the office NAT block only that colleague, and the owner of the
    identity, signing in from elsewhere, is not affected.
``client`` (every identity from one client)
    Many failures (``client_max_failures``) block the client: password spraying, one
    password tried against many emails.
``identity`` (one identity from every client)
    Only a large number (``identity_max_failures``), which takes many clients since each pair
    stops at a few, slows the identity down for everyone, with a delay that doubles with each
    further failure (1 s, 2 s, 4 s … up to the window): never a fixed lockout.

The identity is an email (sign-in) or an account number (link proofs); the client is the
caller's address (``linkgate.client_address``) or, for signed-in callers, the user. Counters
live in ``throttle_buckets`` so every replica sees the same state; every count is one atomic
upsert. An attempt is counted before its secret is checked and forgiven if it was right
(``attempt``, ``succeeded``); a refused attempt counts nothing.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from auth.errors import RateLimited
from auth.secrets import digest
from models.base import UTCDateTime, utcnow
from models.throttle import ThrottleBucket


@dataclass(frozen=True, slots=True)
class ThrottleSettings:
    max_failures: int = 5
    client_max_failures: int = 50
    identity_max_failures: int = 20
    window: timedelta = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class FailureThrottle:
    """The three buckets of one kind of attempt (``"login"``, ``"link"``) by one client at
    one identity."""

    kind: str
    identity: str
    client: str
    settings: ThrottleSettings
    # This client has signed in to this identity before (it holds a past session, or is
    # signed in as it now). The identity's bucket neither stops nor counts it: a guess
    # campaign from elsewhere slows down strangers, not the owner at their usual desk, and
    # the owner's own attempts never lengthen the delay for others. Its own pair and client
    # limits still apply.
    known_client: bool = False

    def _buckets(self) -> list[tuple[str, str]]:
        """Pair, client and (unless the client is known) identity, in that order."""
        # Digests: any text fits the key column, and the table holds no emails.
        client = client_key(self.client)
        buckets = [
            (f"{self.kind}:pair", digest(f"{self.identity}\n{client}")),
            (f"{self.kind}:client", digest(client)),
        ]
        if not self.known_client:
            buckets.append((f"{self.kind}:identity", digest(self.identity)))
        return buckets

    async def attempt(self, session: AsyncSession, *, now: datetime | None = None) -> None:
        """Count this attempt as a failure *before* the secret is checked, or raise
        ``RateLimited`` (with seconds to wait) and count nothing.

        Counting first closes the race where many parallel guesses all pass a check before
        any of them is counted: each one's count comes back from the same atomic upsert, so
        only the first ``max_failures`` get through. The caller commits before the slow part
        (a password hash), so other replicas see the count, and calls ``succeeded`` if the
        secret was right.
        """
        now = now or utcnow()
        await self._refuse_if_blocked(session, now)
        settings = self.settings
        pair, client, *identity = self._buckets()
        over = [
            await _count(session, pair, now, settings.window, settings.max_failures, growing=False)
            > settings.max_failures,
            await _count(session, client, now, settings.window, settings.client_max_failures,
                         growing=False) > settings.client_max_failures,
        ]
        for bucket in identity:
            await _count(session, bucket, now, settings.window, settings.identity_max_failures,
                         growing=True)
        if any(over):
            raise RateLimited(
                f"Too many failed attempts; try again in {int(settings.window.total_seconds())} "
                "seconds.", retryAfter=int(settings.window.total_seconds()),
            )

    async def succeeded(self, session: AsyncSession) -> None:
        """The whole secret was right (a completed sign-in): the pair's failures are forgiven,
        since the client proved it knows it; the client's and the identity's lose only this
        attempt (a success says nothing about the other attempts)."""
        pair = self._buckets()[0]
        await session.execute(
            update(ThrottleBucket)
            .where(ThrottleBucket.scope == pair[0], ThrottleBucket.key == pair[1])
            .values(failures=0, blocked_until=None)
        )
        await self._uncount(session, pair=False)

    async def forgive(self, session: AsyncSession) -> None:
        """This attempt was no failure, but proved nothing more (a right password still
        waiting for its second factor): it is uncounted everywhere, and earlier failures of
        the pair stand, so a known password buys no extra code guesses."""
        await self._uncount(session, pair=True)

    async def _uncount(self, session: AsyncSession, *, pair: bool) -> None:
        settings = self.settings
        pair_bucket, client, *identity = self._buckets()
        # The order ``attempt`` counts in (pair, client, identity): concurrent attempts and
        # uncounts of one bucket set take their row locks in one order, so never deadlock.
        buckets = [*([(pair_bucket, settings.max_failures)] if pair else []),
                   (client, settings.client_max_failures),
                   *[(bucket, settings.identity_max_failures) for bucket in identity]]
        table = ThrottleBucket.__table__.c
        for (scope, key), limit in buckets:
            await session.execute(
                update(ThrottleBucket)
                .where(ThrottleBucket.scope == scope, ThrottleBucket.key == key)
                .values(
                    failures=case((table.failures > 0, table.failures - 1), else_=0),
                    # A block this very attempt set is lifted; one set by earlier failures stays.
                    blocked_until=case((table.failures - 1 < limit, None),
                                       else_=table.blocked_until),
                )
            )

    async def _refuse_if_blocked(self, session: AsyncSession, now: datetime) -> None:
        buckets = self._buckets()
        rows = await session.execute(
            select(ThrottleBucket.blocked_until).where(
                ThrottleBucket.blocked_until > now,
                or_(*[
                    and_(ThrottleBucket.scope == scope, ThrottleBucket.key == key)
                    for scope, key in buckets
                ]),
            )
        )
        latest = max((until for (until,) in rows), default=None)
        if latest is not None:
            retry_after = max(1, math.ceil((latest - now).total_seconds()))
            raise RateLimited(
                f"Too many failed attempts; try again in {retry_after} seconds.",
                retryAfter=retry_after,
            )


def client_key(client: str) -> str:
    """What one client is, for counting: an address, except that an IPv6 address stands for
    its /64, the block one home or office connection is given (otherwise each of its 2^64
    addresses would be a fresh client with a fresh budget)."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client  # not an address: a user ("user:7") or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return client


async def count_in_window(
    session: AsyncSession, scope: str, key: str, *, window: timedelta, now: datetime | None = None
) -> int:
    """One more event in ``(scope, key)``'s window, counted atomically like a failure: the
    count, this one included. For caps that concurrent requests must not race past (mail)."""
    return await _count(session, (scope, digest(key)), now or utcnow(), window, 2**62, growing=False)


async def _count(
    session: AsyncSession, bucket: tuple[str, str], now: datetime, window: timedelta,
    limit: int, *, growing: bool,
) -> int:
    """One failure, atomically (an upsert, so concurrent replicas never lose a count); at the
    limit the bucket blocks for the window, or (``growing``) for 2^(failures - limit) seconds.
    Returns the bucket's failures, this one included."""
    scope, key = bucket
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = ThrottleBucket.__table__.c
    window_expired = table.window_started_at < now - window
    statement = insert(ThrottleBucket).values(
        scope=scope, key=key, failures=1, window_started_at=now, blocked_until=None
    ).on_conflict_do_update(
        index_elements=["scope", "key"],
        set_={
            "failures": case((window_expired, 1), else_=table.failures + 1),
            "window_started_at": case(
                (window_expired, literal(now, UTCDateTime())), else_=table.window_started_at
            ),
        },
    ).returning(ThrottleBucket.failures)
    failures = int((await session.execute(statement)).scalar_one())
    if failures < limit:
        return failures
    delay = window
    if growing:
        exponent = min(failures - limit, 30)
        delay = min(window, timedelta(seconds=2**exponent))
    await session.execute(
        update(ThrottleBucket)
        .where(ThrottleBucket.scope == scope, ThrottleBucket.key == key)
        .values(blocked_until=now + delay)
    )
    return failures
