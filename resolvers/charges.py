"""Charges: what an account owes, waiting for the invoice run.

The payer of a charge is decided by the links in force when it is incurred, never by the links
at the invoice run (DESIGN §1 "The payer of a charge"): the head of the account's BILLING group
at that moment, else the account itself. ``link_periods`` remembers who was in which group
when, so linking an account today moves none of its past months, and an unlink moves nothing
already incurred.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import or_, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from models.billing import Charge, ChargeKind
from models.links import LinkKind, LinkPeriod
from resolvers.tunables import Tunables


async def billing_payers_at(
    session: AsyncSession, at: datetime, *, account_ids: Collection[int] | None = None,
) -> dict[int, tuple[int, int]]:
    """account id → ``(payer account id, BILLING group id)`` for every account that stood in
    a BILLING group at ``at`` (of ``account_ids``, if given); an account missing pays for itself.

    A member's payer is its period's head. A head pays for itself, and its charges carry the
    group too: it was a head at ``at`` exactly when some member's period covered ``at``.
    Periods are half-open, ``[valid_from, valid_to)``: a charge made at the very moment of
    an unlink is already the account's own.
    """
    in_force = (
        (LinkPeriod.kind == LinkKind.BILLING) & (LinkPeriod.valid_from <= at)
        & or_(LinkPeriod.valid_to.is_(None), LinkPeriod.valid_to > at)
    )
    members = select(LinkPeriod.account_id, LinkPeriod.head_account_id, LinkPeriod.group_id).where(in_force)
    heads = select(LinkPeriod.head_account_id, LinkPeriod.head_account_id, LinkPeriod.group_id).where(in_force)
    if account_ids is not None:
        members = members.where(LinkPeriod.account_id.in_(account_ids))
        heads = heads.where(LinkPeriod.head_account_id.in_(account_ids))
    rows = (await session.execute(union(members, heads))).all()
    return {int(account): (int(payer), int(group)) for account, payer, group in rows}


async def billing_payer_at(
    session: AsyncSession, account_id: int, at: datetime
) -> tuple[int, int | None]:
    """``(payer account id, BILLING group id)`` of one account at ``at``."""
    found = await billing_payers_at(session, at, account_ids=[account_id])
    return found.get(account_id, (account_id, None))


def period_of(moment: datetime) -> str:
    return moment.strftime("%Y-%m")


async def charge_credit_purchase(
    session: AsyncSession, *, account_id: int, credits: int, tunables: Tunables, at: datetime
) -> Charge:
    """credits × the configured unit price, for the invoice of the month it was made in, to
    the payer in force at ``at``."""
    payer_id, group_id = await billing_payer_at(session, account_id, at)
    charge = Charge(
        account_id=account_id, payer_account_id=payer_id, billing_group_id=group_id,
        kind=ChargeKind.CREDIT_PURCHASE, period=period_of(at),
        description=f"{credits:,} prepaid credits", quantity=credits,
        unit_price=tunables.credit_unit_price, amount=credits * tunables.credit_unit_price,
        currency=tunables.currency, created_at=at,
    )
    session.add(charge)
    return charge
