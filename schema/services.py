"""Products and services: technical data, with the price gated as billing data."""

from __future__ import annotations

from datetime import datetime

import strawberry

from auth.permissions import Permission
from models.services import Service as ServiceRow
from schema.directives import Requires, gated
from schema.enums import ServiceStatus
from schema.money import Money
from schema.relay import Node


@strawberry.type(directives=[Requires(permission=Permission.SERVICES_READ)])
class Service(Node):
    name: str
    kind: str
    status: ServiceStatus
    created_at: datetime
    _price: strawberry.Private[Money]

    @gated(Permission.INVOICES_READ, description="A billing field on a technical type.")
    def monthly_price(self) -> Money | None:
        return self._price

    @classmethod
    def from_model(cls, row: ServiceRow) -> Service:
        return cls(
            pk=row.id, account_id=row.account_id, name=row.name, kind=row.kind,
            status=row.status, created_at=row.created_at,
            _price=Money(amount=row.monthly_price, currency=row.currency),
        )
