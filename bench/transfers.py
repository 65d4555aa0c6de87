"""Credit transfer throughput through the real app: transfers/s, serial and concurrent.

    .venv/bin/python -m bench.transfers                       # temporary SQLite
    .venv/bin/python -m bench.transfers --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
    .venv/bin/python -m bench.transfers --transfers 1000 --concurrency 64 --accounts 8

One run: a fresh database (a temporary SQLite file, or a new database on the given PostgreSQL
server, dropped afterwards), migrated; one owner with ``--accounts`` accounts holding credits;
then ``transferCredits`` mutations posted over HTTP (httpx ASGI transport, the whole request:
token, permissions, row locks, ledger, audit, commit) between random pairs of those accounts,
first one at a time, then ``--concurrency`` at once (``asyncio.gather`` with a semaphore), each
with its own idempotency key. Afterwards it checks that the total was conserved and every
ledger sums to its balance, and exits 1 if not (or if any request failed).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import func, select

from bench.dataset import asgi_client, bench_token, temporary_database
from linkgate.app import create_app
from linkgate.migrations import upgrade_database
from linkgate.settings import Settings
from models import Account, CreditLedgerEntry, LedgerEntryKind, User
from models.database import create_engine, create_session_factory
from schema.relay import encode_global_id

TRANSFER = """
mutation($input: TransferCreditsInput!) {
  transferCredits(input: $input) { transferId userErrors { code } }
}"""

OPENING_BALANCE = 1_000_000


@dataclass(frozen=True)
class Options:
    transfers: int
    concurrency: int
    accounts: int
    database_url: str | None


@dataclass
class Phase:
    name: str
    seconds: float
    latencies: list[float]
    applied: int
    refused: int

    def line(self) -> str:
        rate = len(self.latencies) / self.seconds if self.seconds else 0.0
        p50 = statistics.median(self.latencies) * 1000
        p95 = sorted(self.latencies)[int(len(self.latencies) * 0.95) - 1] * 1000
        return (f"{self.name:<22} {len(self.latencies):6d} transfers in {self.seconds:7.2f} s  "
                f"{rate:8.1f} transfers/s   p50 {p50:7.1f} ms   p95 {p95:7.1f} ms   "
                f"applied {self.applied}, refused {self.refused}")


async def _seed(url: str, accounts: int) -> tuple[int, list[int]]:
    engine = create_engine(url)
    try:
        async with create_session_factory(engine)() as session:
            owner = User(email=f"bench-{uuid.uuid4().hex[:8]}@bench.example", name="Bench owner",
                         password_hash="not-a-hash", token_version=1)
            session.add(owner)
            await session.flush()
            rows = [Account(number=f"ACC-T{index:06d}", name=f"Transfers {index}", owner_id=owner.id,
                            enrollment_token_hash="not-a-hash", credit_balance=OPENING_BALANCE)
                    for index in range(accounts)]
            session.add_all(rows)
            await session.flush()
            session.add_all(CreditLedgerEntry(account_id=row.id, kind=LedgerEntryKind.PURCHASE,
                                              delta=OPENING_BALANCE, balance_after=OPENING_BALANCE)
                            for row in rows)
            await session.commit()
            return owner.id, [row.id for row in rows]
    finally:
        await engine.dispose()


async def _one(http: httpx.AsyncClient, token: str, job: dict[str, Any]) -> tuple[float, bool]:
    started = time.perf_counter()
    response = await http.post("/graphql", json={"query": TRANSFER, "variables": {"input": job}},
                               headers={"authorization": f"Bearer {token}"})
    elapsed = time.perf_counter() - started
    body = response.json()
    if response.status_code != 200 or "errors" in body:
        raise SystemExit(f"a transfer failed: HTTP {response.status_code} {body}")
    return elapsed, bool(body["data"]["transferCredits"]["transferId"])


def _jobs(ids: list[int], count: int, tag: str, rng: random.Random) -> list[dict[str, Any]]:
    jobs = []
    for index in range(count):
        source, target = rng.sample(ids, 2)
        jobs.append({"fromAccountId": encode_global_id("Account", source),
                     "toAccountId": encode_global_id("Account", target),
                     "credits": rng.randint(1, 100), "idempotencyKey": f"{tag}-{index}"})
    return jobs


async def _phase(name: str, http: httpx.AsyncClient, token: str, jobs: list[dict[str, Any]],
                 concurrency: int) -> Phase:
    gate = asyncio.Semaphore(concurrency)

    async def limited(job: dict[str, Any]) -> tuple[float, bool]:
        async with gate:
            return await _one(http, token, job)

    started = time.perf_counter()
    if concurrency == 1:
        results = [await _one(http, token, job) for job in jobs]
    else:
        results = list(await asyncio.gather(*(limited(job) for job in jobs)))
    seconds = time.perf_counter() - started
    applied = sum(1 for _, ok in results if ok)
    return Phase(name, seconds, [latency for latency, _ in results], applied, len(results) - applied)


async def _check(url: str, ids: list[int]) -> str | None:
    engine = create_engine(url)
    try:
        async with create_session_factory(engine)() as session:
            balances = dict((await session.execute(
                select(Account.id, Account.credit_balance).where(Account.id.in_(ids)))).all())
            sums = dict((await session.execute(
                select(CreditLedgerEntry.account_id, func.sum(CreditLedgerEntry.delta))
                .where(CreditLedgerEntry.account_id.in_(ids)).group_by(CreditLedgerEntry.account_id)
            )).all())
    finally:
        await engine.dispose()
    if sum(balances.values()) != OPENING_BALANCE * len(ids):
        return f"total not conserved: {sum(balances.values())}"
    if any(balances[pk] != sums[pk] or balances[pk] < 0 for pk in ids):
        return "a ledger does not sum to its balance"
    return None


async def run(url: str, options: Options) -> int:
    owner_id, ids = await _seed(url, options.accounts)
    secret = secrets.token_urlsafe(48)
    settings = Settings(database_url=url, secret_key=secret)
    rng = random.Random(7)
    engine = create_engine(url)
    token = await bench_token(engine, secret, owner_id)
    app = create_app(settings, engine=engine)
    try:
        async with asgi_client(app) as http:
            await _phase("warm-up", http, token, _jobs(ids, 20, "warm", rng), 1)
            serial = await _phase("serial", http, token, _jobs(ids, options.transfers, "s", rng), 1)
            concurrent = await _phase(f"concurrent ({options.concurrency} at once)", http, token,
                                      _jobs(ids, options.transfers, "c", rng), options.concurrency)
    finally:
        await engine.dispose()
    database = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    print(f"transferCredits over HTTP (ASGI, in-process), {database}, {options.accounts} accounts")
    print(serial.line())
    print(concurrent.line())
    problem = await _check(url, ids)
    print("invariants: " + (problem or "total conserved, every ledger sums to its balance"))
    return 1 if problem else 0


def parse(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.transfers",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--transfers", type=int, default=300, help="transfers per phase")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight at once")
    parser.add_argument("--accounts", type=int, default=8, help="accounts the transfers move between")
    parser.add_argument("--database-url", help="a PostgreSQL server (postgresql+asyncpg://…): a new "
                        "database is created on it and dropped afterwards; default: temporary SQLite")
    args = parser.parse_args(argv)
    if args.transfers < 20 or args.concurrency < 2 or args.accounts < 2:
        parser.error("--transfers ≥ 20, --concurrency ≥ 2, --accounts ≥ 2")
    return Options(args.transfers, args.concurrency, args.accounts, args.database_url)


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    with temporary_database(options.database_url) as url:
        upgrade_database(url)
        return asyncio.run(run(url, options))


if __name__ == "__main__":
    sys.exit(main())
