"""The payer of a charge is decided by the links in force when it is incurred (DESIGN §1 "The
payer of a charge"; issue 13, part 3).

A month's service fee belongs to whoever paid when the month began (00:00 UTC on its first
day): linking mid-month pays from the next full month, a month an unlink happened in stays with
the old head, and linking today moves none of the past months. Credit purchases keep the payer
of the moment they were made.

Links and unlinks go over HTTP; only their dates are moved back (setup: the invoice run only
takes months that have ended). Each test invoices months of 2022 of its own, before any other
test's services, and cancels its services afterwards so later runs do not bill them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timezone

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from models import LinkMember, LinkPeriod, Service, ServiceStatus
from models.database import create_session_factory
from tests.conftest import GraphQLClient
from tests.customers import AccountRef, Customer, new_customer, pk, register
from tests.test_credits import purchase
from tests.test_invoicing import add_service, backdate_charges, midnight, run
from tests.test_links import by_credentials, link, unlink

AddService = Callable[[AccountRef, str, date], Awaitable[None]]


@dataclass
class Family:
    """One owner's accounts: ``head`` heads the BILLING groups, the others join them."""

    owner: Customer
    head: AccountRef
    others: list[AccountRef]

    @property
    def accounts(self) -> list[AccountRef]:
        return [self.head, *self.others]


async def family(gql: GraphQLClient, others: int = 1) -> Family:
    owner = await new_customer(gql, "Payer Head Ltd")
    return Family(owner, owner.account, [await register(gql, owner.token, f"Payer Branch {n}")
                                         for n in range(others)])


@pytest.fixture
async def services(engine: AsyncEngine) -> AsyncIterator[AddService]:
    """Adds a 10.00 EUR service ``created`` on a day; cancels them all after the test."""
    added: list[int] = []

    async def add(account: AccountRef, name: str, created: date) -> None:
        await add_service(engine, pk(account.id), name, 1000, created)
        added.append(pk(account.id))

    yield add
    async with create_session_factory(engine)() as session:
        await session.execute(update(Service).where(Service.account_id.in_(added))
                              .values(status=ServiceStatus.CANCELLED))
        await session.commit()


async def link_billing(gql: GraphQLClient, owner: Customer, head: AccountRef, member: AccountRef) -> str:
    """Links ``member`` into ``head``'s BILLING group over HTTP; the group's global id."""
    result = await link(gql, owner.token, head.id, "BILLING", by_credentials(owner, member.number))
    payload = result["data"]["linkAccount"]
    assert payload["userErrors"] == [], result
    return str(payload["linkGroup"]["id"])


async def unlink_billing(gql: GraphQLClient, owner: Customer, group: str, member: AccountRef) -> None:
    result = await unlink(gql, owner.token, group, member.id)
    assert result["data"]["unlinkAccount"]["userErrors"] == [], result


async def backdate_link(
    engine: AsyncEngine, group: str, member: AccountRef, *,
    linked: datetime | None = None, unlinked: datetime | None = None,
) -> None:
    """Setup: moves the member's link (and its unlink) in ``group`` into the past."""
    in_group = (LinkPeriod.group_id == pk(group), LinkPeriod.account_id == pk(member.id))
    async with create_session_factory(engine)() as session:
        if linked is not None:
            await session.execute(update(LinkPeriod).where(*in_group).values(valid_from=linked))
            await session.execute(update(LinkMember).where(
                LinkMember.group_id == pk(group), LinkMember.account_id == pk(member.id),
            ).values(linked_at=linked))
        if unlinked is not None:
            await session.execute(update(LinkPeriod).where(*in_group, LinkPeriod.valid_to.is_not(None))
                                  .values(valid_to=unlinked))
        await session.commit()


@dataclass(frozen=True)
class Billed:
    """One invoice of the run: the source account and description of each line, and the
    global id of the BILLING group it names, if any."""

    lines: list[tuple[str, str]]
    group: str | None


async def invoice(gql: GraphQLClient, tokens: dict[str, str], period: str,
                  accounts: list[AccountRef]) -> dict[str, Billed]:
    """Runs ``period`` as finance staff: payer account number → its invoice, for ``accounts``."""
    result = await run(gql, tokens["finance"], period)
    assert "errors" not in result, result
    payload = result["data"]["runInvoicing"]
    assert payload["userErrors"] == [], payload
    numbers = {account.id: account.number for account in accounts}
    return {
        numbers[issued["account"]["id"]]: Billed(
            sorted((line["account"]["number"], line["description"]) for line in issued["lines"]),
            issued["linkGroup"] and issued["linkGroup"]["id"],
        )
        for issued in payload["invoices"] if issued["account"]["id"] in numbers
    }


def lines(billed: dict[str, Billed]) -> dict[str, list[tuple[str, str]]]:
    """The lines alone: an invoice names no group once the group is dissolved."""
    return {payer: issued.lines for payer, issued in billed.items()}


def fee(account: AccountRef, name: str, period: str) -> tuple[str, str]:
    return account.number, f"{name} ({period})"


def at(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=timezone.utc)


async def test_linking_now_moves_no_past_month_onto_the_new_head(
    gql: GraphQLClient, tokens: dict[str, str], services: AddService,
) -> None:
    """The reported bug: an account with a service from long ago, linked today; running a past
    month bills its fee to itself, not to the head it has only now joined."""
    accounts = await family(gql)
    head, (member,) = accounts.head, accounts.others
    await services(head, "Head hosting", date(2021, 6, 1))
    await services(member, "Branch email", date(2021, 6, 1))
    await link_billing(gql, accounts.owner, head, member)

    billed = await invoice(gql, tokens, "2022-01", accounts.accounts)
    assert billed == {
        head.number: Billed([fee(head, "Head hosting", "2022-01")], None),
        member.number: Billed([fee(member, "Branch email", "2022-01")], None),
    }


async def test_a_month_belongs_to_the_payer_when_it_began(
    gql: GraphQLClient, engine: AsyncEngine, tokens: dict[str, str], services: AddService,
) -> None:
    """Linked on 10 February, unlinked on 15 March: February is still the member's own (linking
    pays from the next full month), March is the head's (an unlink leaves the month it happened
    in with the old head), April is the member's own again."""
    accounts = await family(gql)
    head, (member,) = accounts.head, accounts.others
    await services(head, "Head hosting", date(2022, 1, 1))
    await services(member, "Branch email", date(2022, 1, 1))
    group = await link_billing(gql, accounts.owner, head, member)
    await unlink_billing(gql, accounts.owner, group, member)
    await backdate_link(engine, group, member, linked=at(2022, 2, 10, 9), unlinked=at(2022, 3, 15, 12))

    february = await invoice(gql, tokens, "2022-02", accounts.accounts)
    assert lines(february) == {head.number: [fee(head, "Head hosting", "2022-02")],
                               member.number: [fee(member, "Branch email", "2022-02")]}
    march = await invoice(gql, tokens, "2022-03", accounts.accounts)
    assert lines(march) == {head.number: sorted([fee(head, "Head hosting", "2022-03"),
                                                 fee(member, "Branch email", "2022-03")])}
    april = await invoice(gql, tokens, "2022-04", accounts.accounts)
    assert lines(april) == {head.number: [fee(head, "Head hosting", "2022-04")],
                            member.number: [fee(member, "Branch email", "2022-04")]}


async def test_a_link_at_the_first_instant_of_a_month_pays_that_month(
    gql: GraphQLClient, engine: AsyncEngine, tokens: dict[str, str], services: AddService,
) -> None:
    """00:00 UTC on the first day is the month's own start: a link made then pays the month."""
    accounts = await family(gql)
    head, (member,) = accounts.head, accounts.others
    await services(member, "Branch email", date(2021, 1, 1))
    group = await link_billing(gql, accounts.owner, head, member)
    await backdate_link(engine, group, member, linked=midnight(date(2022, 8, 1)))

    billed = await invoice(gql, tokens, "2022-08", accounts.accounts)
    assert billed == {head.number: Billed([fee(member, "Branch email", "2022-08")], group)}


async def test_relinking_to_another_head_moves_nothing_already_incurred(
    gql: GraphQLClient, engine: AsyncEngine, tokens: dict[str, str], services: AddService,
) -> None:
    """Under the first head since December 2021, then moved to a second head today: May (invoiced
    before the move), June (first invoiced after it) and a credit purchase made before the move
    all stay with the first head; the second pays none of them."""
    accounts = await family(gql, others=2)
    first, (member, second) = accounts.head, accounts.others
    await services(member, "Branch email", date(2021, 11, 1))
    group = await link_billing(gql, accounts.owner, first, member)
    await backdate_link(engine, group, member, linked=at(2021, 12, 1))

    may = await invoice(gql, tokens, "2022-05", accounts.accounts)
    assert may == {first.number: Billed([fee(member, "Branch email", "2022-05")], group)}
    bought = await purchase(gql, accounts.owner.token, member.id, 7)
    assert bought["data"]["purchaseCredits"]["userErrors"] == [], bought

    await unlink_billing(gql, accounts.owner, group, member)
    other_group = await link_billing(gql, accounts.owner, second, member)
    assert other_group != group

    assert await invoice(gql, tokens, "2022-05", accounts.accounts) == {}
    june = await invoice(gql, tokens, "2022-06", accounts.accounts)
    assert lines(june) == {first.number: [fee(member, "Branch email", "2022-06")]}
    await backdate_charges(engine, [pk(member.id)], "2022-07")  # the purchase: setup, see above
    july = await invoice(gql, tokens, "2022-07", accounts.accounts)
    assert lines(july) == {first.number: sorted([fee(member, "Branch email", "2022-07"),
                                                 (member.number, "7 prepaid credits")])}


async def test_credit_purchases_keep_the_payer_they_were_made_with(
    gql: GraphQLClient, engine: AsyncEngine, tokens: dict[str, str],
) -> None:
    """Bought while linked: the head's; unlinked, then bought again: the account's own. The
    invoice run after the unlink moves neither."""
    accounts = await family(gql)
    head, (member,) = accounts.head, accounts.others
    group = await link_billing(gql, accounts.owner, head, member)
    linked = await purchase(gql, accounts.owner.token, member.id, 10)
    assert linked["data"]["purchaseCredits"]["userErrors"] == [], linked
    await unlink_billing(gql, accounts.owner, group, member)
    alone = await purchase(gql, accounts.owner.token, member.id, 20)
    assert alone["data"]["purchaseCredits"]["userErrors"] == [], alone
    await backdate_charges(engine, [pk(member.id)], "2022-09")

    billed = await invoice(gql, tokens, "2022-09", accounts.accounts)
    assert lines(billed) == {head.number: [(member.number, "10 prepaid credits")],
                             member.number: [(member.number, "20 prepaid credits")]}
