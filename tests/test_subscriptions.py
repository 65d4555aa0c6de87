"""Live updates over graphql-transport-ws against real server processes (issue 14, part 1).

On PostgreSQL two uvicorn processes share the database: a subscriber on one hears what is
committed on the other (``LISTEN/NOTIFY``). On SQLite one process serves both roles (events
stay in the process that commits them). Every event is filtered by the subscriber's rights
as they are when it is delivered; a socket whose session ends is closed; bad sockets get a
close code, and nothing is left behind on the server."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import asyncpg
import jwt
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.tokens import issue_token
from linkgate.event_bus import install_commit_hooks
from schema.relay import encode_global_id
from tests import billing_world
from tests.conftest import TEST_SECRET, GraphQLClient
from tests.customers import Customer, new_customer, new_sub_account, pk
from tests.live_client import Live, eventually, gauge
from tests.servers import UVICORN, clean_environment, clients_of, running_server
from tests.test_credit_concurrency import ON_POSTGRESQL

RECHECK_SECONDS = 1
PER_USER, PER_SOCKET = 4, 3
QUEUE_SIZE = 5

TICKETS = """subscription($a: ID) { ticketUpdated(accountId: $a) {
  ticket { id number status subject } message { body authorKind } } }"""
CREDITS = """subscription($a: ID) { creditBalanceChanged(accountId: $a) {
  account { number creditBalance } entry { delta balanceAfter kind } } }"""
ISSUED = "subscription($a: ID) { invoiceIssued(accountId: $a) { number status total { amount } } }"
UPDATED = "subscription($a: ID) { invoiceUpdated(accountId: $a) { number status amountDue { amount } } }"

OPEN_TICKET = """mutation($input: OpenTicketInput!) { openTicket(input: $input) {
  ticket { id number } userErrors { code } } }"""
REPLY = """mutation($input: ReplyToTicketInput!) { replyToTicket(input: $input) { userErrors { code } } }"""
CLOSE = """mutation($input: CloseTicketInput!) { closeTicket(input: $input) { userErrors { code } } }"""
PURCHASE = """mutation($input: PurchaseCreditsInput!) { purchaseCredits(input: $input) {
  userErrors { code } } }"""
SET_PERMISSIONS = """mutation($input: SetSubAccountPermissionsInput!) {
  setSubAccountPermissions(input: $input) { userErrors { code } } }"""
LOGOUT = "mutation { logout(input: {everywhere: true}) { ok } }"
ADD_CARD = """mutation($input: AddPaymentMethodInput!) { addPaymentMethod(input: $input) {
  paymentMethod { id } userErrors { code } } }"""
PAY = """mutation($input: PayInvoiceInput!) { payInvoice(input: $input) {
  invoice { status } userErrors { code } } }"""


@pytest.fixture(scope="module")
def replicas(database_url: str) -> Iterator[list[str]]:
    """Two server processes on PostgreSQL; on SQLite the one process twice."""
    environment = clean_environment(
        LINKGATE_DATABASE_URL=database_url, LINKGATE_SECRET_KEY=TEST_SECRET,
        LINKGATE_PAYMENT_GATEWAY="test", LINKGATE_MAIL_LINKS_PER_CLIENT="1000000",
        LINKGATE_LOGIN_CLIENT_MAX_FAILURES="1000000",
        LINKGATE_SUBSCRIPTION_RECHECK_SECONDS=str(RECHECK_SECONDS),
        LINKGATE_MAX_SUBSCRIPTIONS_PER_USER=str(PER_USER),
        LINKGATE_MAX_SUBSCRIPTIONS_PER_SOCKET=str(PER_SOCKET),
        LINKGATE_SUBSCRIPTION_QUEUE_SIZE=str(QUEUE_SIZE),
        LINKGATE_SUBSCRIPTION_INIT_TIMEOUT_SECONDS="1",
        LINKGATE_MAX_TICKET_BODY_CHARS="100000",
    )
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(running_server(UVICORN, environment=environment))
        servers = [first]
        if ON_POSTGRESQL:
            servers.append(stack.enter_context(running_server(UVICORN, environment=environment)))
        yield [server.base for server in servers] * (2 // len(servers))
    for server in servers:
        assert "Traceback" not in server.output, server.output[-4000:]
        assert " ERROR " not in server.output, server.output[-4000:]


@pytest.fixture
async def clients(replicas: list[str], engine: AsyncEngine) -> AsyncIterator[list[GraphQLClient]]:
    async with clients_of(replicas, engine, timeout=60) as graphql_clients:
        yield graphql_clients


@pytest.fixture
async def customer(clients: list[GraphQLClient]) -> Customer:
    return await new_customer(clients[1], "Live Holdings")


async def ok(client: GraphQLClient, query: str, input: dict[str, Any], token: str) -> dict[str, Any]:
    result = await client.execute(query, {"input": input}, token=token)
    assert "errors" not in result, result
    payload = next(iter(result["data"].values()))
    assert payload.get("userErrors", []) == [], payload
    return payload


async def buy(client: GraphQLClient, customer: Customer, credits: int = 10) -> None:
    await ok(client, PURCHASE, {"accountId": customer.account.id, "credits": credits,
                                "idempotencyKey": uuid.uuid4().hex}, customer.token)


def data(message: dict[str, Any], operation_id: str) -> dict[str, Any]:
    assert message["type"] == "next" and message["id"] == operation_id, message
    assert "errors" not in message["payload"], message
    return message["payload"]["data"]


# --- events reach every replica, filtered per subscriber ------------------------------------

async def test_a_ticket_change_committed_on_one_replica_reaches_a_subscriber_on_the_other(
    replicas: list[str], clients: list[GraphQLClient], customer: Customer
) -> None:
    live = await Live.open(replicas[0], customer.token)
    try:
        await live.subscribe("t", TICKETS, {"a": customer.account.id})
        await asyncio.sleep(0.3)  # the subscription is registered before the change commits
        opened = await ok(clients[1], OPEN_TICKET, {"accountId": customer.account.id,
                                                    "subject": "Printer on fire", "body": "Send help"},
                          customer.token)
        event = data(await live.next(), "t")["ticketUpdated"]
        assert event["ticket"]["number"] == opened["ticket"]["number"]
        assert event["message"] == {"body": "Send help", "authorKind": "CUSTOMER"}
        await ok(clients[1], REPLY, {"ticketId": opened["ticket"]["id"], "body": "Still burning"}, customer.token)
        assert data(await live.next(), "t")["ticketUpdated"]["message"]["body"] == "Still burning"
        await ok(clients[1], CLOSE, {"ticketId": opened["ticket"]["id"]}, customer.token)
        closed = data(await live.next(), "t")["ticketUpdated"]
        assert closed["ticket"]["status"] == "CLOSED" and closed["message"] is None
    finally:
        await live.close()


async def test_each_event_is_checked_against_the_subscribers_rights_when_it_is_delivered(
    replicas: list[str], clients: list[GraphQLClient], customer: Customer
) -> None:
    """The owner and a billing sub-account hear of credits; a technical sub-account never
    does; once the billing sub-account loses CREDITS_READ, the next event passes it by."""
    technical = await new_sub_account(clients[0], customer.token, customer.account.id,
                                      ["SERVICES_READ", "TICKETS_READ"])
    billing = await new_sub_account(clients[0], customer.token, customer.account.id,
                                    ["CREDITS_READ", "INVOICES_READ"])
    sockets = [await Live.open(replicas[0], token) for token in (customer.token, billing.token, technical.token)]
    owner_live, billing_live, technical_live = sockets
    try:
        for live in sockets:
            await live.subscribe("c", CREDITS)
        await asyncio.sleep(0.3)
        await buy(clients[1], customer, 10)
        for live in (owner_live, billing_live):
            event = data(await live.next(), "c")["creditBalanceChanged"]
            assert event["entry"]["delta"] == 10 and event["account"]["number"] == customer.account.number
        await technical_live.silent_for(1)

        await ok(clients[1], SET_PERMISSIONS, {"accountId": customer.account.id, "userId": billing.user_id,
                                                "permissions": ["INVOICES_READ"]}, customer.token)
        await buy(clients[1], customer, 5)
        assert data(await owner_live.next(), "c")["creditBalanceChanged"]["entry"]["delta"] == 5
        await billing_live.silent_for(1)
        await technical_live.silent_for(0.2)

        # Granted again: heard once the rights are read again (at most RECHECK_SECONDS later).
        await ok(clients[1], SET_PERMISSIONS, {"accountId": customer.account.id, "userId": billing.user_id,
                                                "permissions": ["CREDITS_READ", "INVOICES_READ"]}, customer.token)
        await asyncio.sleep(RECHECK_SECONDS + 0.5)
        await buy(clients[1], customer, 7)
        assert data(await billing_live.next(), "c")["creditBalanceChanged"]["entry"]["delta"] == 7
    finally:
        for live in sockets:
            await live.close()


async def test_payments_reach_readers_of_invoices_and_no_one_else(
    replicas: list[str], clients: list[GraphQLClient], customer: Customer, engine: AsyncEngine
) -> None:
    technical = await new_sub_account(clients[0], customer.token, customer.account.id, ["TICKETS_READ"])
    invoice = await billing_world.issue_invoice(engine, pk(customer.account.id), subtotal=5_000)
    owner_live = await Live.open(replicas[0], customer.token)
    technical_live = await Live.open(replicas[0], technical.token)
    try:
        for live in (owner_live, technical_live):
            await live.subscribe("u", UPDATED, {"a": customer.account.id})
        await asyncio.sleep(0.3)
        card = await ok(clients[1], ADD_CARD, {"accountId": customer.account.id, "token": "tok_visa"}, customer.token)
        await ok(clients[1], PAY, {"invoiceId": encode_global_id("Invoice", invoice.id),
                                   "paymentMethodId": card["paymentMethod"]["id"],
                                   "idempotencyKey": uuid.uuid4().hex}, customer.token)
        paid = data(await owner_live.next(), "u")["invoiceUpdated"]
        assert paid == {"number": invoice.number, "status": "PAID", "amountDue": {"amount": 0}}
        await technical_live.silent_for(1)
    finally:
        await owner_live.close()
        await technical_live.close()


@pytest.mark.skipif(not ON_POSTGRESQL, reason="SQLite: an event stays in the process that commits it")
async def test_a_commit_from_another_process_reaches_the_servers(
    replicas: list[str], customer: Customer, engine: AsyncEngine
) -> None:
    """An invoice issued by a process that is not a server (as ``linkgate run-invoicing``
    is) reaches subscribers on both servers: NOTIFY goes with the commit, whoever commits."""
    install_commit_hooks()  # what every process that commits does (the CLI in ``main``)
    sockets = [await Live.open(base, customer.token) for base in replicas]
    try:
        for live in sockets:
            await live.subscribe("i", ISSUED)
        await asyncio.sleep(0.3)
        invoice = await billing_world.issue_invoice(engine, pk(customer.account.id), subtotal=7_000)
        for live in sockets:
            assert data(await live.next(), "i")["invoiceIssued"]["number"] == invoice.number
    finally:
        for live in sockets:
            await live.close()


async def test_an_account_filter_the_subscriber_cannot_see_is_not_found(
    replicas: list[str], customer: Customer, clients: list[GraphQLClient]
) -> None:
    stranger = await new_customer(clients[0], "Stranger Ltd")
    live = await Live.open(replicas[0], stranger.token)
    try:
        await live.subscribe("x", TICKETS, {"a": customer.account.id})
        refused = await live.answer("x")
        errors = refused["payload"] if refused["type"] == "error" else refused["payload"]["errors"]
        assert [e["extensions"]["code"] for e in errors] == ["NOT_FOUND"], refused
        await live.subscribe("y", TICKETS, {"a": "not-an-id"})
        bad = await live.answer("y")
        errors = bad["payload"] if bad["type"] == "error" else bad["payload"]["errors"]
        assert [e["extensions"]["code"] for e in errors] == ["BAD_USER_INPUT"], bad
        # The stranger's own changes still arrive on the same socket.
        await live.subscribe("z", TICKETS)
        await asyncio.sleep(0.3)
        await ok(clients[1], OPEN_TICKET, {"accountId": stranger.account.id, "subject": "Mine",
                                           "body": "ok"}, stranger.token)
        assert data(await live.answer("z"), "z")["ticketUpdated"]["ticket"]["subject"] == "Mine"
    finally:
        await live.close()


# --- the socket's session ---------------------------------------------------------------------

async def test_logging_out_closes_the_socket(replicas: list[str], clients: list[GraphQLClient]) -> None:
    someone = await new_customer(clients[0], "Leaving Ltd")
    live = await Live.open(replicas[0], someone.token)
    await live.subscribe("t", TICKETS)
    await clients[1].execute(LOGOUT, token=someone.token)
    closed = await live.closed(timeout=RECHECK_SECONDS + 5)
    assert closed.code == 4401, closed


async def test_an_expiring_token_closes_its_socket_and_cannot_open_another(
    replicas: list[str], clients: list[GraphQLClient]
) -> None:
    someone = await new_customer(clients[0], "Brief Ltd")
    claims = jwt.decode(someone.token, options={"verify_signature": False})
    brief = issue_token(user_id=int(claims["sub"]), token_version=claims["ver"], session_id=claims["sid"],
                        secret=TEST_SECRET, issuer=claims["iss"], ttl=timedelta(seconds=2))
    live = await Live.open(replicas[0], brief)
    await live.subscribe("t", TICKETS)
    closed = await live.closed(timeout=6)
    assert closed.code == 4401 and "expired" in closed.reason, closed
    late = await Live.connect(replicas[0])
    await late.send({"type": "connection_init", "payload": {"authorization": f"Bearer {brief}"}})
    assert (await late.closed()).code == 4403


# --- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("payload", [
    None, {}, {"authorization": "Bearer "}, {"authorization": "Bearer forged.token.here"},
    {"authorization": "Basic b2xpdmlhOmRlbW8="}, {"authorization": 12}, {"authorization": "Bearer " + "x" * 10_000},
])
async def test_a_socket_without_a_valid_token_is_refused(replicas: list[str], payload: Any) -> None:
    live = await Live.connect(replicas[0])
    message: dict[str, Any] = {"type": "connection_init"}
    if payload is not None:
        message["payload"] = payload
    await live.send(message)
    assert (await live.closed()).code == 4403


async def test_a_forged_signature_is_refused(replicas: list[str], customer: Customer) -> None:
    claims = jwt.decode(customer.token, options={"verify_signature": False})
    forged = jwt.encode(claims, "not-the-key-" + "k" * 40, algorithm="HS256")
    live = await Live.connect(replicas[0])
    await live.send({"type": "connection_init", "payload": {"authorization": f"Bearer {forged}"}})
    assert (await live.closed()).code == 4403


async def test_protocol_mistakes_get_their_close_codes(replicas: list[str], customer: Customer) -> None:
    early = await Live.connect(replicas[0])
    await early.subscribe("1", TICKETS)  # before connection_init
    assert (await early.closed()).code == 4401

    silent = await Live.connect(replicas[0])  # never sends connection_init
    assert (await silent.closed(timeout=5)).code == 4408

    unknown = await Live.open(replicas[0], customer.token)
    await unknown.send({"type": "shout"})
    assert (await unknown.closed()).code == 4400

    twice = await Live.open(replicas[0], customer.token)
    await twice.send({"type": "connection_init", "payload": {"authorization": f"Bearer {customer.token}"}})
    assert (await twice.closed()).code == 4429

    broken = await Live.open(replicas[0], customer.token)
    await broken.connection.send("{not json")
    assert (await broken.closed()).code == 4400

    syntax = await Live.open(replicas[0], customer.token)
    await syntax.subscribe("1", "subscription {")
    assert (await syntax.closed()).code == 4400


@pytest.mark.parametrize("message", [
    [], "x", 1, None, {"type": 5}, {"id": ["a"], "type": "subscribe", "payload": {"query": TICKETS}},
    {"id": "x" * 129, "type": "subscribe", "payload": {"query": TICKETS}},
    {"id": "s", "type": "subscribe", "payload": "subscription { x }"},
    {"id": "v", "type": "subscribe", "payload": {"query": TICKETS, "variables": [1]}},
    {"id": "o", "type": "subscribe", "payload": {"query": TICKETS, "operationName": 5}},
    {"id": {"a": 1}, "type": "complete"},
])
async def test_a_misshapen_message_closes_the_socket_with_4400(
    replicas: list[str], customer: Customer, message: Any
) -> None:
    live = await Live.open(replicas[0], customer.token)
    await live.connection.send(json.dumps(message))
    assert (await live.closed()).code == 4400


async def test_a_mutation_cannot_ride_along_with_a_subscription(
    replicas: list[str], customer: Customer, clients: list[GraphQLClient]
) -> None:
    """One document, a subscription and a mutation, the mutation chosen by operationName: the
    review ran mutations this way. Refused; nothing is renamed."""
    live = await Live.open(replicas[0], customer.token)
    try:
        await live.send({"id": "m", "type": "subscribe", "payload": {
            "operationName": "M",
            "query": "subscription S { ticketUpdated { ticket { id } } } "
                     "mutation M($i: RenameAccountInput!) { renameAccount(input: $i) { userErrors { code } } }",
            "variables": {"i": {"accountId": customer.account.id, "name": "Hijacked"}}}})
        refused = await live.answer("m")
        assert refused["type"] == "error" and refused["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    finally:
        await live.close()
    names = await clients[0].execute("query($n: String!) { viewer { account(number: $n) { name } } }",
                                     {"n": customer.account.number}, token=customer.token)
    assert names["data"]["viewer"]["account"]["name"] != "Hijacked"


async def test_a_stale_header_on_the_handshake_does_not_matter(replicas: list[str], customer: Customer) -> None:
    """The socket is signed in by connection_init only: a leftover (or forged) Authorization
    header on the upgrade request neither signs it in nor breaks its subscriptions."""
    live = await Live.open(replicas[0], customer.token, additional_headers={"Authorization": "Bearer garbage"})
    try:
        await live.subscribe("t", TICKETS)
        await live.silent_for(0.5)  # running, no error
    finally:
        await live.close()
    headed = await Live.connect(replicas[0], additional_headers={"Authorization": f"Bearer {customer.token}"})
    await headed.send({"type": "connection_init", "payload": {}})
    assert (await headed.closed()).code == 4403


async def test_sockets_per_user_are_limited(replicas: list[str], clients: list[GraphQLClient]) -> None:
    someone = await new_customer(clients[0], "Many Sockets Ltd")
    sockets = [await Live.open(replicas[0], someone.token) for _ in range(PER_USER)]
    try:
        extra = await Live.connect(replicas[0])
        await extra.send({"type": "connection_init", "payload": {"authorization": f"Bearer {someone.token}"}})
        assert (await extra.closed()).code == 4429
    finally:
        for live in sockets:
            await live.close()


async def test_only_subscriptions_run_over_the_socket(replicas: list[str], customer: Customer) -> None:
    live = await Live.open(replicas[0], customer.token)
    try:
        for index, query in enumerate(["{ viewer { user { email } } }",
                                       'mutation { logout(input: {everywhere: true}) { ok } }']):
            await live.subscribe(str(index), query)
            refused = await live.answer(str(index))
            assert refused["type"] == "error", refused
            assert refused["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        await live.subscribe("v", "subscription { ticketUpdated { nope } }")
        invalid = await live.answer("v")
        assert invalid["type"] == "error" and "nope" in invalid["payload"][0]["message"], invalid
        await live.subscribe("ok", TICKETS)  # the socket is still up and signed in
        await live.silent_for(0.3)
    finally:
        await live.close()


async def test_subscriptions_are_limited_per_socket_and_per_user(
    replicas: list[str], clients: list[GraphQLClient]
) -> None:
    someone = await new_customer(clients[0], "Greedy Ltd")
    first = await Live.open(replicas[0], someone.token)
    second = await Live.open(replicas[0], someone.token)
    try:
        for index in range(PER_SOCKET):
            await first.subscribe(f"a{index}", TICKETS)
        await first.subscribe("over", TICKETS)
        over = await first.answer("over")
        assert over["type"] == "error", over
        await second.subscribe("b0", TICKETS)  # PER_SOCKET + 1 = PER_USER
        await asyncio.sleep(0.3)
        await second.subscribe("b1", TICKETS)
        limited = await second.answer("b1")
        assert limited["type"] == "error" and limited["payload"][0]["extensions"]["code"] == "RATE_LIMITED", limited
        # Completing one frees a place.
        await first.send({"id": "a0", "type": "complete"})
        await asyncio.sleep(0.3)
        await second.subscribe("b2", TICKETS)
        await second.silent_for(0.5)
    finally:
        await first.close()
        await second.close()


async def test_a_flood_of_subscribe_messages_closes_the_socket(replicas: list[str], customer: Customer) -> None:
    live = await Live.open(replicas[0], customer.token)
    for index in range(40):
        await live.subscribe(f"f{index}", TICKETS)
        await live.send({"id": f"f{index}", "type": "complete"})
    assert (await live.closed()).code == 4429


async def test_a_socket_that_never_reads_is_cut_off_and_leaves_nothing_behind(
    replicas: list[str], clients: list[GraphQLClient], customer: Customer
) -> None:
    """Large events for a client that stopped reading: the server stops queueing after
    QUEUE_SIZE, cancels the subscription and drops the socket; other subscribers carry on."""
    base = replicas[0]
    before = await gauge(base, "linkgate_live_subscriptions")
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    port = int(base.rsplit(":", 1)[1])
    raw.connect(("127.0.0.1", port))
    stuck = await Live.open(base, customer.token, sock=raw, max_queue=1)
    await stuck.subscribe("t", TICKETS)
    watcher = await Live.open(replicas[1], customer.token)
    await watcher.subscribe("t", TICKETS)
    await asyncio.sleep(0.3)
    opened = await ok(clients[1], OPEN_TICKET, {"accountId": customer.account.id,
                                                "subject": "Big", "body": "start"}, customer.token)
    await watcher.next()
    stuck.connection.transport.pause_reading()  # the client stops reading: its buffers fill
    for _ in range(120):
        # ~8 MB in all after compression (permessage-deflate): more than the kernel and asyncio
        # buffers between them hold, so the server's sends to the stuck client block.
        big = secrets.token_urlsafe(67_000)
        await ok(clients[1], REPLY, {"ticketId": opened["ticket"]["id"], "body": big}, customer.token)
        assert data(await watcher.next(), "t")["ticketUpdated"]["message"]["body"] == big

    watcher_here = 1 if replicas[1] == base else 0  # SQLite: one process holds both

    async def back_to_before() -> bool:
        return await gauge(base, "linkgate_live_subscriptions") == (before or 0) + watcher_here

    assert await eventually(back_to_before, timeout=20)
    # Nothing the stuck socket did holds a database connection: requests are answered at once.
    async with asyncio.timeout(5):
        await clients[0].execute("{ viewer { user { email } } }", token=customer.token)
    in_use = await gauge(base, "linkgate_db_pool_connections_in_use")
    assert in_use is None or in_use <= 1, in_use
    await watcher.close()
    stuck.connection.transport.abort()  # closes ``raw`` with it


@pytest.mark.skipif(not ON_POSTGRESQL, reason="LISTEN/NOTIFY is PostgreSQL's")
async def test_one_listen_connection_per_process_that_comes_back_after_being_killed(
    replicas: list[str], clients: list[GraphQLClient], customer: Customer, database_url: str
) -> None:
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(dsn)
    try:
        async def listeners() -> list[int]:
            rows = await admin.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                     "AND application_name = 'linkgate-live'")
            return [row["pid"] for row in rows]

        old = await listeners()
        assert len(old) == 2, old  # one per server process, whatever the number of subscribers
        live = await Live.open(replicas[0], customer.token)
        await live.subscribe("c", CREDITS)
        for pid in old:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)

        async def relistening() -> bool:
            now = await listeners()
            return len(now) == 2 and not set(now) & set(old)

        assert await eventually(relistening, timeout=15)
        assert await eventually(lambda: gauge(replicas[0], "linkgate_live_listening"), timeout=5) == 1
        await buy(clients[1], customer, 3)
        assert data(await live.next(), "c")["creditBalanceChanged"]["entry"]["delta"] == 3
        assert (await gauge(replicas[0], "linkgate_live_listen_reconnects") or 0) >= 1
        await live.close()
    finally:
        await admin.close()


async def test_the_document_limits_hold_over_the_socket(replicas: list[str], customer: Customer) -> None:
    live = await Live.open(replicas[0], customer.token)
    try:
        wide = "subscription { ticketUpdated { ticket { " + " ".join(f"a{i}: id" for i in range(150)) + " } } }"
        many_tokens = TICKETS + " " + " ".join(f"query q{i} {{ __typename }}" for i in range(3000))
        two = "subscription a { ticketUpdated { ticket { id } } } subscription b { ticketUpdated { ticket { id } } }"
        for operation_id, query in [("wide", wide), ("tokens", many_tokens), ("two", two)]:
            await live.subscribe(operation_id, query)
            refused = await live.answer(operation_id)
            assert refused["type"] == "error", refused
            assert refused["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT", refused
        await live.subscribe("ok", TICKETS)  # still open
        await live.silent_for(0.3)
    finally:
        await live.close()


async def test_trusted_documents_only_holds_over_the_socket(
    database_url: str, tmp_path: Any, engine: AsyncEngine, tokens: dict[str, str]
) -> None:
    """With LINKGATE_TRUSTED_DOCUMENTS_ONLY a customer's socket runs only manifest documents;
    staff may run any, as over HTTP."""
    manifest = tmp_path / "persisted-documents.json"
    manifest.write_text(json.dumps({hashlib.sha256(TICKETS.encode()).hexdigest(): TICKETS}))
    environment = clean_environment(
        LINKGATE_DATABASE_URL=database_url, LINKGATE_SECRET_KEY=TEST_SECRET,
        LINKGATE_TRUSTED_DOCUMENTS=str(manifest), LINKGATE_TRUSTED_DOCUMENTS_ONLY="true",
    )
    with running_server(UVICORN, environment=environment) as server:
        customer = await Live.open(server.base, tokens["olivia"])
        staff = await Live.open(server.base, tokens["agent"])
        try:
            await customer.subscribe("trusted", TICKETS)
            await customer.subscribe("other", CREDITS)
            refused = await customer.answer("other")
            assert refused["type"] == "error" and refused["payload"][0]["extensions"].get("trustedDocumentsOnly"), refused
            await staff.subscribe("free", CREDITS)
            await staff.silent_for(0.5)  # accepted: no error
            await customer.silent_for(0.2)  # the trusted one runs quietly
        finally:
            await customer.close()
            await staff.close()
    assert "Traceback" not in server.output, server.output[-3000:]


@pytest.mark.parametrize(("query", "closes"), [
    ('subscription { ticketUpdated(accountId: "\\ud800") { ticket { id } } }', True),
    ("subscription { \\ud800 }", True),
    ("subscription { \\u0000 }", True),
    ('subscription { ticketUpdated(accountId: "a\\u0000b") { ticket { id } } }', False),
    ("subscription($a: ID) { ticketUpdated(accountId: $a) { ticket { id } } }", False),
])
async def test_nul_and_lone_surrogates_over_the_socket(
    replicas: list[str], customer: Customer, query: str, closes: bool
) -> None:
    """Written as raw JSON escapes, as a hostile client sends them: a syntax error closes the
    socket (4400, the protocol's rule); a bad value is that operation's BAD_USER_INPUT. The
    module's servers log no traceback (checked when they stop)."""
    live = await Live.open(replicas[0], customer.token)
    raw = ('{"id": "w", "type": "subscribe", "payload": {"query": "%s", "variables": {"a": "\\ud800\\u0000"}}}'
           % query.replace('"', '\\"'))
    await live.connection.send(raw)
    if closes:
        assert (await live.closed()).code == 4400
        return
    answer = await live.answer("w")
    errors = answer["payload"] if answer["type"] == "error" else answer["payload"]["errors"]
    assert [error["extensions"]["code"] for error in errors] == ["BAD_USER_INPUT"], answer
    await live.close()


async def test_zz_nothing_is_left_open_after_the_sockets_close(replicas: list[str], database_url: str) -> None:
    """Runs last in this module: every socket above is closed, so no subscription, socket,
    task or extra LISTEN connection remains on any server."""
    for base in dict.fromkeys(replicas):
        async def idle(base: str = base) -> bool:
            return (await gauge(base, "linkgate_live_subscriptions") == 0
                    and await gauge(base, "linkgate_live_sockets") == 0
                    and await gauge(base, "linkgate_live_tasks") == 0)

        assert await eventually(idle, timeout=15)
        if ON_POSTGRESQL:
            assert await gauge(base, "linkgate_live_listening") == 1
    if ON_POSTGRESQL:
        dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        admin = await asyncpg.connect(dsn)
        try:
            listening = await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE "
                                             "datname = current_database() AND application_name = 'linkgate-live'")
        finally:
            await admin.close()
        assert listening == len(set(replicas)), listening  # one per process, none per subscriber
