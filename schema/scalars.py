"""Scalars whose input Linkgate decides more narrowly than Strawberry's defaults."""

from __future__ import annotations

from datetime import datetime

from strawberry.schema.types.base_scalars import wrap_parser
from strawberry.types.scalar import ScalarDefinition

from resolvers.validation import parse_instant


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
