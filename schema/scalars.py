"""Scalars whose input Linkgate decides more narrowly than Strawberry's defaults."""

from __future__ import annotations

from datetime import datetime, timezone

import dateutil.parser
from strawberry.schema.types.base_scalars import wrap_parser
from strawberry.types.scalar import ScalarDefinition


def parse_instant(value: str) -> datetime:
    """An ISO 8601 date-time *with* its offset, as UTC. Without an offset the instant is
    unknown (whose midnight?), so it is refused rather than guessed; and it must be one that
    exists in UTC (years 1 to 9999 there)."""
    moment = dateutil.parser.isoparse(value)
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("It has no time zone: add one, as in 2026-10-01T00:00:00Z or +02:00.")
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("It is outside the years 1 to 9999 in UTC.") from None


DateTimeDefinition = ScalarDefinition(
    name="DateTime",
    description=(
        "An instant: ISO 8601 with a time zone offset (2026-10-01T00:00:00Z, "
        "2026-10-01T02:00:00+02:00). Inputs without an offset are refused; answers are in UTC."
    ),
    specified_by_url=None,
    serialize=lambda value: value.isoformat(),
    parse_value=wrap_parser(parse_instant, "DateTime", exceptions=(ValueError, OverflowError)),
    parse_literal=None,
    origin=datetime,
)

SCALAR_OVERRIDES = {datetime: DateTimeDefinition}
