"""Fresh customers for the billing tests: users, accounts, links and contacts of their own,
inserted with the ORM (with opening balances, staff roles, memberships), so no test changes
the demo data other tests read. ``tests/customers.py`` makes customers the way a user does,
by signing up over HTTP; these are *seeded*, hence the names."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from models import (
    Account, Charge, ChargeKind, CreditLedgerEntry, Invoice, LedgerEntryKind, LinkGroup, LinkKind,
    LinkMember, LinkMethod, LinkPeriod, Membership, StaffRole, User,
)
from models.base import utcnow
from models.database import create_session_factory
from resolvers.invoicing import BillTo, Period, write_invoice
from resolvers.tunables import Tunables
from schema.relay import encode_global_id
from tests.conftest import token_for_user


@dataclass
class SeededCustomer:
    user_id: int
    email: str
    token: str
    account_ids: list[int] = field(default_factory=list)

    def gid(self, index: int = 0) -> str:
        return encode_global_id("Account", self.account_ids[index])


async def new_user(engine: AsyncEngine, *, role: StaffRole | None = None, tag: str = "") -> tuple[int, str, str]:
    tag = tag or uuid.uuid4().hex[:12]
    email = f"billing-{tag}@test.example"
    async with create_session_factory(engine)() as session:
        user = User(email=email, name=f"Billing {tag}", password_hash="not-a-hash",
                    staff_role=role, token_version=1)
        session.add(user)
        await session.commit()
    return user.id, email, await token_for_user(engine, user.id)


async def seeded_customer(
    engine: AsyncEngine, *, accounts: int = 1, balances: list[int] | None = None,
) -> SeededCustomer:
    """A user owning ``accounts`` new accounts, each opened with its ``balances`` entry."""
    user_id, email, token = await new_user(engine)
    balances = balances or [0] * accounts
    customer = SeededCustomer(user_id, email, token)
    async with create_session_factory(engine)() as session:
        for index, balance in enumerate(balances):
            # "Zulu": staff list every account by name; ours sort after the demo's.
            account = Account(
                number=f"ACC-B{uuid.uuid4().hex[:12].upper()}", name=f"Zulu billing test {index}",
                owner_id=user_id, enrollment_token_hash="not-a-hash", credit_balance=balance,
            )
            session.add(account)
            await session.flush()
            if balance:
                session.add(CreditLedgerEntry(account_id=account.id, kind=LedgerEntryKind.PURCHASE,
                                              delta=balance, balance_after=balance, note="Opening"))
            customer.account_ids.append(account.id)
        await session.commit()
    return customer


async def grant(engine: AsyncEngine, user_id: int, account_id: int, permissions: list[str]) -> None:
    async with create_session_factory(engine)() as session:
        session.add(Membership(user_id=user_id, account_id=account_id, permissions=permissions))
        await session.commit()


async def link_billing(
    engine: AsyncEngine, head_id: int, member_ids: list[int], *, linked_at: datetime | None = None,
) -> int:
    """A BILLING group headed by ``head_id``, linked at ``linked_at`` (default now), with the
    open link periods a link makes (``resolvers.links``); returns the group id. Backdate
    ``linked_at`` to have the head pay for months before today."""
    linked_at = linked_at or utcnow()
    async with create_session_factory(engine)() as session:
        group = LinkGroup(kind=LinkKind.BILLING, name=f"Billing group {uuid.uuid4().hex[:6]}")
        session.add(group)
        await session.flush()
        for account_id in [head_id, *member_ids]:
            session.add(LinkMember(group_id=group.id, kind=LinkKind.BILLING, account_id=account_id,
                                   is_head=account_id == head_id, friendly_name=None,
                                   linked_at=linked_at, linked_via=LinkMethod.SAME_OWNER))
        session.add_all([
            LinkPeriod(kind=LinkKind.BILLING, account_id=account_id, group_id=group.id,
                       head_account_id=head_id, valid_from=linked_at)
            for account_id in member_ids
        ])
        await session.commit()
        return group.id


async def unlink_billing(engine: AsyncEngine, group_id: int, member_id: int) -> None:
    """Takes ``member_id`` out of the group as an unlink does: its period closes now and its
    member row goes (the head's row stays: a test unlinking the last member leaves it)."""
    async with create_session_factory(engine)() as session:
        await session.execute(update(LinkPeriod).where(
            LinkPeriod.group_id == group_id, LinkPeriod.account_id == member_id,
            LinkPeriod.valid_to.is_(None)).values(valid_to=utcnow()))
        await session.execute(delete(LinkMember).where(LinkMember.group_id == group_id,
                                                       LinkMember.account_id == member_id))
        await session.commit()


async def scalar(engine: AsyncEngine, statement: Any) -> Any:
    async with create_session_factory(engine)() as session:
        return await session.scalar(statement)


async def rows(engine: AsyncEngine, statement: Any) -> list[Any]:
    async with create_session_factory(engine)() as session:
        return list((await session.scalars(statement)).all())


async def balance_and_ledger_sum(engine: AsyncEngine, account_id: int) -> tuple[int, int]:
    async with create_session_factory(engine)() as session:
        balance = await session.scalar(select(Account.credit_balance).where(Account.id == account_id))
        total = await session.scalar(select(func.coalesce(func.sum(CreditLedgerEntry.delta), 0))
                                     .where(CreditLedgerEntry.account_id == account_id))
        return int(balance), int(total)


async def issue_invoice(
    engine: AsyncEngine, account_id: int, *, subtotal: int = 10_000,
    bill_to_email: str = "ap-payments@example.com",
) -> Invoice:
    """An unpaid invoice of ``subtotal`` + 21 % tax for the account, made the one way invoices
    are made (``write_invoice``), from one charge of a long-ended month no run touches."""
    async with create_session_factory(engine)() as session:
        payer = await session.get(Account, account_id)
        assert payer is not None
        now = datetime.now(timezone.utc)
        charge = Charge(account_id=account_id, payer_account_id=account_id, kind=ChargeKind.CREDIT_PURCHASE,
                        period="2019-01", description="Prepaid credits", quantity=1, unit_price=subtotal,
                        amount=subtotal, currency="EUR", created_at=now)
        session.add(charge)
        await session.flush()
        invoice = await write_invoice(
            session, payer=payer, charges=[charge], number=f"INV-T-{uuid.uuid4().hex[:12].upper()}",
            period=Period("2019-01", date(2019, 1, 1), date(2019, 1, 31)),
            bill_to=BillTo("Accounts Payable", bill_to_email), issued_at=now, tunables=Tunables(),
        )
        await session.commit()
        return invoice
