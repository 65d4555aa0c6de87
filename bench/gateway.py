"""The gateway at scale, over HTTP: the real server (uvicorn), a large data set, concurrent clients.

    .venv/bin/python -m bench.gateway [--database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres]
        [--scale 1.0] [--workers 2] [--clients 8] [--duration 10] [--rounds 2]

One run: two fresh databases (temporary SQLite files, or new databases on the given PostgreSQL
server, dropped afterwards), migrated and bulk-seeded: the *large* one with ``--scale`` times
issue 6's default background (10,000 accounts, 1,000,000 ledger entries, 100,000 invoices,
50,000 tickets), the *small* one with a tenth of it, both around the same test user's
50-account dashboard. Four uvicorn servers run side by side on loopback: the gateway, the
gateway with permission checks off (``bench/asgi_unchecked.py``), the hand-written endpoint
(``bench/handwritten.py``), all on the large database, and the gateway on the small one.
Concurrent clients then drive them in interleaved phases (A B C D, D C B A, …), so the three
ratios — checks on/off, gateway/hand-written, 10× data/1× — are measured side by side, under
the same machine load. SQL statements per request are counted in-process (a SQLAlchemy
listener), server memory is the peak RSS of each server's process tree sampled from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import pstats
import re
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.dataset import (
    ACCOUNT_HEADER, DASHBOARD, MAX_QUERY_COST, BackgroundShape, DashboardShape, Seeded,
    asgi_client, bench_token, seed, temporary_database,
)
from bench.handwritten import create_handwritten_app
from linkgate.app import create_app
from linkgate.migrations import upgrade_database
from linkgate.settings import Settings
from models.database import StatementCounter, create_engine

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"on/off": 1.10, "gateway/handwritten": 2.0, "10x/1x": 1.2}
MAX_REQUESTS_PER_PHASE = 100_000  # a bound besides time: no phase can run away
FIRST = 50


@dataclass(frozen=True)
class Options:
    database_url: str | None
    scale: float
    workers: int
    clients: int
    duration: float
    rounds: int
    warmup: int
    profile: bool
    markdown: Path | None
    tcp_nodelay: bool


# --------------------------------------------------------------------------- servers


@dataclass(frozen=True)
class Request:
    """One benchmark request, encoded once."""

    path: str
    body: bytes
    headers: dict[str, str]


def graphql_request(query: str, variables: dict[str, Any], token: str) -> Request:
    body = json.dumps({"query": query, "variables": variables}).encode()
    return Request("/graphql", body, {"content-type": "application/json",
                                      "authorization": f"Bearer {token}"})


class Server:
    """One uvicorn (``--workers``) on a free loopback port, serving ``app`` from ``database_url``."""

    def __init__(self, name: str, app: list[str], database_url: str, secret: str, workers: int,
                 tcp_nodelay: bool = False) -> None:
        self.name, self.app, self.workers = name, app, workers
        # Stock uvicorn, as `linkgate serve` runs it; or with the --workers TCP_NODELAY fix.
        self.module = "bench.uvicorn_nodelay" if tcp_nodelay else "uvicorn"
        self.env = {**os.environ, "LINKGATE_DATABASE_URL": database_url,
                    "LINKGATE_SECRET_KEY": secret, "PYTHONPATH": str(ROOT),
                    "LINKGATE_MAX_QUERY_COST": str(MAX_QUERY_COST)}
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.peak_rss = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.app, "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", str(self.workers),
             "--no-access-log", "--log-level", "warning"],
            cwd=ROOT, env=self.env, start_new_session=True,
        )

    async def wait_ready(self, http: httpx.AsyncClient, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise SystemExit(f"server {self.name} exited with {self.process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"{self.base_url}/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
        raise SystemExit(f"server {self.name} did not answer within {timeout:.0f} s")

    def sample_rss(self) -> None:
        if self.process is not None:
            self.peak_rss = max(self.peak_rss, _tree(self.process.pid)[0])

    def cpu_seconds(self) -> float:
        return _tree(self.process.pid)[1] if self.process is not None else 0.0

    def stop(self) -> None:
        """SIGTERM (uvicorn stops its workers), then SIGKILL to its own process group."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait(timeout=5)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _tree(root: int) -> tuple[int, float]:
    """(resident bytes, CPU seconds used) of ``root`` and its descendants (uvicorn's supervisor
    and workers), from /proc."""
    children: dict[int, list[int]] = defaultdict(list)
    usage: dict[int, tuple[int, float]] = {}
    page, tick = os.sysconf("SC_PAGE_SIZE"), os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            children[int(fields[1])].append(int(entry.name))
            resident = int((entry / "statm").read_text().split()[1]) * page
            usage[int(entry.name)] = (resident, (int(fields[11]) + int(fields[12])) / tick)
    rss, cpu, todo = 0, 0.0, [root]
    while todo:
        pid = todo.pop()
        rss += usage.get(pid, (0, 0.0))[0]
        cpu += usage.get(pid, (0, 0.0))[1]
        todo.extend(children.get(pid, []))
    return rss, cpu


# --------------------------------------------------------------------------- load


@dataclass
class Stats:
    """Latencies (seconds) and time spent of one (server, query) over all its phases."""

    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    server_cpu: float = 0.0  # CPU seconds the server's processes used during the phases
    client_cpu: float = 0.0  # and this process (the clients): is the load generator the limit?
    failures: int = 0

    def cpu_per_request(self) -> float:
        return self.server_cpu / len(self.latencies)

    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def mean(self) -> float:
        return statistics.fmean(self.latencies)

    def percentile(self, p: int) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def drive(http: httpx.AsyncClient, server: Server, request: Request, clients: int,
                duration: float, stats: Stats | None) -> None:
    """``clients`` concurrent loops posting ``request`` for ``duration`` seconds (and at most
    ``MAX_REQUESTS_PER_PHASE`` requests); latencies into ``stats`` unless warming up."""
    url = server.base_url + request.path
    cpu, client_cpu = server.cpu_seconds(), time.process_time()
    started = time.perf_counter()
    deadline = started + duration
    sent = 0

    async def client() -> None:
        nonlocal sent
        while time.perf_counter() < deadline and sent < MAX_REQUESTS_PER_PHASE:
            sent += 1
            begin = time.perf_counter()
            response = await http.post(url, content=request.body, headers=request.headers)
            elapsed = time.perf_counter() - begin
            if stats is not None:
                if response.status_code != 200:
                    stats.failures += 1
                stats.latencies.append(elapsed)

    await asyncio.gather(*(client() for _ in range(clients)))
    if stats is not None:
        stats.seconds += time.perf_counter() - started
        stats.server_cpu += server.cpu_seconds() - cpu
        stats.client_cpu += time.process_time() - client_cpu


async def sample_memory(servers: list[Server], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for server in servers:
            server.sample_rss()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)


# --------------------------------------------------------------------------- in-process


@dataclass
class InProcess:
    """What is measured inside this process, on the large database, before any server starts."""

    statements: dict[str, int] = field(default_factory=dict)
    response_bytes: dict[str, int] = field(default_factory=dict)
    profile: str = ""
    explain: list[str] = field(default_factory=list)


async def measure_in_process(engine: AsyncEngine, settings: Settings, token: str,
                             header: Request, dashboard: Request, options: Options) -> InProcess:
    """Statements per request (gateway on and off, hand-written), the hand-written JSON checked
    equal to the gateway's, the query plans of the dashboard's statements, and a profile."""
    result = InProcess()
    apps = {"gateway": create_app(settings, engine=engine),
            "unchecked": create_app(settings, engine=engine, enforce_permissions=False),
            "handwritten": create_handwritten_app(settings, engine=engine)}
    bodies: dict[str, Any] = {}
    statements: list[tuple[str, Any]] = []
    for name, app in apps.items():
        async with asgi_client(app) as http:
            cases = [("dashboard", _handwritten(token))] if name == "handwritten" else [
                ("dashboard", dashboard), ("header", header)]
            for query, request in cases:
                await http.post(request.path, content=request.body, headers=request.headers)
                with StatementCounter(engine) as counter:
                    response = await http.post(request.path, content=request.body, headers=request.headers)
                response.raise_for_status()
                result.statements[f"{name} {query}"] = counter.count
                result.response_bytes[f"{name} {query}"] = len(response.content)
                bodies[f"{name} {query}"] = response.json()
                if name == "gateway" and query == "dashboard":
                    statements = counter.statements
            if name == "gateway" and options.profile:
                result.profile = await _profile(http, dashboard)
    if bodies["gateway dashboard"].get("errors"):
        raise SystemExit(f"the dashboard query failed: {bodies['gateway dashboard']['errors'][:2]}")
    if bodies["gateway dashboard"] != bodies["unchecked dashboard"]:
        raise SystemExit("the gateway's responses with checks on and off differ")
    if bodies["gateway dashboard"] != bodies["handwritten dashboard"]:
        raise SystemExit("the hand-written endpoint's JSON differs from the gateway's")
    result.explain = await _explain(engine, statements)
    return result


def _handwritten(token: str) -> Request:
    """The hand-written endpoint's equivalent of the dashboard request (same page size)."""
    return Request(f"/dashboard?first={FIRST}", b"", {"authorization": f"Bearer {token}"})


async def _profile(http: httpx.AsyncClient, request: Request, requests: int = 10) -> str:
    """cProfile of in-process dashboard requests: own time per package, then the top functions."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(requests):
        await http.post(request.path, content=request.body, headers=request.headers)
    profiler.disable()
    stats = pstats.Stats(profiler)
    by_package: dict[str, float] = defaultdict(float)
    rows = []
    total = 0.0
    for (path, line, function), (_, calls, own, _cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        package = _package(path)
        by_package[package] += own
        total += own
        rows.append((own, calls, f"{package}:{Path(path).name}:{line}:{function}"))
    lines = [f"own time of {requests} dashboard requests, by package (total {total:.2f} s, "
             f"{stats.total_calls / requests:,.0f} calls per request):"]  # type: ignore[attr-defined]
    for package, own in sorted(by_package.items(), key=lambda item: -item[1])[:12]:
        lines.append(f"  {own / total:6.1%}  {package}")
    lines.append("top functions by own time:")
    for own, calls, name in sorted(rows, reverse=True)[:15]:
        lines.append(f"  {own / total:6.1%}  {calls // requests:>8,}/req  {name}")
    return "\n".join(lines)


def _package(path: str) -> str:
    if "site-packages/" in path:
        return path.split("site-packages/")[1].split("/")[0].removesuffix(".py")
    if path.startswith(str(ROOT)):
        return "linkgate: " + path[len(str(ROOT)) + 1:].split("/")[0]
    if path.startswith("<") or path == "~":
        return "builtins (C)"
    return "stdlib: " + Path(path).stem


async def _explain(engine: AsyncEngine, statements: list[tuple[str, Any]]) -> list[str]:
    """The plans of the dashboard's window-function (top N per parent) statements."""
    postgres = engine.dialect.name == "postgresql"
    prefix = "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " if postgres else "EXPLAIN QUERY PLAN "
    out: list[str] = []
    async with engine.connect() as connection:
        for statement, parameters in statements:
            if "row_number()" not in statement:
                continue
            table = re.search(r"FROM (\w+)", statement).group(1)  # type: ignore[union-attr]
            rows = (await connection.exec_driver_sql(prefix + statement, parameters)).all()
            plan = [str(row[0]) if postgres else str(row[-1]) for row in rows]
            out.append(f"-- {table}\n" + "\n".join(plan))
    return out


# --------------------------------------------------------------------------- the run


@dataclass
class Databases:
    large: str
    small: str
    seeded: Seeded
    seeded_small: Seeded


async def _seed(url: str, scale: float) -> Seeded:
    engine = create_engine(url)
    try:
        return await seed(engine, DashboardShape(ledger=100), BackgroundShape.at_scale(scale))
    finally:
        await engine.dispose()


async def run(databases: Databases, options: Options) -> dict[str, Any]:
    secret = secrets.token_urlsafe(48)
    settings = Settings(database_url=databases.large, secret_key=secret,
                        max_query_cost=MAX_QUERY_COST)
    engine = create_engine(databases.large)
    try:
        token = await bench_token(engine, secret, databases.seeded.owner_id)
        dashboard = graphql_request(DASHBOARD, {"first": FIRST}, token)
        header = graphql_request(ACCOUNT_HEADER, {"number": databases.seeded.header_number}, token)
        in_process = await measure_in_process(engine, settings, token, header, dashboard, options)
    finally:
        await engine.dispose()

    apps = {"gateway": (["linkgate.asgi:app"], databases.large),
            "unchecked": (["bench.asgi_unchecked:app"], databases.large),
            "handwritten": (["--factory", "bench.handwritten:create_handwritten_app"], databases.large),
            "gateway 1/10": (["linkgate.asgi:app"], databases.small)}
    servers = {name: Server(name, app, url, secret, options.workers, options.tcp_nodelay)
               for name, (app, url) in apps.items()}
    phases = [("gateway", "dashboard"), ("unchecked", "dashboard"), ("handwritten", "dashboard"),
              ("gateway 1/10", "dashboard"), ("gateway", "header"), ("unchecked", "header"),
              ("gateway 1/10", "header")]
    requests = {"dashboard": dashboard, "header": header}
    stats: dict[tuple[str, str], Stats] = defaultdict(Stats)
    limits = httpx.Limits(max_connections=options.clients * 2, max_keepalive_connections=options.clients * 2)
    try:
        for server in servers.values():
            server.start()
        async with httpx.AsyncClient(timeout=120, limits=limits, trust_env=False) as http:
            for server in servers.values():
                await server.wait_ready(http)
            for name, query in phases:  # every worker process warm, caches filled
                request = _handwritten(token) if name == "handwritten" else requests[query]
                await drive(http, servers[name], request, options.clients, options.warmup, None)
            stop = asyncio.Event()
            sampler = asyncio.create_task(sample_memory(list(servers.values()), stop))
            for round_ in range(options.rounds):
                for name, query in phases if round_ % 2 == 0 else phases[::-1]:
                    request = _handwritten(token) if name == "handwritten" else requests[query]
                    await drive(http, servers[name], request, options.clients, options.duration,
                                stats[(name, query)])
                print(f"  round {round_ + 1}/{options.rounds} done", flush=True)
            stop.set()
            await sampler
    finally:
        for server in servers.values():
            server.stop()
    return {"in_process": in_process, "stats": stats, "servers": servers}


def _ratio(stats: dict[tuple[str, str], Stats], a: tuple[str, str], b: tuple[str, str]) -> tuple[float, float, float]:
    """a / b: mean latency and p50 under the same concurrency, and server CPU per request
    (which other load on the machine moves less than wall-clock time)."""
    return (stats[a].mean() / stats[b].mean(), stats[a].percentile(50) / stats[b].percentile(50),
            stats[a].cpu_per_request() / stats[b].cpu_per_request())


def report(result: dict[str, Any], databases: Databases, options: Options, command: str,
           seconds: float) -> tuple[str, int]:
    """The figures as Markdown (printed, and written with ``--markdown``); 1 if a target is missed."""
    in_process: InProcess = result["in_process"]
    stats: dict[tuple[str, str], Stats] = result["stats"]
    servers: dict[str, Server] = result["servers"]
    dialect = "PostgreSQL" if databases.large.startswith("postgresql") else "SQLite"
    rows = databases.seeded.rows
    out = [
        f"### {dialect} — `{command}`",
        "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, Python "
        f"{sys.version.split()[0]}; {options.workers} uvicorn workers per server, "
        f"{'with the TCP_NODELAY fix (bench/uvicorn_nodelay.py), ' if options.tcp_nodelay else 'stock uvicorn, '}"
        f"{options.clients} concurrent clients, {options.rounds} rounds × {options.duration:g} s per "
        f"phase (after {options.warmup:g} s warm-up each), total {seconds:.0f} s.",
        "",
        f"Large database (scale {options.scale:g}): seeded in **{databases.seeded.seconds:.1f} s** — "
        + ", ".join(f"{count:,} {table}" for table, count in rows.items()) + ".",
        f"Small database (scale {options.scale / 10:g}, same dashboard): seeded in "
        f"{databases.seeded_small.seconds:.1f} s ({databases.seeded_small.rows['credit_ledger_entries']:,} "
        f"ledger entries).",
        "",
        "| server | query | requests | req/s | mean ms | p50 ms | p95 ms | p99 ms | server CPU ms/req | client CPU ms/req | SQL/request | response | peak RSS |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (name, query), item in stats.items():
        key = f"{'gateway' if name == 'gateway 1/10' else name} {query}"
        out.append(
            f"| {name} | {query} | {len(item.latencies):,} | {item.rps():.1f} | {item.mean() * 1e3:.1f} | "
            f"{item.percentile(50) * 1e3:.1f} | {item.percentile(95) * 1e3:.1f} | "
            f"{item.percentile(99) * 1e3:.1f} | {item.cpu_per_request() * 1e3:.1f} | "
            f"{item.client_cpu / len(item.latencies) * 1e3:.1f} | "
            f"{in_process.statements.get(key, '?')} | "
            f"{in_process.response_bytes.get(key, 0) / 1024:.1f} KiB | "
            f"{servers[name].peak_rss / 2**20:.0f} MiB |"
        )
    failures = sum(item.failures for item in stats.values())
    comparisons = [
        ("on/off", "dashboard", ("gateway", "dashboard"), ("unchecked", "dashboard")),
        ("on/off", "header", ("gateway", "header"), ("unchecked", "header")),
        ("gateway/handwritten", "dashboard", ("gateway", "dashboard"), ("handwritten", "dashboard")),
        ("10x/1x", "dashboard", ("gateway", "dashboard"), ("gateway 1/10", "dashboard")),
        ("10x/1x", "header", ("gateway", "header"), ("gateway 1/10", "header")),
    ]
    out += ["", "| ratio | query | mean latency | p50 | server CPU/request | target | |",
            "|---|---|---:|---:|---:|---:|---|"]
    missed = 0
    for label, query, a, b in comparisons:
        mean, p50, cpu = _ratio(stats, a, b)
        ok = mean < TARGETS[label]
        missed += not ok
        out.append(f"| {label} | {query} | **{mean:.3f}** | {p50:.3f} | {cpu:.3f} | < {TARGETS[label]:g} | "
                   f"{'OK' if ok else 'MISSED'} |")
    out += ["", f"Non-200 responses: {failures}. SQL/request counted in-process on the large "
            "database (the gateway's 1/10 row: the same statements).", ""]
    if in_process.profile:
        out += ["```", in_process.profile, "```", ""]
    if in_process.explain:
        out += ["Query plans of the dashboard's top-N-per-parent statements (large database):", "",
                "```", "\n\n".join(in_process.explain), "```", ""]
    return "\n".join(out), 1 if missed or failures else 0


# --------------------------------------------------------------------------- command line


def parse(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gateway", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--database-url", help="a PostgreSQL server (postgresql+asyncpg://…): new "
                        "databases are created on it and dropped afterwards; default: temporary SQLite")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="background data, 1.0 = 10,000 accounts, 1M ledger entries, 100k "
                        "invoices, 50k tickets (the small database gets a tenth)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes per server")
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument("--duration", type=float, default=10, help="seconds per phase and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of interleaved phases (ABBA)")
    parser.add_argument("--warmup", type=float, default=3, help="unmeasured seconds per phase first")
    parser.add_argument("--profile", action="store_true",
                        help="also print a cProfile summary of in-process dashboard requests")
    parser.add_argument("--markdown", type=Path, help="also write the figures to this file")
    parser.add_argument("--tcp-nodelay", action="store_true",
                        help="serve with bench/uvicorn_nodelay.py: uvicorn with the fix for "
                        "--workers > 1 losing TCP_NODELAY (+~40 ms per keep-alive request)")
    args = parser.parse_args(argv)
    if not (0 < args.scale <= 100 and 1 <= args.workers <= 16 and 1 <= args.clients <= 256
            and 0 < args.duration <= 600 and 1 <= args.rounds <= 20 and 0 <= args.warmup <= 60):
        parser.error("out of range: 0 < scale ≤ 100, workers 1–16, clients 1–256, "
                     "0 < duration ≤ 600, rounds 1–20, warmup 0–60")
    return Options(args.database_url, args.scale, args.workers, args.clients, args.duration,
                   args.rounds, args.warmup, args.profile, args.markdown, args.tcp_nodelay)


@contextlib.contextmanager
def _databases(options: Options) -> Iterator[Databases]:
    with temporary_database(options.database_url) as large, \
            temporary_database(options.database_url) as small:
        sizes = {}
        for url, scale in ((large, options.scale), (small, options.scale / 10)):
            upgrade_database(url)
            sizes[url] = asyncio.run(_seed(url, scale))
            print(f"seeded scale {scale:g} in {sizes[url].seconds:.1f} s: "
                  + ", ".join(f"{n:,} {t}" for t, n in sizes[url].rows.items()), flush=True)
        yield Databases(large, small, sizes[large], sizes[small])


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    command = "python -m bench.gateway " + " ".join(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    with _databases(options) as databases:
        result = asyncio.run(run(databases, options))
        text, status = report(result, databases, options, command.strip(),
                              time.perf_counter() - started)
    print()
    print(text)
    if options.markdown is not None:
        options.markdown.write_text(text + "\n", encoding="utf-8")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
