"""A real peer: the gateway, its floor and PostGraphile v4 on the same data, side by side.

    .venv/bin/python -m bench.peer --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
        [--scale 1] [--clients 8] [--duration 20] [--rounds 2] [--warmup 3] [--markdown FILE]

Issue 17, part 3. One run: a throw-away database on the given PostgreSQL server, migrated and
seeded by ``bench/dataset.py`` exactly as ``bench.gateway`` seeds its large one (``--scale``
times 10,000 accounts and 1,000,000 ledger entries around the test user's 50-account
dashboard), plus ``bench/peer/rls.sql``: Linkgate's account visibility as row-level-security
policies, for a throw-away role. Four servers, one process each, on loopback ports:

- ``gateway``: ``linkgate.asgi:app`` (uvicorn, 1 worker);
- ``floor``: the hand-written endpoint (``bench/handwritten.py``) plus a hand-written account
  header, ``create_floor_app`` below (uvicorn, 1 worker);
- ``PostGraphile``: ``postgraphile@4`` from npm (installed by ``npm ci`` into
  ``bench/peer/node_modules`` on first use), no authentication: the superuser sees every row;
- ``PostGraphile RLS``: the same, verifying the gateway's own bearer token (``--jwt-secret``)
  and switching to the policies' role (``--default-role``) for every request.

Each gets the dashboard and the account header in its own names (PostGraphile's generated
``allAccounts``, ``accountByNumber``, ``…ByAccountId`` collections). Before any timing, the
answers are checked to hold the same rows (account, invoice and ticket numbers, ledger entry,
service and contact ids, invoice lines, messages, link groups and their members: compared as
sets, not JSON shapes), for the owner and, against the RLS peer, for the sub-account "clerk"
whose rights come partly through link groups: a mismatch exits 1. Then concurrent clients
drive every (server, query) in interleaved phases (A B C D …, then the reverse), and the
report gives per server and query the requests/s, latency and the CPU per request: the
server's process tree plus the PostgreSQL backends serving it, both read from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response
from starlette.routing import Route

from auth.errors import LinkgateError
from auth.permissions import LINK_SCOPES, STAFF_PERMISSIONS, Permission, sorted_permissions
from auth.access_cache import AccessCache
from auth.principals import authenticate
from bench.dataset import ACCOUNT_HEADER, DASHBOARD, MAX_QUERY_COST, bench_token, temporary_database
from bench.gateway import Server, _free_port, _seed
from bench.handwritten import create_handwritten_app
from linkgate.context import bearer_token, token_settings
from linkgate.migrations import upgrade_database
from linkgate.settings import Settings, get_settings
from models.database import create_engine
from resolvers.accounts import find_account_by_number
from resolvers.database import RequestSession
from schema.relay import decode_global_id

ROOT = Path(__file__).resolve().parent.parent
PEER = Path(__file__).resolve().parent / "peer"
FIRST = 50
TOKEN_LIFETIME = 840.0  # seconds: the gateway's access tokens live 15 minutes; renew before
BACKEND_POLL = 0.1  # seconds between reads of the PostgreSQL backends' CPU
SERVERS = ("gateway", "floor", "PostGraphile", "PostGraphile RLS")
QUERIES = ("header", "dashboard")


@dataclass(frozen=True)
class Options:
    database_url: str
    scale: float
    clients: int
    duration: float
    rounds: int
    warmup: float
    markdown: Path | None


# --------------------------------------------------------------------------- the floor's header


def create_floor_app(settings: Settings | None = None, engine: AsyncEngine | None = None) -> Starlette:
    """The hand-written endpoint (``POST /dashboard?first=N``) plus ``POST /header?number=…``:
    the account header without GraphQL, the gateway's statements (the token's user and session
    with the rights version; direct and linked rights when that moved; the account) and its
    JSON."""
    settings = settings or get_settings()
    engine = engine or create_engine(settings.database_url, **settings.pool_options())
    app = create_handwritten_app(settings, engine)
    sessions = async_sessionmaker(engine, class_=RequestSession, expire_on_commit=False)
    rights = AccessCache(settings.access_cache_size)

    async def header(request: StarletteRequest) -> Response:
        token = bearer_token(request)
        if token is None:
            return Response(orjson.dumps({"errors": [{"message": "Sign in."}]}), 401,
                            media_type="application/json")
        async with sessions() as session:
            try:
                principal = await authenticate(session, token, token_settings(settings))
                access = await rights.load(session, principal)
                row = await find_account_by_number(session, access, request.query_params["number"])
            except LinkgateError as error:
                return Response(orjson.dumps({"errors": [{"message": error.message}]}), 400,
                                media_type="application/json")
        account = None if row is None else {
            "number": row.number, "name": row.name, "status": row.status.value,
            "creditBalance": row.credit_balance if access.has(row.id, Permission.CREDITS_READ) else None,
            "viewerPermissions": [p.value for p in sorted_permissions(access.permissions_on(row.id))],
        }
        return Response(orjson.dumps({"data": {"viewer": {"account": account}}}),
                        media_type="application/json")

    app.router.routes.append(Route("/header", header, methods=["POST"]))
    return app


# --------------------------------------------------------------------------- PostGraphile's queries

# The dashboard's account, in PostGraphile's generated names: the same levels, page sizes and
# orders as bench.dataset.DASHBOARD (connections where the gateway pages, plain lists where it
# lists). Global ids are PostGraphile's ``nodeId``; ``id`` is the primary key.
_ACCOUNT = """
      id number name status{viewer}
      creditBalance
      creditLedgerEntriesByAccountId(first: 5, orderBy: ID_DESC) {{
        edges {{ node {{ id kind delta balanceAfter createdAt note }} }}
      }}
      linkMembersByAccountIdList {{
        linkGroupByGroupIdAndKind {{
          id kind name
          linkMembersByGroupIdAndKindList(orderBy: ID_ASC) {{
            isHead friendlyName linkedVia accountByAccountId {{ id number name creditBalance }}
          }}
        }}
      }}
      invoicesByPayerAccountId(first: 10, orderBy: [ISSUED_AT_DESC, ID_DESC]) {{
        totalCount
        edges {{ node {{
          id number status issuedAt dueAt total currency
          invoiceLinesByInvoiceIdList(orderBy: ID_ASC) {{ description quantity amount }}
        }} }}
      }}
      servicesByAccountIdList(orderBy: ID_ASC) {{ id name kind status monthlyPrice currency }}
      ticketsByAccountId(first: 10, orderBy: ID_DESC) {{
        edges {{ node {{
          id number subject status updatedAt
          ticketMessagesByTicketIdList(orderBy: ID_ASC) {{ authorName authorKind body createdAt }}
        }} }}
      }}
      contactsByAccountIdList(orderBy: ID_ASC) {{ id name email phone isBillingContact isSupportContact }}
"""

# No authentication: the owner's accounts by condition (the superuser sees every row).
PG_DASHBOARD = """
query Dashboard($owner: BigInt!, $first: Int!) {
  userById(id: $owner) { email name }
  allAccounts(condition: {ownerId: $owner}, first: $first, orderBy: [NAME_ASC, ID_ASC]) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node {""" + _ACCOUNT.format(viewer="") + """    } }
  }
}
"""

PG_HEADER = """
query AccountHeader($number: String!) {
  accountByNumber(number: $number) { number name status creditBalance }
}
"""

# Row-level security: every account the viewer can see, and the viewer's own user row; the
# policies decide (bench/peer/rls.sql), viewerIsOwner and viewerPermissions are its computed
# columns.
RLS_DASHBOARD = """
query Dashboard($first: Int!) {
  allUsersList { email name }
  allAccounts(first: $first, orderBy: [NAME_ASC, ID_ASC]) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node {""" + _ACCOUNT.format(viewer=" viewerIsOwner viewerPermissions") + """    } }
  }
}
"""

RLS_HEADER = """
query AccountHeader($number: String!) {
  accountByNumber(number: $number) { number name status creditBalance viewerPermissions }
}
"""


# --------------------------------------------------------------------------- answers as row sets

Rows = dict[str, Any]

# What the peers cannot answer: PostGraphile without authentication has no viewer; with RLS,
# rows are filtered but columns are not (a sub-account without CREDITS_READ still reads
# creditBalance, one without INVOICES_READ a service's price), and a link group's head
# account is a row of its own (the gateway names the head of a group it shows, visible or not).
NOT_COMPARED = {
    "PostGraphile": {"viewerIsOwner", "viewerPermissions"},
    "PostGraphile RLS": set(),
    "PostGraphile RLS (clerk)": {"creditBalance", "member balances", "service prices", "group heads"},
}


def _pk(global_id: str) -> int:
    return decode_global_id(global_id)[1]


def _edges(connection: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [edge["node"] for edge in (connection or {}).get("edges", [])]


def gateway_rows(data: dict[str, Any]) -> Rows:
    """The gateway's (and the floor's) dashboard as sets of rows; a field denied by a
    permission (null) holds no rows."""
    viewer = data["viewer"]
    accounts: dict[str, Rows] = {}
    for node in _edges(viewer["accounts"]):
        invoices = _edges(node["invoices"])
        tickets = _edges(node["tickets"])
        accounts[node["number"]] = {
            "name": node["name"], "status": node["status"],
            "viewerIsOwner": node["viewerIsOwner"],
            "viewerPermissions": frozenset(node["viewerPermissions"]),
            "creditBalance": node["creditBalance"],
            "ledger": frozenset((_pk(e["id"]), e["kind"], e["delta"], e["balanceAfter"])
                                for e in _edges(node["creditLedger"])),
            "invoices": frozenset((i["number"], i["status"], i["total"]["amount"]) for i in invoices),
            "invoice count": (node["invoices"] or {}).get("totalCount", 0),
            "invoice lines": sorted((i["number"], line["description"], line["quantity"],
                                     line["amount"]["amount"]) for i in invoices for line in i["lines"]),
            "services": frozenset((_pk(s["id"]), s["name"], s["kind"], s["status"])
                                  for s in node["services"] or []),
            "service prices": frozenset((_pk(s["id"]), (s["monthlyPrice"] or {}).get("amount"))
                                        for s in node["services"] or []),
            "tickets": frozenset((t["number"], t["subject"], t["status"]) for t in tickets),
            "ticket messages": sorted((t["number"], m["authorName"], m["authorKind"], m["body"])
                                      for t in tickets for m in t["messages"]),
            "contacts": frozenset((_pk(c["id"]), c["name"], c["email"]) for c in node["contacts"] or []),
            "link groups": frozenset(
                (_pk(g["id"]), g["kind"], g["name"],
                 frozenset(m["account"]["number"] for m in g["members"] if m["account"]))
                for g in node["linkGroups"]),
            "group heads": frozenset((_pk(g["id"]), g["head"]["number"]) for g in node["linkGroups"]),
            "member balances": frozenset((m["account"]["number"], m["account"]["creditBalance"])
                                         for g in node["linkGroups"] for m in g["members"] if m["account"]),
        }
    user = viewer["user"]
    return {"user": (user["email"], user["name"]), "account count": viewer["accounts"]["totalCount"],
            "accounts": accounts}


def postgraphile_rows(data: dict[str, Any]) -> Rows:
    """PostGraphile's dashboard as the same sets of rows."""
    users = data["allUsersList"] if "allUsersList" in data else [data["userById"]]
    accounts: dict[str, Rows] = {}
    for node in _edges(data["allAccounts"]):
        invoices = _edges(node["invoicesByPayerAccountId"])
        tickets = _edges(node["ticketsByAccountId"])
        groups = [place["linkGroupByGroupIdAndKind"] for place in node["linkMembersByAccountIdList"]
                  if place["linkGroupByGroupIdAndKind"] is not None]
        members = {int(g["id"]): g["linkMembersByGroupIdAndKindList"] for g in groups}
        rows = {
            "name": node["name"], "status": node["status"],
            "creditBalance": node["creditBalance"],
            "ledger": frozenset((int(e["id"]), e["kind"], e["delta"], e["balanceAfter"])
                                for e in _edges(node["creditLedgerEntriesByAccountId"])),
            "invoices": frozenset((i["number"], i["status"], i["total"]) for i in invoices),
            "invoice count": node["invoicesByPayerAccountId"]["totalCount"],
            "invoice lines": sorted((i["number"], line["description"], line["quantity"], line["amount"])
                                    for i in invoices for line in i["invoiceLinesByInvoiceIdList"]),
            "services": frozenset((int(s["id"]), s["name"], s["kind"], s["status"])
                                  for s in node["servicesByAccountIdList"]),
            "service prices": frozenset((int(s["id"]), s["monthlyPrice"])
                                        for s in node["servicesByAccountIdList"]),
            "tickets": frozenset((t["number"], t["subject"], t["status"]) for t in tickets),
            "ticket messages": sorted((t["number"], m["authorName"], m["authorKind"], m["body"])
                                      for t in tickets for m in t["ticketMessagesByTicketIdList"]),
            "contacts": frozenset((int(c["id"]), c["name"], c["email"])
                                  for c in node["contactsByAccountIdList"]),
            "link groups": frozenset(
                (int(g["id"]), g["kind"], g["name"],
                 frozenset(m["accountByAccountId"]["number"] for m in members[int(g["id"])]
                           if not m["isHead"] and m["accountByAccountId"]))
                for g in groups),
            "group heads": frozenset(
                (int(g["id"]), next((m["accountByAccountId"] or {}).get("number")
                                    for m in members[int(g["id"])] if m["isHead"]))
                for g in groups),
            "member balances": frozenset(
                (m["accountByAccountId"]["number"], m["accountByAccountId"]["creditBalance"])
                for g in groups for m in members[int(g["id"])]
                if not m["isHead"] and m["accountByAccountId"]),
        }
        if "viewerPermissions" in node:
            rows["viewerIsOwner"] = node["viewerIsOwner"]
            rows["viewerPermissions"] = frozenset(node["viewerPermissions"])
        accounts[node["number"]] = rows
    user = users[0] if users else {"email": None, "name": None}
    return {"user": (user["email"], user["name"]), "account count": data["allAccounts"]["totalCount"],
            "accounts": accounts}


def header_rows(account: dict[str, Any] | None) -> Rows:
    if account is None:
        return {}
    rows = {key: account[key] for key in ("number", "name", "status", "creditBalance")}
    if "viewerPermissions" in account:
        rows["viewerPermissions"] = frozenset(account["viewerPermissions"])
    return rows


def differences(expected: Rows, found: Rows, skip: set[str], where: str = "") -> list[str]:
    """What ``found`` holds differently from ``expected`` (nested by account number), leaving
    out the keys in ``skip``, and the keys ``found`` does not have when they are skipped."""
    out: list[str] = []
    for key in sorted(set(expected) | set(found)):
        if key in skip:
            continue
        a, b = expected.get(key, "<missing>"), found.get(key, "<missing>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, skip, f"{where}{key}.")
        elif a != b:
            if isinstance(a, frozenset) and isinstance(b, frozenset):
                out.append(f"{where}{key}: only in the gateway's {sorted(a - b, key=str)[:3]}, "
                           f"only in the peer's {sorted(b - a, key=str)[:3]}")
            else:
                out.append(f"{where}{key}: gateway {str(a)[:150]} ≠ peer {str(b)[:150]}")
    return out


# --------------------------------------------------------------------------- servers


class PostGraphileServer(Server):
    """``postgraphile`` (v4 CLI, one node process) on a free loopback port."""

    def __init__(self, name: str, database_url: str, extra: list[str]) -> None:
        self.name, self.workers = name, 1
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.peak_rss = 0
        connection = make_url(database_url).set(drivername="postgresql").render_as_string(
            hide_password=False)
        self.command = [
            _node(), str(PEER / "node_modules" / "postgraphile" / "cli.js"),
            "--connection", connection, "--schema", "public",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--simple-collections", "both", "--dynamic-json", "--disable-query-log", *extra,
        ]
        self.env = {**os.environ, "NODE_ENV": "production"}

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, cwd=PEER, env=self.env, start_new_session=True,
                                        stdout=subprocess.DEVNULL)

    async def wait_ready(self, http: httpx.AsyncClient, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise SystemExit(f"server {self.name} exited with {self.process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                response = await http.post(f"{self.base_url}/graphql", json={"query": "{ __typename }"})
                if response.status_code == 200:
                    return
            await asyncio.sleep(0.3)
        raise SystemExit(f"server {self.name} did not answer within {timeout:.0f} s")

    def shown_command(self) -> str:
        """The command line with the run's secret and paths left out."""
        shown, hide = [], False
        for part in self.command[1:]:
            shown.append("<secret>" if hide else part)
            hide = part == "--jwt-secret"
        shown[0] = "postgraphile"
        return " ".join("''" if part == "" else part for part in shown)


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise SystemExit("bench.peer needs Node.js (node and npm on PATH)")
    return node


def install_postgraphile() -> str:
    """``npm ci`` into bench/peer/node_modules unless it is there; PostGraphile's version."""
    cli = PEER / "node_modules" / "postgraphile" / "cli.js"
    if not cli.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit("bench.peer needs npm to install PostGraphile (bench/peer/package.json)")
        print("installing PostGraphile: npm ci in bench/peer …", flush=True)
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PEER, check=True)
    package = json.loads((PEER / "node_modules" / "postgraphile" / "package.json").read_text())
    return str(package["version"])


# --------------------------------------------------------------------------- PostgreSQL backends


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


def _descendants(root: int) -> list[int]:
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(_children(pid))
    return out


def _stat(pid: int) -> tuple[int, float] | None:
    """(start time in clock ticks, CPU seconds: user + system) of a process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[19]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_BACKEND = re.compile(rb"^postgres: (?:[^:]+: )?(\S+) (\S+) (\S+)\((\d+)\)")


class Backends:
    """The CPU of the PostgreSQL backends serving each server, read from /proc.

    A backend's process title names its database and its client's address and port; the port
    is matched with the sockets the server's processes hold (/proc/net/tcp, /proc/<pid>/fd).
    Read every ``BACKEND_POLL`` seconds while the load runs, so a backend that ends during a
    phase (a pool closing a connection) keeps the CPU last read: what it spent after that read
    is missed, and so is a backend that lived less than one interval (counted in
    ``started``). The server must run on this machine (``/proc`` of the postmaster)."""

    def __init__(self, postmaster: int, database: str, servers: dict[str, Server]) -> None:
        self.postmaster, self.database, self.servers = postmaster, database.encode(), servers
        self.owner: dict[tuple[int, int], str | None] = {}  # (pid, start) → server name
        self.cpu: dict[tuple[int, int], float] = {}
        self.started: dict[str, int] = defaultdict(int)
        self.seen = 0  # backends of the database seen at all (any owner)

    def poll(self) -> None:
        unknown: dict[tuple[int, int], int] = {}
        for pid in _children(self.postmaster):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0 ")
            except OSError:
                continue
            match = _BACKEND.match(title)
            if match is None or match.group(2) != self.database:
                continue
            stat = _stat(pid)
            if stat is None:
                continue
            key = (pid, stat[0])
            if key not in self.cpu:
                self.seen += 1
            self.cpu[key] = stat[1]
            if key not in self.owner:
                unknown[key] = int(match.group(4))
        if unknown:
            by_port = self._ports()
            for key, port in unknown.items():
                owner = by_port.get(port)
                self.owner[key] = owner
                if owner is not None:
                    self.started[owner] += 1

    def _ports(self) -> dict[int, str]:
        """Local port of each TCP connection a server's processes hold → the server's name."""
        inodes: dict[str, str] = {}
        for name, server in self.servers.items():
            if server.process is None:
                continue
            for pid in _descendants(server.process.pid):
                with contextlib.suppress(OSError):
                    for fd in Path(f"/proc/{pid}/fd").iterdir():
                        with contextlib.suppress(OSError):
                            target = os.readlink(fd)
                            if target.startswith("socket:["):
                                inodes[target[8:-1]] = name
        ports: dict[int, str] = {}
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError):
                for line in Path(table).read_text().splitlines()[1:]:
                    fields = line.split()
                    if fields[9] in inodes:
                        ports[int(fields[1].rsplit(":", 1)[1], 16)] = inodes[fields[9]]
        return ports

    def seconds(self, server: str) -> float:
        """CPU seconds used so far by the backends of ``server`` (ended ones included)."""
        return sum(cpu for key, cpu in self.cpu.items() if self.owner.get(key) == server)

    async def watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.poll()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), BACKEND_POLL)


# --------------------------------------------------------------------------- load


@dataclass(frozen=True)
class Call:
    """One benchmark request, as the bytes of an HTTP/1.1 request."""

    path: str
    body: bytes
    headers: dict[str, str]

    def raw(self, port: int) -> bytes:
        lines = [f"POST {self.path} HTTP/1.1", f"host: 127.0.0.1:{port}",
                 f"content-length: {len(self.body)}", *(f"{k}: {v}" for k, v in self.headers.items())]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


def graphql_call(query: str, variables: dict[str, Any], token: str | None) -> Call:
    headers = {"content-type": "application/json"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return Call("/graphql", json.dumps({"query": query, "variables": variables}).encode(), headers)


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> tuple[int, bytes]:
    """One keep-alive HTTP/1.1 request and its whole response (Content-Length or chunked).

    The load generator shares the 2 cores with the servers: this costs a fraction of an httpx
    request, so the small header query measures the servers rather than the client."""
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    headers = head.lower()
    match = re.search(rb"\r\ncontent-length: *(\d+)", headers)
    if match is not None:
        return status, await reader.readexactly(int(match.group(1)))
    if b"transfer-encoding: chunked" not in headers:
        raise RuntimeError("response without a length")
    chunks = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return status, b"".join(chunks)
        chunks.append(chunk[:-2])


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    server_cpu: float = 0.0
    backend_cpu: float = 0.0
    client_cpu: float = 0.0
    failures: int = 0

    @property
    def requests(self) -> int:
        return len(self.latencies)

    def per_request(self, seconds: float) -> float:
        return seconds / self.requests * 1e3 if self.requests else float("nan")

    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def mean(self) -> float:
        return statistics.fmean(self.latencies) * 1e3

    def percentile(self, p: int) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1e3


async def drive(server: Server, call: Call, clients: int, duration: float, backends: Backends,
                stats: Stats | None) -> None:
    """``clients`` keep-alive connections posting ``call`` for ``duration`` seconds; latencies
    and the CPU used (server tree, its PostgreSQL backends, this process) into ``stats``."""
    raw = call.raw(server.port)
    backends.poll()
    cpu, backend_cpu, client_cpu = server.cpu_seconds(), backends.seconds(server.name), time.process_time()
    started = time.perf_counter()
    deadline = started + duration

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            while time.perf_counter() < deadline:
                begin = time.perf_counter()
                status, body = await _exchange(reader, writer, raw)
                elapsed = time.perf_counter() - begin
                if stats is not None:
                    stats.latencies.append(elapsed)
                    if status != 200 or b'"errors":' in body:
                        stats.failures += 1
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    await asyncio.gather(*(client() for _ in range(clients)))
    if stats is not None:
        stats.seconds += time.perf_counter() - started
        backends.poll()
        stats.server_cpu += server.cpu_seconds() - cpu
        stats.backend_cpu += backends.seconds(server.name) - backend_cpu
        stats.client_cpu += time.process_time() - client_cpu


# --------------------------------------------------------------------------- the database


@contextlib.contextmanager
def peer_role(server_url: str) -> Iterator[str]:
    """A NOLOGIN role for the RLS peer, dropped on the way out (roles belong to the whole
    server: drop it after the database that holds its grants)."""
    role = f"linkgate_peer_{secrets.token_hex(6)}"
    asyncio.run(_admin(server_url, f'CREATE ROLE "{role}" NOLOGIN'))
    try:
        yield role
    finally:
        asyncio.run(_admin(server_url, f'DROP ROLE IF EXISTS "{role}"'))


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(url: str, script: str) -> list[Any]:
    connection = await asyncpg.connect(_dsn(url))
    try:
        if script.lstrip().upper().startswith("SELECT"):
            return list(await connection.fetch(script))
        await connection.execute(script)
        return []
    finally:
        await connection.close()


async def apply_policies(url: str, role: str) -> None:
    """bench/peer/rls.sql for ``role``, then a check that its vocabulary is auth/permissions.py's."""
    await _admin(url, (PEER / "rls.sql").read_text().replace("PEER_ROLE", f'"{role}"'))
    order = [row[0] for row in await _admin(
        url, "SELECT permission FROM peer_private.permissions ORDER BY position")]
    scopes = {(row[0], row[1]) for row in await _admin(
        url, "SELECT kind, permission FROM peer_private.link_scopes")}
    staff = {(row[0], row[1]) for row in await _admin(
        url, "SELECT role, permission FROM peer_private.staff_permissions")}
    if (order != [p.value for p in Permission]
            or scopes != {(k.value, p.value) for k, ps in LINK_SCOPES.items() for p in ps}
            or staff != {(r.value, p.value) for r, ps in STAFF_PERMISSIONS.items() for p in ps}):
        raise SystemExit("bench/peer/rls.sql: the permission vocabulary differs from "
                         "auth/permissions.py (Permission, LINK_SCOPES, STAFF_PERMISSIONS)")


async def _sessions(url: str) -> int:
    return int((await _admin(url, "SELECT sessions FROM pg_stat_database "
                                  "WHERE datname = current_database()"))[0][0])


async def _postmaster(url: str) -> int:
    """The pid of the PostgreSQL server's postmaster (the parent of a backend), which must
    run on this machine: its backends' CPU is read from /proc."""
    connection = await asyncpg.connect(_dsn(url))
    try:
        stat = Path(f"/proc/{await connection.fetchval('SELECT pg_backend_pid()')}/stat")
        if not stat.exists():
            raise SystemExit("bench.peer reads the PostgreSQL backends' CPU from /proc: the "
                             "server must run on this machine")
        return int(stat.read_text().rsplit(")", 1)[1].split()[1])
    finally:
        await connection.close()


# --------------------------------------------------------------------------- the run


@dataclass
class Calls:
    """Every server's two requests for a token (rebuilt when the token is refreshed)."""

    by_server: dict[str, dict[str, Call]]

    @classmethod
    def build(cls, token: str, owner_id: int, number: str) -> Calls:
        auth = {"authorization": f"Bearer {token}"}
        return cls({
            "gateway": {"dashboard": graphql_call(DASHBOARD, {"first": FIRST}, token),
                        "header": graphql_call(ACCOUNT_HEADER, {"number": number}, token)},
            "floor": {"dashboard": Call(f"/dashboard?first={FIRST}", b"", auth),
                      "header": Call(f"/header?number={number}", b"", auth)},
            "PostGraphile": {"dashboard": graphql_call(PG_DASHBOARD, {"owner": str(owner_id), "first": FIRST}, None),
                             "header": graphql_call(PG_HEADER, {"number": number}, None)},
            "PostGraphile RLS": {"dashboard": graphql_call(RLS_DASHBOARD, {"first": FIRST}, token),
                                 "header": graphql_call(RLS_HEADER, {"number": number}, token)},
        })


async def _post(http: httpx.AsyncClient, server: Server, call: Call) -> tuple[dict[str, Any], int]:
    response = await http.post(server.base_url + call.path, content=call.body, headers=call.headers)
    if response.status_code != 200:
        raise SystemExit(f"{server.name}: HTTP {response.status_code}: {response.text[:300]}")
    body = response.json()
    if body.get("errors"):
        raise SystemExit(f"{server.name}: {body['errors'][:2]}")
    return body["data"], len(response.content)


async def check_answers(http: httpx.AsyncClient, servers: dict[str, Server], calls: Calls,
                        clerk: Calls) -> dict[tuple[str, str], int]:
    """The same rows from every server (exit 1 otherwise); response sizes."""
    answers: dict[tuple[str, str], Any] = {}
    sizes: dict[tuple[str, str], int] = {}
    for name, server in servers.items():
        for query in QUERIES:
            answers[(name, query)], sizes[(name, query)] = await _post(http, server, calls.by_server[name][query])
    problems: list[str] = []
    if answers[("gateway", "dashboard")] != answers[("floor", "dashboard")]:
        problems.append("floor dashboard: its JSON differs from the gateway's")
    if answers[("gateway", "header")] != answers[("floor", "header")]:
        problems.append("floor header: its JSON differs from the gateway's")
    expected = gateway_rows(answers[("gateway", "dashboard")])
    expected_header = header_rows(answers[("gateway", "header")]["viewer"]["account"])
    if len(expected["accounts"]) != FIRST:
        problems.append(f"the gateway's dashboard holds {len(expected['accounts'])} accounts, not {FIRST}")
    for name in ("PostGraphile", "PostGraphile RLS"):
        skip = NOT_COMPARED[name]
        problems += [f"{name} dashboard: {d}" for d in differences(
            expected, postgraphile_rows(answers[(name, "dashboard")]), skip)]
        problems += [f"{name} header: {d}" for d in differences(
            expected_header, header_rows(answers[(name, "header")]["accountByNumber"]), skip)]
    # The sub-account: rights on some heads, flowing to members through BILLING and
    # MANAGEMENT groups, TICKETS_READ directly on others. The gateway answers denied fields
    # with errors and nulls; the policies with no rows.
    gateway_clerk = await http.post(servers["gateway"].base_url + "/graphql",
                                    content=clerk.by_server["gateway"]["dashboard"].body,
                                    headers=clerk.by_server["gateway"]["dashboard"].headers)
    rls_clerk, _ = await _post(http, servers["PostGraphile RLS"], clerk.by_server["PostGraphile RLS"]["dashboard"])
    clerk_expected = gateway_rows(gateway_clerk.json()["data"])
    clerk_found = postgraphile_rows(rls_clerk)
    problems += [f"PostGraphile RLS, the clerk's dashboard: {d}" for d in differences(
        clerk_expected, clerk_found, NOT_COMPARED["PostGraphile RLS (clerk)"])]
    if problems:
        print("\nThe answers differ:", *problems[:40], sep="\n  ", file=sys.stderr)
        raise SystemExit(1)
    accounts = expected["accounts"].values()
    print(f"answers checked: {len(expected['accounts'])} accounts, "
          f"{sum(len(a['invoices']) for a in accounts):,} invoices, "
          f"{sum(len(a['ledger']) for a in accounts):,} ledger entries, "
          f"{sum(len(a['tickets']) for a in accounts):,} tickets, "
          f"{sum(len(a['ticket messages']) for a in accounts):,} messages, "
          f"{sum(len(a['invoice lines']) for a in accounts):,} invoice lines, "
          f"{sum(len(a['link groups']) for a in accounts):,} link-group places the same on every "
          f"server; the clerk sees {len(clerk_expected['accounts'])} accounts with the same "
          f"permissions and rows through the policies", flush=True)
    return sizes


@dataclass
class Result:
    stats: dict[tuple[str, str], Stats]
    sizes: dict[tuple[str, str], int]
    servers: dict[str, Server]
    backends: Backends
    load: list[float]
    seeded: Any
    versions: dict[str, str]
    opened: tuple[int, int]  # PostgreSQL sessions opened while measuring; of those, seen in /proc


async def run(url: str, role: str, seeded: Any, options: Options, versions: dict[str, str]) -> Result:
    secret = secrets.token_urlsafe(48)
    engine = create_engine(url)
    servers: dict[str, Server] = {}
    try:
        async def tokens() -> tuple[Calls, Calls]:
            owner = await bench_token(engine, secret, seeded.owner_id)
            clerk = await bench_token(engine, secret, seeded.sub_account_id)
            return (Calls.build(owner, seeded.owner_id, seeded.header_number),
                    Calls.build(clerk, seeded.sub_account_id, seeded.header_number))

        calls, clerk = await tokens()
        minted = time.monotonic()
        servers = {
            "gateway": Server("gateway", ["linkgate.asgi:app"], url, secret, 1),
            "floor": Server("floor", ["--factory", "bench.peer:create_floor_app"], url, secret, 1),
            "PostGraphile": PostGraphileServer("PostGraphile", url, []),
            "PostGraphile RLS": PostGraphileServer("PostGraphile RLS", url, [
                "--jwt-secret", secret, "--jwt-verify-issuer", "linkgate",
                "--jwt-verify-audience", "", "--default-role", role]),
        }
        for name in ("gateway", "floor"):
            # No access line per request, as PostGraphile runs with --disable-query-log.
            servers[name].env["LINKGATE_LOG_LEVEL"] = "WARNING"
        for server in servers.values():
            server.start()
        backends = Backends(await _postmaster(url), make_url(url).database or "", servers)
        async with httpx.AsyncClient(timeout=120, trust_env=False) as http:
            for server in servers.values():
                await server.wait_ready(http)
            sizes = await check_answers(http, servers, calls, clerk)

        phases = [(name, query) for query in QUERIES for name in SERVERS]
        stats: dict[tuple[str, str], Stats] = defaultdict(Stats)
        load: list[float] = [os.getloadavg()[0]]
        stop = asyncio.Event()
        watcher = asyncio.create_task(backends.watch(stop))
        memory = asyncio.create_task(_sample_memory(list(servers.values()), stop))
        try:
            for name, query in phases:  # every server warm: pools open, caches filled
                await drive(servers[name], calls.by_server[name][query], options.clients,
                            options.warmup, backends, None)
            sessions, seen = await _sessions(url), backends.seen
            for round_ in range(options.rounds):
                for name, query in phases if round_ % 2 == 0 else phases[::-1]:
                    if time.monotonic() - minted + options.duration > TOKEN_LIFETIME:
                        calls, _ = await tokens()
                        minted = time.monotonic()
                    await drive(servers[name], calls.by_server[name][query], options.clients,
                                options.duration, backends, stats[(name, query)])
                    load.append(os.getloadavg()[0])
                print(f"  round {round_ + 1}/{options.rounds} done (load average "
                      f"{os.getloadavg()[0]:.2f})", flush=True)
            backends.poll()
            # Sessions opened while measuring (pg_stat_database, less this query's own) and
            # how many of them /proc saw: a backend shorter than BACKEND_POLL is not counted.
            opened = (await _sessions(url), backends.seen - seen)
            opened = (opened[0] - sessions - 1, opened[1])
        finally:
            stop.set()
            await asyncio.gather(watcher, memory, return_exceptions=True)
        return Result(stats, sizes, servers, backends, load, seeded, versions, opened)
    finally:
        for server in servers.values():
            server.stop()
        await engine.dispose()


async def _sample_memory(servers: list[Server], stop: asyncio.Event) -> None:
    """Peak RSS of each server's process tree, one pass over /proc a second."""
    page = os.sysconf("SC_PAGE_SIZE")
    while not stop.is_set():
        for server in servers:
            if server.process is not None:
                resident = 0
                for pid in _descendants(server.process.pid):
                    with contextlib.suppress(OSError, IndexError, ValueError):
                        resident += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
                server.peak_rss = max(server.peak_rss, resident)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


# --------------------------------------------------------------------------- the report


def report(result: Result, options: Options, command: str, seconds: float) -> tuple[str, int]:
    stats = result.stats
    seeded = result.seeded
    v = result.versions

    def cell(name: str, query: str, measure: Callable[[Stats], float], digits: int = 1) -> str:
        item = stats.get((name, query))
        if item is None or not item.requests:
            return "–"
        return f"{measure(item):,.{digits}f}"

    def total(item: Stats) -> float:
        return item.per_request(item.server_cpu + item.backend_cpu)

    measures: list[tuple[str, Callable[[Stats], float], int]] = [
        ("**CPU ms/request** (server + PostgreSQL)", total, 2),
        ("server CPU ms/request", lambda s: s.per_request(s.server_cpu), 2),
        ("PostgreSQL backends' CPU ms/request", lambda s: s.per_request(s.backend_cpu), 2),
        (f"req/s, {options.clients} clients", Stats.rps, 1),
        ("mean latency ms", Stats.mean, 1),
        ("p50 latency ms", lambda s: s.percentile(50), 1),
        ("p95 latency ms", lambda s: s.percentile(95), 1),
    ]
    load = result.load
    out = [
        f"### `{command}`",
        "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {seconds:.0f} s in all; "
        f"{os.cpu_count()} cores, 1-minute load average {min(load):.2f}–{max(load):.2f} during the "
        f"phases (mean {statistics.fmean(load):.2f}); one server process each; {options.clients} "
        f"concurrent keep-alive clients, {options.rounds} rounds × {options.duration:g} s per phase "
        f"(after {options.warmup:g} s warm-up each), phases interleaved, the order reversed every "
        f"other round.",
        "",
        f"Versions: Python {v['python']}, uvicorn {v['uvicorn']}, strawberry-graphql {v['strawberry']}, "
        f"graphql-core {v['graphql-core']}, SQLAlchemy {v['sqlalchemy']}, asyncpg {v['asyncpg']}; "
        f"Node.js {v['node']}, PostGraphile {v['postgraphile']}; PostgreSQL {v['postgresql']}.",
        "",
        f"Data (scale {options.scale:g}, seeded in {seeded.seconds:.1f} s): "
        + ", ".join(f"{count:,} {table}" for table, count in seeded.rows.items()) + ".",
        "",
        "| query | measure | gateway | floor | PostGraphile | PostGraphile RLS | gateway/PostGraphile "
        "| gateway/floor | gateway/PostGraphile RLS |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for query in QUERIES:
        for label, measure, digits in measures:
            row = [cell(name, query, measure, digits) for name in SERVERS]
            ratios = []
            for other in ("PostGraphile", "floor", "PostGraphile RLS"):
                a, b = stats.get(("gateway", query)), stats.get((other, query))
                ratios.append(f"{measure(a) / measure(b):.2f}" if a and b and a.requests and b.requests
                              and measure(b) else "–")
            out.append(f"| {query} | {label} | " + " | ".join(row) + " | " + " | ".join(ratios) + " |")
    out += [
        "",
        "| server | query | requests | failures | client CPU ms/request | backends started "
        "| response | peak RSS |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    failures = 0
    for query in QUERIES:
        for name in SERVERS:
            item = stats.get((name, query))
            if item is None:
                continue
            failures += item.failures
            out.append(
                f"| {name} | {query} | {item.requests:,} | {item.failures} | "
                f"{item.per_request(item.client_cpu):.2f} | {result.backends.started.get(name, 0)} | "
                f"{result.sizes.get((name, query), 0) / 1024:.1f} KiB | "
                f"{result.servers[name].peak_rss / 2**20:.0f} MiB |")
    out += [
        "",
        "PostGraphile, exactly as started (the secret left out):",
        "",
        "```",
        *(f"NODE_ENV=production {result.servers[name].shown_command()}"  # type: ignore[attr-defined]
          for name in ("PostGraphile", "PostGraphile RLS")),
        "```",
        "",
        f"Failures (non-200 or a GraphQL error): {failures}. *Backends started* counts, over the "
        "whole run (warm-up included), the PostgreSQL connections each server opened (pools "
        "opening, growing again after shrinking, or reopening after an idle timeout). While "
        f"measuring, PostgreSQL counted {result.opened[0]:,} new sessions in the database; "
        f"{result.opened[1]:,} new backends were seen in /proc (a backend that lives less than "
        f"{BACKEND_POLL:g} s may not be, and its CPU is then not counted).",
        "",
    ]
    return "\n".join(out), 1 if failures else 0


# --------------------------------------------------------------------------- command line


def parse(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peer", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--database-url", required=True,
                        help="a PostgreSQL server on this machine (postgresql+asyncpg://…): a new "
                        "database and a role are created on it and dropped afterwards")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="background data, 1.0 = 10,000 accounts, 1M ledger entries (as bench.gateway)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument("--duration", type=float, default=20, help="seconds per phase and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of interleaved phases")
    parser.add_argument("--warmup", type=float, default=3, help="unmeasured seconds per phase first")
    parser.add_argument("--markdown", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not args.database_url.startswith("postgresql"):
        parser.error("--database-url must be a postgresql+asyncpg:// server URL")
    if not (0 < args.scale <= 100 and 1 <= args.clients <= 256 and 0 < args.duration <= 600
            and 1 <= args.rounds <= 20 and 0 <= args.warmup <= 60):
        parser.error("out of range: 0 < scale ≤ 100, clients 1–256, 0 < duration ≤ 600, "
                     "rounds 1–20, warmup 0–60")
    return Options(args.database_url, args.scale, args.clients, args.duration, args.rounds,
                   args.warmup, args.markdown)


def _versions(postgraphile: str, url: str) -> dict[str, str]:
    from importlib.metadata import version

    node = subprocess.run([_node(), "--version"], capture_output=True, text=True, check=True).stdout
    server = asyncio.run(_admin(url, "SELECT current_setting('server_version')"))[0][0]
    return {"python": platform.python_version(), "uvicorn": version("uvicorn"),
            "strawberry": version("strawberry-graphql"), "graphql-core": version("graphql-core"),
            "sqlalchemy": version("sqlalchemy"), "asyncpg": version("asyncpg"),
            "node": node.strip().lstrip("v"), "postgraphile": postgraphile, "postgresql": server}


def _terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds like Ctrl-C: servers stopped, database dropped


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    command = ("python -m bench.peer " + " ".join(sys.argv[1:] if argv is None else argv)).strip()
    signal.signal(signal.SIGTERM, _terminate)
    started = time.perf_counter()
    postgraphile = install_postgraphile()
    versions = _versions(postgraphile, options.database_url)
    with peer_role(options.database_url) as role, temporary_database(options.database_url) as url:
        upgrade_database(url)
        seeded = asyncio.run(_seed(url, options.scale))
        print(f"seeded scale {options.scale:g} in {seeded.seconds:.1f} s: "
              + ", ".join(f"{n:,} {t}" for t, n in seeded.rows.items()), flush=True)
        asyncio.run(apply_policies(url, role))
        result = asyncio.run(run(url, role, seeded, options, versions))
        text, status = report(result, options, command, time.perf_counter() - started)
    print()
    print(text)
    if options.markdown is not None:
        options.markdown.write_text(text + "\n", encoding="utf-8")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
