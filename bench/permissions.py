"""What permission checks cost on a large dashboard query: checks on vs checks off (DESIGN §5).

    .venv/bin/python -m bench.permissions [--accounts 50 --invoices 20 --repeat 40]
    .venv/bin/python -m bench.permissions --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres

One run: a fresh database (a temporary SQLite file, or a new database on the given PostgreSQL
server, dropped afterwards), migrated and seeded with one owner's large dashboard; then two
apps on the same engine, ``create_app(..., enforce_permissions=True)`` and ``False``, answer
the same query in alternating requests, so both modes see the same machine, caches and data
and the ratio is measured side by side. The bar is on/off < 1.10 for the owner, who holds
every permission (so every check runs and passes, and both modes return the same response).
The off switch is ``create_app``'s argument, never a setting: no deployment can turn it off.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import pstats
import secrets
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.dataset import (
    DASHBOARD, MAX_QUERY_COST, DashboardShape, asgi_client, bench_token, python_calls, seed,
    temporary_database,
)
from linkgate.app import create_app
from linkgate.migrations import upgrade_database
from linkgate.settings import Settings
from models.database import StatementCounter, create_engine

TARGET_RATIO = 1.10


@dataclass(frozen=True)
class Options:
    accounts: int
    invoices: int
    tickets: int
    repeat: int
    warmup: int
    database_url: str | None
    profile: str | None

    def shape(self) -> DashboardShape:
        return DashboardShape(accounts=self.accounts, invoices=self.invoices, tickets=self.tickets)


@dataclass
class Timings:
    """Request latencies of one mode, in seconds: wall clock, and this process's CPU time
    (which neighbours on a shared machine do not inflate)."""

    samples: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def mean(self) -> float:
        return statistics.fmean(self.samples)

    def cpu_mean(self) -> float:
        return statistics.fmean(self.cpu)

    def p50(self) -> float:
        return statistics.median(self.samples)

    def p95(self) -> float:
        return statistics.quantiles(self.samples, n=20, method="inclusive")[-1]


# --------------------------------------------------------------------------- measuring


@dataclass
class Client:
    """One app, one persona: posts the dashboard query."""

    http: httpx.AsyncClient
    token: str

    async def _post(self, first: int) -> httpx.Response:
        response = await self.http.post(
            "/graphql", json={"query": DASHBOARD, "variables": {"first": first}},
            headers={"authorization": f"Bearer {self.token}"},
        )
        response.raise_for_status()
        return response

    async def dashboard(self, first: int) -> dict[str, Any]:
        return (await self._post(first)).json()

    async def timed(self, first: int, timings: Timings | None = None) -> None:
        """One request, its wall and CPU time appended to ``timings`` (the whole HTTP round
        trip through the ASGI app: context, checks, SQL, execution, JSON)."""
        cpu, started = time.process_time(), time.perf_counter()
        await self._post(first)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        if timings is not None:
            timings.samples.append(elapsed)
            timings.cpu.append(cpu)


def _errors_by_code(result: dict[str, Any]) -> dict[str, int]:
    codes: dict[str, int] = {}
    for error in result.get("errors") or []:
        code = error.get("extensions", {}).get("code", "?")
        codes[code] = codes.get(code, 0) + 1
    return codes


def _objects(value: Any) -> int:
    """Objects in a response: a rough size of the work GraphQL did."""
    if isinstance(value, dict):
        return 1 + sum(_objects(item) for item in value.values())
    if isinstance(value, list):
        return sum(_objects(item) for item in value)
    return 0


async def _statements(engine: AsyncEngine, client: Client, first: int) -> int:
    with StatementCounter(engine) as counter:
        await client.dashboard(first)
    return counter.count


async def _interleaved(on: Client, off: Client, first: int, repeat: int) -> tuple[Timings, Timings]:
    """``repeat`` pairs, alternating which mode goes first so neither gets a systematic edge."""
    timings = {True: Timings(), False: Timings()}
    gc.collect()
    for pair in range(repeat):
        order = (True, False) if pair % 2 == 0 else (False, True)
        for mode in order:
            await (on if mode else off).timed(first, timings[mode])
    return timings[True], timings[False]


def _paired_ratio(on: Timings, off: Timings) -> float:
    """Median of the per-pair ratios: robust to the drift and outliers of a shared machine."""
    return statistics.median(a / b for a, b in zip(on.samples, off.samples))


async def _profile(client: Client, first: int, requests: int) -> str:
    """cProfile of a few requests, by own time (cumulative time is muddled by coroutines)."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(requests):
        await client.dashboard(first)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(40)
    return out.getvalue()


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f}"


async def run(url: str, options: Options) -> int:
    engine = create_engine(url)
    try:
        seeded = await seed(engine, options.shape())
        seed_seconds = seeded.seconds

        secret = secrets.token_urlsafe(48)
        settings = Settings(database_url=url, secret_key=secret, max_query_cost=MAX_QUERY_COST)
        apps = {
            mode: create_app(settings, engine=engine, enforce_permissions=mode)
            for mode in (True, False)
        }
        async with asgi_client(apps[True]) as on_http, asgi_client(apps[False]) as off_http:
            return await _report(engine, options, seed_seconds, on_http, off_http, {
                "owner": await bench_token(engine, secret, seeded.owner_id),
                "sub-account": await bench_token(engine, secret, seeded.sub_account_id),
            })
    finally:
        await engine.dispose()


async def _report(
    engine: AsyncEngine, options: Options, seed_seconds: float,
    on_http: httpx.AsyncClient, off_http: httpx.AsyncClient, tokens: dict[str, str],
) -> int:
    """Measures each persona and prints the figures; 1 when the owner's ratio misses the bar."""
    first = min(options.accounts, 100)
    print(f"database   {engine.dialect.name} (seeded in {seed_seconds:.1f} s)")
    shape = options.shape()
    print(f"dashboard  {shape.accounts} accounts x ({shape.invoices} invoices, "
          f"{shape.tickets} tickets, {shape.services} services, "
          f"{shape.ledger} ledger entries, {shape.contacts} contacts); "
          f"query: accounts(first: {first})")
    print()

    failed = False
    for persona, token in tokens.items():
        # The owner is the bar (every check runs and passes); the sub-account shows denials,
        # where "on" does less work than "off", so a few pairs are enough to see it.
        pairs = options.repeat if persona == "owner" else max(2, options.repeat // 5)
        on, off = Client(on_http, token), Client(off_http, token)
        checked, unchecked = await on.dashboard(first), await off.dashboard(first)
        if persona == "owner" and checked != unchecked:
            # The owner holds every permission: the checks must not change a thing.
            raise SystemExit("owner: the responses with checks on and off differ")
        statements_on = await _statements(engine, on, first)
        statements_off = await _statements(engine, off, first)
        calls_on = await python_calls(lambda: on.dashboard(first))
        calls_off = await python_calls(lambda: off.dashboard(first))

        for _ in range(options.warmup):
            await on.timed(first)
            await off.timed(first)
        if options.profile:
            print(await _profile(on if options.profile == "on" else off, first, 20))
        timings_on, timings_off = await _interleaved(on, off, first, pairs)

        ratio = timings_on.mean() / timings_off.mean()
        verdict = "OK" if ratio < TARGET_RATIO else "OVER TARGET"
        failed |= persona == "owner" and ratio >= TARGET_RATIO
        print(f"persona {persona}: response {len(json.dumps(checked)) / 1024:.0f} KiB, "
              f"{_objects(checked.get('data'))} objects, "
              f"errors {_errors_by_code(checked) or 'none'}; "
              f"{options.warmup} warm-up + {pairs} measured pairs, on/off alternating")
        print("  mode        requests   mean ms    p50 ms    p95 ms  CPU ms  SQL/request")
        for label, timings, count in (("checks on ", timings_on, statements_on),
                                      ("checks off", timings_off, statements_off)):
            print(f"  {label}  {len(timings.samples):8d}  {_ms(timings.mean())}  "
                  f"{_ms(timings.p50())}  {_ms(timings.p95())}{_ms(timings.cpu_mean())}"
                  f"  {count:11d}")
        print(f"  ratio on/off: {ratio:.3f} (target < {TARGET_RATIO:.2f}: {verdict}); "
              f"p50 {timings_on.p50() / timings_off.p50():.3f}, "
              f"median of pairs {_paired_ratio(timings_on, timings_off):.3f}, "
              f"CPU {timings_on.cpu_mean() / timings_off.cpu_mean():.3f}")
        print(f"  Python function calls per request: on {calls_on:,}, off {calls_off:,} "
              f"(ratio {calls_on / calls_off:.4f}: work, which machine load does not move)")
        print()

    # The number of statements should not grow with the page (DESIGN §5, "N+1 free").
    owner = Client(on_http, tokens["owner"])
    sizes = sorted({min(5, first), first})
    counts = [f"accounts(first: {size}) -> {await _statements(engine, owner, size)}" for size in sizes]
    print(f"SQL statements per request (owner, checks on): {', '.join(counts)}")
    return 1 if failed else 0


# --------------------------------------------------------------------------- command line


def parse(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.permissions", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--accounts", type=int, default=50, help="accounts on the dashboard (≤ 100 shown)")
    parser.add_argument("--invoices", type=int, default=20, help="invoices per account (10 shown)")
    parser.add_argument("--tickets", type=int, default=12, help="tickets per account (10 shown)")
    parser.add_argument("--repeat", type=int, default=40,
                        help="measured on/off pairs for the owner (the sub-account gets a fifth)")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured on/off pairs first")
    parser.add_argument("--database-url", help="a PostgreSQL server (postgresql+asyncpg://…): a new "
                        "database is created on it and dropped afterwards; default: temporary SQLite")
    parser.add_argument("--profile", choices=["on", "off"], help="also print a cProfile of 20 requests")
    args = parser.parse_args(argv)
    if args.accounts < 1 or args.invoices < 0 or args.tickets < 0 or args.repeat < 2:
        parser.error("--accounts ≥ 1, --invoices ≥ 0, --tickets ≥ 0, --repeat ≥ 2")
    return Options(
        accounts=args.accounts, invoices=args.invoices, tickets=args.tickets,
        repeat=args.repeat, warmup=args.warmup, database_url=args.database_url,
        profile=args.profile,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    started = time.perf_counter()
    with temporary_database(options.database_url) as url:
        upgrade_database(url)
        status = asyncio.run(run(url, options))
    print(f"total run time {time.perf_counter() - started:.0f} s "
          f"(Python {sys.version.split()[0]})")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
