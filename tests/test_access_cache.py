"""Each process keeps a user's computed rights while the database's rights version stands
(``auth/access_cache.py``, ``models/rights.py``).

What must hold: a cached answer is never staler than the last committed change, whoever wrote
it (another replica, the CLI, an operator's SQL: here a separate connection writing rows the
way any of them would); writes that cannot change rights leave the cache warm; and the
triggers never make two rights-changing transactions deadlock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from auth.access_cache import AccessCache
from auth.permissions import ALL
from auth.policy import load_access
from auth.principals import Principal
from models.accounts import Account, Membership
from models.database import create_session_factory
from models.links import LinkGroup, LinkKind, LinkMember, LinkMethod
from models.rights import RightsVersion
from tests.conftest import GraphQLClient
from tests.customers import PERMISSIONS_ON, Customer, new_customer, new_sub_account, pk, register

async def rights_version(engine: AsyncEngine) -> int:
    async with create_session_factory(engine)() as session:
        return int(await session.scalar(select(RightsVersion.version)) or 0)


async def uncached_permissions(engine: AsyncEngine, user_id: int, account_id: int) -> set[str] | None:
    """What ``load_access`` says in a fresh session: the answer the cache must agree with."""
    async with create_session_factory(engine)() as session:
        access = await load_access(session, Principal(user_id=user_id))
    if not access.can_see(account_id):
        return None
    return {permission.value for permission in access.permissions_on(account_id)}


async def write(engine: AsyncEngine, change: Callable[[AsyncSession], Awaitable[Any]]) -> None:
    """One committed transaction on a connection of its own, as another replica's would be."""
    async with create_session_factory(engine)() as session:
        await change(session)
        await session.commit()


@dataclass
class World:
    """An owner with accounts ``head`` and ``other``; ``sub`` holds CREDITS_READ and
    INVOICES_READ on ``head`` only."""

    owner: Customer
    other_number: str
    other_id: int
    head_id: int
    sub_token: str
    sub_id: int


@pytest.fixture
async def world(gql: GraphQLClient) -> World:
    owner = await new_customer(gql, "Cache Head")
    other = await register(gql, owner.token, "Cache Other")
    sub = await new_sub_account(gql, owner.token, owner.account.id, ["CREDITS_READ", "INVOICES_READ"])
    return World(owner, other.number, pk(other.id), pk(owner.account.id), sub.token, pk(sub.user_id))


async def seen_over_http(gql: GraphQLClient, token: str, number: str) -> set[str] | None:
    result = await gql.execute(PERMISSIONS_ON, {"n": number}, token=token)
    assert "errors" not in result, result
    account = result["data"]["viewer"]["account"]
    return None if account is None else set(account["viewerPermissions"])


def cache_of(gql: GraphQLClient) -> AccessCache:
    return gql.http._transport.app.state.access_cache  # type: ignore[attr-defined]


async def test_a_users_rights_are_read_once_then_reused(
    gql: GraphQLClient, world: World, count_statements: Any
) -> None:
    number = world.owner.account.number
    assert await seen_over_http(gql, world.sub_token, number) == {"CREDITS_READ", "INVOICES_READ"}
    cache = cache_of(gql)
    hits = cache.hits
    with count_statements() as counter:
        assert await seen_over_http(gql, world.sub_token, number) == {"CREDITS_READ", "INVOICES_READ"}
    assert cache.hits == hits + 1
    # The caller with the rights version, and the account: nothing else.
    assert counter.count == 2, [statement for statement, _ in counter.statements]


CHANGES: dict[str, tuple[Callable[[World], Callable[[AsyncSession], Awaitable[Any]]], str, set[str] | None]] = {}


def change(name: str, where: str, expected: set[str] | None) -> Callable[..., Any]:
    """Registers a write made outside the server, which account to look at afterwards
    ("head" or "other") and the sub-account's rights there once it committed."""
    def register_change(build: Callable[[World], Callable[[AsyncSession], Awaitable[Any]]]) -> Any:
        CHANGES[name] = (build, where, expected)
        return build
    return register_change


@change("membership narrowed", "head", {"INVOICES_READ"})
def _membership_narrowed(world: World) -> Callable[[AsyncSession], Awaitable[Any]]:
    async def run(session: AsyncSession) -> None:
        await session.execute(update(Membership).where(Membership.user_id == world.sub_id)
                              .values(permissions=["INVOICES_READ"]))
    return run


@change("membership removed", "head", None)
def _membership_removed(world: World) -> Callable[[AsyncSession], Awaitable[Any]]:
    async def run(session: AsyncSession) -> None:
        await session.execute(delete(Membership).where(Membership.user_id == world.sub_id))
    return run


@change("membership added", "other", {"TICKETS_READ"})
def _membership_added(world: World) -> Callable[[AsyncSession], Awaitable[Any]]:
    async def run(session: AsyncSession) -> None:
        session.add(Membership(user_id=world.sub_id, account_id=world.other_id, permissions=["TICKETS_READ"]))
    return run


@change("ownership moved", "other", {permission.value for permission in ALL})
def _ownership_moved(world: World) -> Callable[[AsyncSession], Awaitable[Any]]:
    async def run(session: AsyncSession) -> None:
        await session.execute(update(Account).where(Account.id == world.other_id).values(owner_id=world.sub_id))
    return run


@change("linked for billing", "other", {"CREDITS_READ", "INVOICES_READ"})
def _linked(world: World) -> Callable[[AsyncSession], Awaitable[Any]]:
    async def run(session: AsyncSession) -> None:
        await _link(session, world)
    return run


async def _link(session: AsyncSession, world: World) -> LinkGroup:
    group = LinkGroup(kind=LinkKind.BILLING)
    session.add(group)
    await session.flush()
    for account_id, is_head in ((world.head_id, True), (world.other_id, False)):
        session.add(LinkMember(group_id=group.id, kind=LinkKind.BILLING, account_id=account_id,
                               is_head=is_head, linked_via=LinkMethod.SAME_OWNER))
    return group


@pytest.mark.parametrize("name", list(CHANGES))
async def test_a_change_written_elsewhere_is_honoured_by_the_next_request(
    gql: GraphQLClient, engine: AsyncEngine, world: World, name: str
) -> None:
    build, where, expected = CHANGES[name]
    number = world.owner.account.number if where == "head" else world.other_number
    account_id = world.head_id if where == "head" else world.other_id
    before = await seen_over_http(gql, world.sub_token, number)
    await seen_over_http(gql, world.sub_token, number)  # now certainly cached
    assert before != expected
    await write(engine, build(world))
    assert await seen_over_http(gql, world.sub_token, number) == expected
    assert expected == await uncached_permissions(engine, world.sub_id, account_id)


@pytest.mark.parametrize("undo", ["member unlinked", "group dissolved"])
async def test_unlinking_is_honoured_by_the_next_request(
    gql: GraphQLClient, engine: AsyncEngine, world: World, undo: str
) -> None:
    groups: list[LinkGroup] = []

    async def link(session: AsyncSession) -> None:
        groups.append(await _link(session, world))

    await write(engine, link)
    assert await seen_over_http(gql, world.sub_token, world.other_number) == {"CREDITS_READ", "INVOICES_READ"}
    assert await seen_over_http(gql, world.sub_token, world.other_number) == {"CREDITS_READ", "INVOICES_READ"}

    async def unlink(session: AsyncSession) -> None:
        if undo == "member unlinked":
            await session.execute(delete(LinkMember).where(LinkMember.account_id == world.other_id))
        else:  # the members go with the group (ON DELETE CASCADE), and the triggers see them go
            await session.execute(delete(LinkGroup).where(LinkGroup.id == groups[0].id))

    await write(engine, unlink)
    assert await seen_over_http(gql, world.sub_token, world.other_number) is None


async def test_writes_that_cannot_change_rights_leave_the_version_alone(
    engine: AsyncEngine, world: World
) -> None:
    before = await rights_version(engine)

    async def harmless(session: AsyncSession) -> None:
        await session.execute(update(Account).where(Account.id == world.head_id)
                              .values(name="Renamed", credit_balance=Account.credit_balance + 5))

    await write(engine, harmless)
    assert await rights_version(engine) == before


async def test_a_rolled_back_change_leaves_the_version_alone(engine: AsyncEngine, world: World) -> None:
    before = await rights_version(engine)
    async with create_session_factory(engine)() as session:
        await session.execute(delete(Membership).where(Membership.user_id == world.sub_id))
        await session.rollback()
    assert await rights_version(engine) == before
    await write(engine, _membership_removed(world))
    assert await rights_version(engine) > before


async def test_the_cache_is_bounded_and_can_be_turned_off(engine: AsyncEngine, world: World) -> None:
    version = await rights_version(engine)
    principals = [Principal(user_id=user_id, rights_version=version)
                  for user_id in (world.sub_id, pk(world.owner.user_id))]
    bounded, off = AccessCache(max_users=1), AccessCache(max_users=0)
    async with create_session_factory(engine)() as session:
        for principal in principals + principals:
            for cache in (bounded, off):
                assert await cache.load(session, principal) == await load_access(session, principal)
    assert len(bounded) == 1 and bounded.hits == 0 and bounded.misses == 4
    assert len(off) == 0 and off.hits == 0


async def test_a_cached_map_cannot_be_changed_by_the_request_that_holds_it(
    engine: AsyncEngine, world: World
) -> None:
    cache = AccessCache()
    principal = Principal(user_id=world.sub_id, rights_version=await rights_version(engine))
    async with create_session_factory(engine)() as session:
        access = await cache.load(session, principal)
    with pytest.raises(TypeError):
        access.by_account[world.other_id] = access.by_account[world.head_id]  # type: ignore[index]


async def test_the_metrics_count_hits_and_misses(gql: GraphQLClient, world: World) -> None:
    await seen_over_http(gql, world.sub_token, world.owner.account.number)
    text = (await gql.http.get("/metrics")).text
    for name in ("linkgate_access_cache_hits_total", "linkgate_access_cache_misses_total",
                 "linkgate_access_cache_users"):
        assert any(line.startswith(name + " ") for line in text.splitlines()), name


async def test_rights_changes_never_deadlock_on_the_counter(engine: AsyncEngine, gql: GraphQLClient) -> None:
    """Two transactions each change rights, then wait for a row the other holds: with
    triggers that took the counter's lock at once, each would wait on the other. Deferred to
    commit, the first to commit goes through and the second follows."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one writer at a time")
    owners = [await new_customer(gql, f"Deadlock {n}") for n in range(2)]
    subs = [await new_sub_account(gql, owner.token, owner.account.id, ["TICKETS_READ"]) for owner in owners]
    accounts = [pk(owner.account.id) for owner in owners]
    before = await rights_version(engine)
    both_changed = asyncio.Barrier(2)

    async def change_then_touch(mine: int, theirs: int, sub_id: int) -> None:
        async with create_session_factory(engine)() as session:
            await session.execute(select(Account.id).where(Account.id == mine).with_for_update())
            await session.execute(update(Membership).where(Membership.user_id == sub_id)
                                  .values(permissions=["TICKETS_READ", "SERVICES_READ"]))
            await both_changed.wait()
            if mine == accounts[0]:
                await session.commit()  # releases its account row; the other then gets it
                return
            await session.execute(select(Account.id).where(Account.id == theirs).with_for_update())
            await session.commit()

    try:
        await asyncio.wait_for(asyncio.gather(
            change_then_touch(accounts[0], accounts[1], pk(subs[0].user_id)),
            change_then_touch(accounts[1], accounts[0], pk(subs[1].user_id)),
        ), timeout=30)
    except DBAPIError as error:  # pragma: no cover - the failure this test exists for
        pytest.fail(f"a rights change failed: {error}")
    assert await rights_version(engine) > before
    async with create_session_factory(engine)() as session:
        changed = (await session.scalars(select(Membership.permissions).where(
            Membership.user_id.in_([pk(sub.user_id) for sub in subs])))).all()
    assert [sorted(permissions) for permissions in changed] == [["SERVICES_READ", "TICKETS_READ"]] * 2


# --------------------------------------------------------------------------- the counter itself
# (findings of the attacker review: each write below once left a cached right honoured, or
# made a bulk change take minutes to commit)


async def _in_rolled_back_transaction(engine: AsyncEngine, steps: list[str]) -> list[int]:
    """Runs ``steps`` in one transaction that is rolled back at the end (so the shared
    database keeps its rows); the version after each step. On PostgreSQL the deferred row
    triggers fire where a step says ``SET CONSTRAINTS ALL IMMEDIATE``."""
    versions: list[int] = []
    async with engine.connect() as connection:
        transaction = await connection.begin()
        try:
            for step in steps:
                await connection.exec_driver_sql(step)
                versions.append(int((await connection.exec_driver_sql(
                    "SELECT version FROM rights_version WHERE id = 1")).scalar_one()))
        finally:
            await transaction.rollback()
    return versions


async def _sub_account_membership(engine: AsyncEngine, world: World) -> int:
    async with create_session_factory(engine)() as session:
        return int(await session.scalar(select(Membership.id).where(Membership.user_id == world.sub_id)))


async def test_a_transaction_moves_the_version_once_however_many_rows_it_writes(
    engine: AsyncEngine, world: World
) -> None:
    """Every row used to update the counter again: 50,000 memberships took 14 s to commit,
    blocking every other rights change meanwhile."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite's triggers are per row, and its writes linear")
    far = 2**62  # above the clock, so each bump shows as +1
    membership = await _sub_account_membership(engine, world)
    versions = await _in_rolled_back_transaction(engine, [
        f"UPDATE rights_version SET version = {far}",
        *(f"UPDATE memberships SET permissions = '[\"TICKETS_READ\"]' WHERE id = {membership}"
          for _ in range(5)),
        f"DELETE FROM memberships WHERE id = {membership}",
        "SET CONSTRAINTS ALL IMMEDIATE",
    ])
    assert versions[0] == far and versions[-1] == far + 1, versions


@pytest.mark.parametrize("write", ["truncate", "replica"])
async def test_writes_that_skip_row_triggers_still_move_the_version(
    engine: AsyncEngine, world: World, write: str
) -> None:
    """TRUNCATE fires no row trigger; ``session_replication_role = replica`` (logical
    replication, some restores) skips triggers that are not ENABLE ALWAYS."""
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's TRUNCATE and replication roles")
    membership = await _sub_account_membership(engine, world)
    steps = ["SELECT 1"]
    if write == "truncate":
        steps.append("TRUNCATE memberships")
    else:
        steps += ["SET LOCAL session_replication_role = replica",
                  f"DELETE FROM memberships WHERE id = {membership}", "SET CONSTRAINTS ALL IMMEDIATE"]
    versions = await _in_rolled_back_transaction(engine, steps)
    assert versions[-1] > versions[0], versions


async def test_the_version_never_comes_back_to_a_value_it_had(engine: AsyncEngine, world: World) -> None:
    """A restored backup or a re-created counter row must not bring an old value back: an
    entry cached under it would match again (the review reset it to 0 by a migration round
    trip, then one change made it 1 — a value a process had cached rights under)."""
    membership = await _sub_account_membership(engine, world)
    immediate = ["SET CONSTRAINTS ALL IMMEDIATE"] if engine.dialect.name == "postgresql" else []
    versions = await _in_rolled_back_transaction(engine, [
        "UPDATE rights_version SET version = 0",
        f"DELETE FROM memberships WHERE id = {membership}", *immediate,
    ])
    clock_micros = int(time.time() * 1_000_000)
    assert versions[0] == 0
    assert abs(versions[-1] - clock_micros) < 60_000_000, versions  # the clock, not 1


async def test_rights_read_while_the_version_moved_are_not_kept(engine: AsyncEngine, world: World) -> None:
    """A request that read version V computes its rights a moment later; a change committed
    in between is in what it computed, so that map must not be kept under V (another request
    of the same user could reuse it after the change was undone)."""
    cache = AccessCache()
    current = await rights_version(engine)
    stale = Principal(user_id=world.sub_id, rights_version=current - 1)
    async with create_session_factory(engine)() as session:
        assert await cache.load(session, stale) == await load_access(session, stale)
        assert len(cache) == 0
        fresh = Principal(user_id=world.sub_id, rights_version=current)
        await cache.load(session, fresh)
        assert len(cache) == 1


async def test_a_database_without_its_triggers_turns_the_cache_off(
    empty_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The server checks at start that the triggers are there and enabled; a restore without
    them, or a later migration that rebuilt a table (SQLite's batch mode drops its triggers),
    must cost speed, never freshness."""
    from linkgate.app import create_app
    from linkgate.migrations import upgrade_database
    from linkgate.settings import Settings
    from models.database import create_engine
    from models.rights import trigger_names
    from tests.conftest import TEST_SECRET

    await asyncio.to_thread(upgrade_database, empty_database)
    engine = create_engine(empty_database)
    try:
        settings = Settings(database_url=empty_database, secret_key=TEST_SECRET)
        whole = create_app(settings, engine=engine)
        async with whole.router.lifespan_context(whole):
            assert whole.state.access_cache.max_users > 0
        dialect = engine.dialect.name
        name, table = next(iter(trigger_names(dialect).items()))
        async with engine.begin() as connection:
            await connection.exec_driver_sql(
                f"DROP TRIGGER {name} ON {table}" if dialect == "postgresql" else f"DROP TRIGGER {name}")
        broken = create_app(settings, engine=engine)
        with caplog.at_level("WARNING"):
            async with broken.router.lifespan_context(broken):
                assert broken.state.access_cache.max_users == 0
        assert any(name in record.getMessage() for record in caplog.records), caplog.text
    finally:
        await engine.dispose()
