"""The demo seed keeps the gateway's invariants, so the demo never shows a broken state."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from auth.passwords import verify_password
from linkgate.demo import (
    DEMO_LOGINS, DEMO_PASSWORD, HEAD_OFFICE, LABS, LOGISTICS, RETAIL,
    seed_demo,
)
from models import (
    Account, Base, Charge, Contact, CreditLedgerEntry, Invoice, InvoiceLine, LedgerEntryKind,
    LinkGroup, LinkKind, LinkMember, LowCreditReminder, Membership, Notification, StaffRole,
    Ticket, User,
)
from models.tickets import InboundMessage, TicketAttachment, TicketMessage
from models.database import create_engine, create_session_factory
from resolvers.invoicing import tax_on
from resolvers.tunables import Tunables


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/demo.db")
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    factory = create_session_factory(engine)
    async with factory() as session:
        assert await seed_demo(session) is True
        await session.commit()
    yield factory
    await engine.dispose()


async def _accounts(session: AsyncSession) -> dict[str, Account]:
    return {a.number: a for a in await session.scalars(select(Account))}


async def test_credit_balances_match_ledger(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        entries = (await session.scalars(
            select(CreditLedgerEntry).order_by(CreditLedgerEntry.id))).all()
        running: dict[int, int] = defaultdict(int)
        for entry in entries:
            running[entry.account_id] += entry.delta
            assert entry.balance_after == running[entry.account_id] >= 0
        for account in (await _accounts(session)).values():
            assert account.credit_balance == running[account.id]
        transfers: dict[str, list[CreditLedgerEntry]] = defaultdict(list)
        for entry in entries:
            if entry.transfer_id:
                transfers[entry.transfer_id].append(entry)
        assert transfers
        for pair in transfers.values():
            assert {e.kind for e in pair} == {
                LedgerEntryKind.TRANSFER_IN, LedgerEntryKind.TRANSFER_OUT}
            assert len(pair) == 2 and sum(e.delta for e in pair) == 0
            assert pair[0].account_id != pair[1].account_id


async def test_invoices_add_up(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        invoices = (await session.scalars(select(Invoice))).all()
        lines = (await session.scalars(select(InvoiceLine))).all()
        charges = {c.id: c for c in await session.scalars(select(Charge))}
        assert len(invoices) == 9
        for invoice in invoices:
            own = [line for line in lines if line.invoice_id == invoice.id]
            assert own and invoice.subtotal == sum(line.amount for line in own)
            assert invoice.tax == tax_on(invoice.subtotal, Tunables().tax_rate_basis_points)
            assert invoice.total == invoice.subtotal + invoice.tax
            for line in own:
                assert line.amount == line.quantity * line.unit_price
                assert line.charge_id is not None
                charge = charges[line.charge_id]
                assert charge.invoice_id == invoice.id
                assert charge.payer_account_id == invoice.payer_account_id
                assert charge.account_id == line.account_id
        invoiced = {line.charge_id for line in lines}
        for charge in charges.values():
            assert (charge.invoice_id is not None) == (charge.id in invoiced)
        assert any(c.invoice_id is None for c in charges.values()), "a charge awaits the next run"


async def test_consolidated_invoice_bills_the_head(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        accounts = await _accounts(session)
        by_id = {a.id: a.number for a in accounts.values()}
        group = await session.scalar(select(LinkGroup).where(LinkGroup.kind == LinkKind.BILLING))
        assert group is not None
        members = (await session.scalars(
            select(LinkMember).where(LinkMember.group_id == group.id))).all()
        assert [by_id[m.account_id] for m in members if m.is_head] == [HEAD_OFFICE]
        assert sorted(by_id[m.account_id] for m in members if not m.is_head) == [RETAIL, LOGISTICS]
        assert all(m.friendly_name for m in members)
        management = (await session.scalars(
            select(LinkMember).where(LinkMember.kind == LinkKind.MANAGEMENT))).all()
        assert {(by_id[m.account_id], m.is_head) for m in management} == {
            (HEAD_OFFICE, True), (LOGISTICS, False)}
        assert LABS not in {by_id[m.account_id] for m in [*members, *management]}

        consolidated = (await session.scalars(
            select(Invoice).where(Invoice.link_group_id == group.id))).all()
        assert len(consolidated) == 3
        for invoice in consolidated:
            assert invoice.payer_account_id == accounts[HEAD_OFFICE].id
            assert invoice.bill_to_line1 and invoice.bill_to_email == "ap@northwind.example"
            line_accounts = set(await session.scalars(
                select(InvoiceLine.account_id).where(InvoiceLine.invoice_id == invoice.id)))
            assert {by_id[a] for a in line_accounts} == {HEAD_OFFICE, RETAIL, LOGISTICS}


async def test_demo_logins_verify(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        users = {u.email: u for u in await session.scalars(select(User))}
        assert [email for email, _ in DEMO_LOGINS] == [
            "olivia@northwind.example", "bill@northwind.example", "dev@northwind.example",
            "eve@contoso.example", "agent@linkgate.example", "finance@linkgate.example",
        ]
        for email, _ in DEMO_LOGINS:
            assert verify_password(users[email].password_hash, DEMO_PASSWORD)
        assert users["agent@linkgate.example"].staff_role is StaffRole.SUPPORT
        assert users["finance@linkgate.example"].staff_role is StaffRole.BILLING
        accounts = await _accounts(session)
        memberships = {(m.user_id, m.account_id): m.permissions
                       for m in await session.scalars(select(Membership))}
        head = accounts[HEAD_OFFICE].id
        assert memberships[(users["bill@northwind.example"].id, head)] == sorted(
            ["INVOICES_READ", "CREDITS_READ", "CREDITS_PURCHASE", "CREDITS_TRANSFER",
             "BILLING_MANAGE", "INVOICES_PAY"])
        assert memberships[(users["dev@northwind.example"].id, head)] == [
            "SERVICES_READ", "TICKETS_READ", "TICKETS_WRITE"]
        olivia = users["olivia@northwind.example"].id
        assert all(user_id != olivia for user_id, _ in memberships), "owners have no membership"
        # Tokens are derived (auth/enrollment.py): nothing of them is stored.
        assert all(account.enrollment_token_hash is None and account.enrollment_token_version == 1
                   for account in accounts.values())


async def test_tickets_contacts_and_outbox(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        tickets = (await session.scalars(select(Ticket))).all()
        assert any(t.opened_by_contact_id for t in tickets)
        assert len({t.status for t in tickets}) >= 3
        contacts = (await session.scalars(select(Contact))).all()
        assert any(c.is_support_contact for c in contacts)
        assert any(c.user_id for c in contacts)
        assert len({tuple(c.email_preferences) for c in contacts}) >= 4
        reminder = await session.scalar(select(LowCreditReminder))
        assert reminder is not None and reminder.enabled and reminder.threshold == 100
        notifications = (await session.scalars(select(Notification))).all()
        assert any(n.sent_at for n in notifications) and any(not n.sent_at for n in notifications)


async def test_a_ticket_that_arrived_by_email(sessions: async_sessionmaker[AsyncSession]) -> None:
    """What `linkgate receive-mail` would have recorded: a contact of the head office wrote to
    the support address (with a file), the agent answered in the portal, the contact replied."""
    async with sessions() as session:
        ticket = await session.scalar(select(Ticket).where(Ticket.number == "TKT-100005"))
        assert ticket is not None and ticket.opened_by_contact_id is not None
        messages = (await session.scalars(select(TicketMessage).where(
            TicketMessage.ticket_id == ticket.id).order_by(TicketMessage.id))).all()
        assert [(m.author_kind.value, m.via) for m in messages] == [
            ("CUSTOMER", "EMAIL"), ("STAFF", "PORTAL"), ("CUSTOMER", "EMAIL")]
        received = (await session.scalars(select(InboundMessage).where(
            InboundMessage.ticket_id == ticket.id).order_by(InboundMessage.id))).all()
        assert [(r.outcome, r.sender, r.recipient) for r in received] == [
            ("opened", "it@northwind.example", "support@linkgate.example"),
            ("replied", "it@northwind.example", "support@linkgate.example")]
        files = (await session.scalars(select(TicketAttachment))).all()
        assert [(f.ticket_message_id, f.filename, f.size) for f in files] == [
            (messages[0].id, "backup-report.txt", len(files[0].data))]
        # The agent's answer is queued to the contact, the owner and the SUPPORT copies.
        recipients = set((await session.scalars(select(Notification.recipient).where(
            Notification.related_type == "ticket", Notification.related_id == ticket.id))).all())
        assert recipients == {"it@northwind.example", "olivia@northwind.example",
                              "dev@northwind.example"}


async def test_second_seed_is_a_no_op(sessions: async_sessionmaker[AsyncSession]) -> None:
    async def counts(session: AsyncSession) -> dict[str, int]:
        return {table.name: await session.scalar(select(func.count()).select_from(table)) or 0
                for table in Base.metadata.sorted_tables}

    async with sessions() as session:
        before = await counts(session)
        assert await seed_demo(session) is False
        await session.commit()
        assert await counts(session) == before


