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
import contextlib
import cProfile
import gc
import io
import json
import pstats
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from auth.permissions import Permission
from auth.tokens import TokenSettings
from linkgate.app import create_app
from linkgate.migrations import upgrade_database
from linkgate.settings import Settings
from models import (
    Account, AuthorKind, Contact, CreditLedgerEntry, Department, Invoice, InvoiceLine,
    InvoiceStatus, LedgerEntryKind, LinkGroup, LinkKind, LinkMember, LinkMethod, Membership,
    Service, ServiceStatus, Ticket, TicketMessage, TicketStatus, User,
)
from models.database import create_engine, create_session_factory

TARGET_RATIO = 1.10

DASHBOARD = """
query Dashboard($first: Int!) {
  viewer {
    user { email name }
    accounts(first: $first) {
      totalCount
      pageInfo { hasNextPage endCursor }
      edges { node {
        id number name status viewerIsOwner viewerPermissions
        creditBalance
        creditLedger(first: 5) { edges { node { id kind delta balanceAfter createdAt note } } }
        linkGroups {
          id kind name
          head { number name }
          members { friendlyName linkedVia account { id number name creditBalance } }
        }
        invoices(first: 10) {
          totalCount
          edges { node {
            id number status issuedAt dueAt
            total { amount currency }
            lines { description quantity amount { amount currency } }
          } }
        }
        services { id name kind status monthlyPrice { amount currency } }
        tickets(first: 10) {
          edges { node {
            id number subject status updatedAt
            messages { authorName authorKind body createdAt }
          } }
        }
        contacts { id name email phone isBillingContact isSupportContact }
      } }
    }
  }
}
"""

# Accounts are seeded in blocks: a head account, then members linked to it.
BLOCK = 5
MANAGED_PER_BLOCK = 2  # the first members of every other block are in a MANAGEMENT group too
SERVICES_PER_ACCOUNT = 4
CONTACTS_PER_ACCOUNT = 3
LEDGER_PER_ACCOUNT = 10
_START = datetime(2025, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Options:
    accounts: int
    invoices: int
    tickets: int
    repeat: int
    warmup: int
    database_url: str | None
    profile: str | None


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


# --------------------------------------------------------------------------- database


@contextlib.contextmanager
def temporary_database(server_url: str | None) -> Iterator[str]:
    """A new, empty database's URL; removed on exit (a new one per run, never a shared one)."""
    if server_url is None:
        with tempfile.TemporaryDirectory(prefix="linkgate-bench-") as folder:
            yield f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        return
    if not server_url.startswith("postgresql"):
        raise SystemExit("--database-url must be a postgresql+asyncpg:// server URL")
    name = f"linkgate_bench_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(server_url: str, statement: str) -> None:
    engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.exec_driver_sql(statement)
    finally:
        await engine.dispose()


# --------------------------------------------------------------------------- seed


@dataclass(frozen=True)
class Seeded:
    owner_id: int
    sub_account_id: int


async def seed(session: AsyncSession, options: Options) -> Seeded:
    """One owner's dashboard: ``options.accounts`` accounts in link groups, each with services,
    invoices with lines, tickets with messages, ledger entries and contacts; plus a
    sub-account user holding a mix of permissions (direct and flowing through links)."""
    owner = User(email="owner@bench.example", name="Olga Owner", password_hash="-")
    clerk = User(email="clerk@bench.example", name="Carl Clerk", password_hash="-")
    session.add_all([owner, clerk])
    await session.flush()

    accounts = [
        Account(number=f"ACC-3{index:05d}", name=f"Bench account {index:03d}", owner_id=owner.id,
                enrollment_token_hash="-", credit_balance=0,
                created_at=_START + timedelta(days=index))
        for index in range(options.accounts)
    ]
    session.add_all(accounts)
    await session.flush()

    await _seed_links_and_rights(session, accounts, clerk)
    for index, account in enumerate(accounts):
        _seed_account_data(session, account, index, options, owner)
    await session.flush()
    await _seed_invoices_and_tickets(session, accounts, options, owner)
    return Seeded(owner_id=owner.id, sub_account_id=clerk.id)


async def _seed_links_and_rights(session: AsyncSession, accounts: list[Account], clerk: User) -> None:
    """Blocks of ``BLOCK`` accounts: the first heads a BILLING group of the rest; every other
    block also has a MANAGEMENT group. The clerk holds billing rights on some heads (they flow
    to the members), technical rights on others, and a few direct rights on members."""
    billing_rights = [Permission.INVOICES_READ.value, Permission.CREDITS_READ.value]
    technical_rights = [Permission.SERVICES_READ.value, Permission.TICKETS_READ.value,
                        Permission.CONTACTS_READ.value]
    for block, start in enumerate(range(0, len(accounts), BLOCK)):
        head, members = accounts[start], accounts[start + 1:start + BLOCK]
        if not members:
            continue
        kinds = [LinkKind.BILLING] + ([LinkKind.MANAGEMENT] if block % 2 == 0 else [])
        for kind in kinds:
            group = LinkGroup(kind=kind, name=f"{kind.value.title()} block {block}")
            session.add(group)
            await session.flush()
            linked = members if kind is LinkKind.BILLING else members[:MANAGED_PER_BLOCK]
            session.add(LinkMember(group_id=group.id, kind=kind, account_id=head.id, is_head=True,
                                   friendly_name="Head office", linked_via=LinkMethod.SAME_OWNER))
            session.add_all(
                LinkMember(group_id=group.id, kind=kind, account_id=member.id,
                           friendly_name=f"Site {offset + 1}", linked_via=LinkMethod.SAME_OWNER)
                for offset, member in enumerate(linked)
            )
        rights = billing_rights if block % 3 == 0 else technical_rights
        if block % 3 == 2:
            rights = billing_rights + technical_rights
        session.add(Membership(user_id=clerk.id, account_id=head.id, permissions=rights))
        if len(members) > 2:
            session.add(Membership(user_id=clerk.id, account_id=members[-1].id,
                                   permissions=[Permission.TICKETS_READ.value]))


def _seed_account_data(
    session: AsyncSession, account: Account, index: int, options: Options, owner: User
) -> None:
    """Services, contacts and a ledger whose balance stays non-negative."""
    kinds = ["hosting", "domain", "email", "sms"]
    session.add_all(
        Service(account_id=account.id, name=f"{kinds[n].title()} {index}-{n}", kind=kinds[n],
                status=ServiceStatus.ACTIVE if n != 3 else ServiceStatus.SUSPENDED,
                monthly_price=500 + 100 * n, currency="EUR")
        for n in range(SERVICES_PER_ACCOUNT)
    )
    session.add_all(
        Contact(account_id=account.id, name=f"Contact {index}-{n}",
                email=f"contact{n}.{index}@bench.example", phone=f"+31 10 555 {index:02d}{n:02d}",
                is_billing_contact=n == 0, is_support_contact=n == 1,
                email_preferences=["INVOICE"] if n == 0 else ["SUPPORT", "GENERAL"])
        for n in range(CONTACTS_PER_ACCOUNT)
    )
    balance = 0
    for n in range(LEDGER_PER_ACCOUNT):
        delta = 1000 if n % 3 == 0 else -150
        balance += delta
        session.add(CreditLedgerEntry(
            account_id=account.id, kind=LedgerEntryKind.PURCHASE if delta > 0 else LedgerEntryKind.USAGE,
            delta=delta, balance_after=balance, actor_user_id=owner.id if delta > 0 else None,
            note="Credit top-up" if delta > 0 else "SMS usage",
            created_at=_START + timedelta(days=30 + n),
        ))
    account.credit_balance = balance


async def _seed_invoices_and_tickets(
    session: AsyncSession, accounts: list[Account], options: Options, owner: User
) -> None:
    """Monthly invoices with 1–3 lines; tickets with 1–3 messages."""
    invoices: list[tuple[Invoice, Account]] = []
    tickets: list[Ticket] = []
    for index, account in enumerate(accounts):
        for n in range(options.invoices):
            issued = _START + timedelta(days=31 * n)
            invoice = Invoice(
                number=f"INV-{index:05d}-{n:04d}", payer_account_id=account.id,
                period_start=date(issued.year, issued.month, 1),
                period_end=date(issued.year, issued.month, 28),
                issued_at=issued, due_at=issued + timedelta(days=14),
                status=InvoiceStatus.PAID if n < options.invoices - 1 else InvoiceStatus.UNPAID,
                currency="EUR", subtotal=3000, tax=630, total=3630,
                bill_to_name=account.name, bill_to_email=f"ap.{index}@bench.example",
                bill_to_city="Rotterdam", bill_to_country="NL",
            )
            invoices.append((invoice, account))
        for n in range(options.tickets):
            tickets.append(Ticket(
                account_id=account.id, number=f"TKT-{index:05d}-{n:04d}",
                subject=f"Question {n} about account {index}", department=Department.TECHNICAL,
                status=TicketStatus.ANSWERED if n % 2 else TicketStatus.OPEN,
                opened_by_user_id=owner.id, opened_by_name=owner.name,
                opened_by_email=owner.email, created_at=_START + timedelta(days=n),
                updated_at=_START + timedelta(days=n, hours=3),
            ))
    session.add_all([invoice for invoice, _ in invoices])
    session.add_all(tickets)
    await session.flush()
    for n, (invoice, account) in enumerate(invoices):
        session.add_all(
            InvoiceLine(invoice_id=invoice.id, account_id=account.id,
                        description=f"Service fee {line}", quantity=1 + line,
                        unit_price=1000, amount=1000 * (1 + line))
            for line in range(1 + n % 3)
        )
    for n, ticket in enumerate(tickets):
        session.add_all(
            TicketMessage(
                ticket_id=ticket.id, author_user_id=owner.id if turn % 2 == 0 else None,
                author_name=owner.name if turn % 2 == 0 else "Support",
                author_kind=AuthorKind.CUSTOMER if turn % 2 == 0 else AuthorKind.STAFF,
                body=f"Message {turn} on ticket {ticket.number}. " * 3,
                created_at=_START + timedelta(days=n % 300, hours=turn),
            )
            for turn in range(1 + n % 3)
        )


# --------------------------------------------------------------------------- measuring


class StatementCounter:
    """Counts SQL statements sent through the engine while active."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine.sync_engine
        self.count = 0

    def _record(self, *args: Any) -> None:
        self.count += 1

    def __enter__(self) -> StatementCounter:
        event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)


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


def _http(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://bench.local", timeout=120)


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


async def _calls(client: Client, first: int) -> int:
    """Python function calls in one request (this thread): a measure of work that, unlike
    time, does not move with the load of a shared machine."""
    profiler = cProfile.Profile()
    profiler.enable()
    await client.dashboard(first)
    profiler.disable()
    return pstats.Stats(profiler).total_calls  # type: ignore[attr-defined]


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
        started = time.perf_counter()
        async with create_session_factory(engine)() as session:
            seeded = await seed(session, options)
            await session.commit()
        seed_seconds = time.perf_counter() - started

        secret = secrets.token_urlsafe(48)
        settings = Settings(database_url=url, secret_key=secret)
        tokens = TokenSettings(secret=secret)
        apps = {
            mode: create_app(settings, engine=engine, enforce_permissions=mode)
            for mode in (True, False)
        }
        async with _http(apps[True]) as on_http, _http(apps[False]) as off_http:
            return await _report(engine, options, seed_seconds, on_http, off_http, {
                "owner": tokens.issue(user_id=seeded.owner_id, token_version=1),
                "sub-account": tokens.issue(user_id=seeded.sub_account_id, token_version=1),
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
    print(f"dashboard  {options.accounts} accounts x ({options.invoices} invoices, "
          f"{options.tickets} tickets, {SERVICES_PER_ACCOUNT} services, "
          f"{LEDGER_PER_ACCOUNT} ledger entries, {CONTACTS_PER_ACCOUNT} contacts); "
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
        calls_on, calls_off = await _calls(on, first), await _calls(off, first)

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
