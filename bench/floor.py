"""The gateway against its floor, in one process: a quick figure while working on speed.

    .venv/bin/python -m bench.floor [--query dashboard|header] [--requests 30]
        [--database-url postgresql+asyncpg://…]

``bench.gateway`` is the benchmark of record (real uvicorn servers, concurrent clients, large
data); it takes five minutes. This one takes about thirty seconds: it seeds one owner's
dashboard into a fresh database, starts the gateway and the hand-written endpoint
(``bench/handwritten.py``) in this process with their lifespans (so the garbage-collector
settings of a served app apply), checks that both answer the same JSON, then alternates
dashboard requests between the two through ``httpx.ASGITransport`` and prints, per side, the
CPU time per request (this process: SQL driver, GraphQL, JSON), the time the garbage
collector took, and the gateway's Python function calls per request — a count of work that the
load of a shared machine does not move.

``--query header`` does the same for the small account header (issue 17's fixed cost per
request) against the floor's hand-written header (``bench.peer.create_floor_app``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx

from bench.dataset import (
    ACCOUNT_HEADER, DASHBOARD, MAX_QUERY_COST, DashboardShape, asgi_client, bench_token, python_calls, seed,
    temporary_database,
)
from bench.peer import create_floor_app
from linkgate.app import create_app
from linkgate.migrations import upgrade_database
from linkgate.settings import Settings
from models.database import create_engine

Request = Callable[[], Awaitable[httpx.Response]]


class CollectorClock:
    """Time spent in garbage collections, charged to whichever side is running."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}
        self.side = ""
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.spent[self.side] = self.spent.get(self.side, 0.0) + time.perf_counter() - self._started

    @contextlib.contextmanager
    def running(self) -> Iterator[CollectorClock]:
        gc.callbacks.append(self)
        try:
            yield self
        finally:
            gc.callbacks.remove(self)


async def run(url: str, requests: int, query: str = "dashboard") -> None:
    engine = create_engine(url)
    seeded = await seed(engine, DashboardShape(accounts=50, invoices=20, tickets=12))
    secret = secrets.token_urlsafe(48)
    settings = Settings(database_url=url, secret_key=secret, max_query_cost=MAX_QUERY_COST)
    headers = {"authorization": "Bearer " + await bench_token(engine, secret, seeded.owner_id)}
    gateway_app = create_app(settings, engine=engine)
    floor_app = create_floor_app(settings, engine=engine)
    async with (
        gateway_app.router.lifespan_context(gateway_app),
        floor_app.router.lifespan_context(floor_app),
        asgi_client(gateway_app) as gateway_http,
        asgi_client(floor_app) as floor_http,
    ):
        if query == "header":
            document, variables = ACCOUNT_HEADER, {"number": seeded.header_number}
            floor_path = f"/header?number={seeded.header_number}"
        else:
            document, variables, floor_path = DASHBOARD, {"first": 50}, "/dashboard?first=50"

        async def gateway() -> httpx.Response:
            return (await gateway_http.post(
                "/graphql", json={"query": document, "variables": variables}, headers=headers
            )).raise_for_status()

        async def floor() -> httpx.Response:
            return (await floor_http.post(floor_path, headers=headers)).raise_for_status()

        if (await gateway()).json() != (await floor()).json():
            raise SystemExit("the gateway and the hand-written endpoint answer differently")
        for _ in range(3):
            await gateway()
            await floor()
        calls = await python_calls(gateway)

        cpu: dict[str, list[float]] = {"gateway": [], "floor": []}
        sides: dict[str, Request] = {"gateway": gateway, "floor": floor}
        with CollectorClock().running() as collector:
            for index in range(requests):
                order = ("gateway", "floor") if index % 2 == 0 else ("floor", "gateway")
                for side in order:
                    collector.side = side
                    started = time.process_time()
                    await sides[side]()
                    cpu[side].append(time.process_time() - started)

    what = "the account header" if query == "header" else f"the dashboard of {DashboardShape().accounts} accounts"
    print(f"database {engine.dialect.name}; {what}, {requests} requests per side, alternating")
    print("side       CPU ms/request (median, min)   GC ms/request")
    for side, samples in cpu.items():
        print(f"{side:9s}  {statistics.median(samples) * 1000:8.1f}  {min(samples) * 1000:8.1f}"
              f"              {collector.spent.get(side, 0.0) * 1000 / requests:8.1f}")
    median = statistics.median(cpu["gateway"]) / statistics.median(cpu["floor"])
    print(f"gateway/hand-written CPU: median {median:.2f}, "
          f"min {min(cpu['gateway']) / min(cpu['floor']):.2f}")
    print(f"gateway Python calls per request: {calls:,}")
    await engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=30, help="measured requests per side")
    parser.add_argument("--database-url", help="a PostgreSQL server; default: temporary SQLite")
    parser.add_argument("--query", choices=("dashboard", "header"), default="dashboard")
    args = parser.parse_args(argv)
    with temporary_database(args.database_url) as url:
        upgrade_database(url)
        asyncio.run(run(url, max(args.requests, 2), args.query))


if __name__ == "__main__":
    main()
