"""Charges: what an account owes, waiting for the invoice run.

The payer is fixed when the charge is made: the head of the account's BILLING group at that
moment, else the account itself. A later unlink does not move charges already made (DESIGN §1).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from models.billing import Charge, ChargeKind
from models.links import LinkKind, LinkMember
from resolvers.tunables import Tunables


async def billing_payer(session: AsyncSession, account_id: int) -> tuple[int, int | None]:
    """``(payer account id, BILLING group id)`` as the links stand now."""
    place = aliased(LinkMember)
    head = aliased(LinkMember)
    row = (await session.execute(
        select(head.account_id, place.group_id)
        .join(head, (head.group_id == place.group_id) & head.is_head)
        .where(place.kind == LinkKind.BILLING, place.account_id == account_id)
    )).first()
    if row is None:
        return account_id, None
    return int(row[0]), int(row[1])


def period_of(moment: datetime) -> str:
    return moment.strftime("%Y-%m")


async def charge_credit_purchase(
    session: AsyncSession, *, account_id: int, credits: int, tunables: Tunables, at: datetime
) -> Charge:
    """credits × the configured unit price, for the invoice of the month it was made in."""
    payer_id, group_id = await billing_payer(session, account_id)
    charge = Charge(
        account_id=account_id, payer_account_id=payer_id, billing_group_id=group_id,
        kind=ChargeKind.CREDIT_PURCHASE, period=period_of(at),
        description=f"{credits:,} prepaid credits", quantity=credits,
        unit_price=tunables.credit_unit_price, amount=credits * tunables.credit_unit_price,
        currency=tunables.currency, created_at=at,
    )
    session.add(charge)
    return charge
