"""Money: integer minor units and an ISO currency code, never a float."""

from __future__ import annotations

import strawberry


@strawberry.type(description="An amount in minor units (cents) of `currency`.")
class Money:
    amount: int
    currency: str


@strawberry.type(description="A postal address.")
class Address:
    name: str | None = None
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    postal_code: str | None = None
    country: str | None = None
    tax_id: str | None = strawberry.field(default=None, description="A VAT or other tax ID.")
