"""Concurrent transfers through the real app (DESIGN §5 "Nothing lost").

On PostgreSQL, hundreds of transfers in both directions among a few accounts run at once over
HTTP: the total is conserved, no balance goes negative, every ledger sums to its balance, and
no request fails (no deadlock, no 500). SQLite serializes writers in the database; a smaller
run proves it queues them instead of failing with "database is locked".
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from linkgate.app import create_app
from linkgate.settings import Settings
from models import CreditLedgerEntry
from tests.billing_world import balance_and_ledger_sum, seeded_customer, scalar
from tests.conftest import TEST_SECRET, GraphQLClient, client_for
from tests.servers import LINKGATE, clean_environment, running_server
from tests.test_credits import TRANSFER

ON_POSTGRESQL = os.environ.get("LINKGATE_TEST_DATABASE_URL", "").startswith("postgresql")


async def _storm(clients: list[GraphQLClient], engine: AsyncEngine, *, accounts: int, transfers: int,
                 duplicated_keys: int) -> None:
    """``clients`` take turns: with two apps (two engines, two pools) they act as two replicas."""
    start = 500
    customer = await seeded_customer(engine, accounts=accounts, balances=[start] * accounts)
    rng = random.Random(4)
    jobs: list[dict[str, Any]] = []
    for index in range(transfers):
        source, target = rng.sample(range(accounts), 2)
        jobs.append({"fromAccountId": customer.gid(source), "toAccountId": customer.gid(target),
                     "credits": rng.randint(1, 120), "idempotencyKey": f"storm-{index}"})
    # The same keyed request sent twice at once: it must apply once.
    jobs += [dict(job) for job in jobs[:duplicated_keys]]
    rng.shuffle(jobs)

    async def send(index: int, job: dict[str, Any]) -> Any:
        client = clients[index % len(clients)]
        return await client.post(TRANSFER, {"input": job}, token=customer.token)

    responses = await asyncio.gather(*(send(index, job) for index, job in enumerate(jobs)))
    assert [r.status_code for r in responses if r.status_code != 200] == []
    payloads = [r.json() for r in responses]
    assert [p for p in payloads if "errors" in p] == []
    codes = {e["code"] for p in payloads for e in p["data"]["transferCredits"]["userErrors"]}
    assert codes <= {"INSUFFICIENT_CREDITS"}
    applied = {p["data"]["transferCredits"]["transferId"] for p in payloads
               if p["data"]["transferCredits"]["transferId"]}
    replayed = sum(1 for p in payloads if p["data"]["transferCredits"]["replayed"])
    assert applied and replayed <= duplicated_keys

    total = 0
    for account_id in customer.account_ids:
        balance, ledger = await balance_and_ledger_sum(engine, account_id)
        assert balance >= 0 and balance == ledger
        total += balance
    assert total == start * accounts
    entries = await scalar(engine, select(func.count()).select_from(CreditLedgerEntry).where(
        CreditLedgerEntry.account_id.in_(customer.account_ids), CreditLedgerEntry.transfer_id.is_not(None)))
    assert entries == 2 * len(applied)
    negative = await scalar(engine, select(func.count()).select_from(CreditLedgerEntry).where(
        CreditLedgerEntry.account_id.in_(customer.account_ids), CreditLedgerEntry.balance_after < 0))
    assert negative == 0


@pytest.mark.skipif(not ON_POSTGRESQL, reason="row locks and real concurrency: PostgreSQL only")
async def test_hundreds_of_concurrent_transfers_on_postgresql(
    gql: GraphQLClient, engine: AsyncEngine, settings: Settings
) -> None:
    # A second app with its own engine and pool: a second replica on the same database.
    replica = create_app(settings)
    try:
        async with client_for(replica) as http:
            await _storm([gql, GraphQLClient(http)], engine, accounts=4, transfers=400,
                         duplicated_keys=40)
    finally:
        await replica.state.engine.dispose()


async def test_concurrent_transfers_queue_on_every_database(gql: GraphQLClient, engine: AsyncEngine) -> None:
    """The smaller run, on SQLite too: writers queue behind BEGIN IMMEDIATE."""
    await _storm([gql], engine, accounts=3, transfers=60, duplicated_keys=10)


@pytest.fixture
def two_server_processes(database_url: str) -> Iterator[str]:
    """``linkgate serve --workers 2`` on this run's database: two processes, one PostgreSQL."""
    environment = clean_environment(LINKGATE_DATABASE_URL=database_url, LINKGATE_SECRET_KEY=TEST_SECRET)
    with running_server([*LINKGATE, "serve", "--workers", "2"], environment=environment) as server:
        yield server.base


@pytest.mark.skipif(not ON_POSTGRESQL, reason="several server processes on one database: PostgreSQL")
async def test_concurrent_transfers_through_two_server_processes(
    two_server_processes: str, engine: AsyncEngine
) -> None:
    """DESIGN §5: totals conserved under concurrent transfers from several server processes."""
    async with httpx.AsyncClient(base_url=two_server_processes, timeout=120) as http:
        await _storm([GraphQLClient(http)], engine, accounts=4, transfers=300, duplicated_keys=30)

