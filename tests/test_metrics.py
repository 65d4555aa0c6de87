"""Prometheus metrics (``GET /metrics``, ``linkgate.metrics``), read back through the real app:
the exposition is parsed and values are compared before and after what a test sends."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from linkgate.app import create_app
from linkgate.metrics import MAX_OPERATION_LABELS, OTHER_LABEL
from linkgate.settings import Settings
from models.base import utcnow
from models.database import create_engine, create_session_factory
from models.notifications import Notification
from tests.conftest import TEST_SECRET, GraphQLClient, client_for
from tests.customers import new_customer, unique_email
from tests.servers import LINKGATE, UVICORN, clean_environment, run_cli, running_server

LOGIN = "mutation($input: LoginInput!) { login(input: $input) { token userErrors { code } } }"
CHANGE_PASSWORD = """
mutation($input: ChangePasswordInput!) { changePassword(input: $input) { token userErrors { code } } }
"""
METRICS_TOKEN = "metrics-token-0123456789abcdef"


class Scrape:
    """One parsed exposition."""

    def __init__(self, text: str) -> None:
        self.samples = [
            sample for family in text_string_to_metric_families(text) for sample in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples called ``name`` whose labels include ``labels`` (0 if none)."""
        return sum(
            sample.value for sample in self.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )

    def count(self, name: str) -> int:
        return sum(1 for sample in self.samples if sample.name == name)

    def label_values(self, name: str, label: str) -> set[str]:
        return {sample.labels[label] for sample in self.samples if sample.name == name}


async def scrape(http: httpx.AsyncClient, token: str | None = None) -> Scrape:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = await http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    return Scrape(response.text)


@pytest.fixture
async def http(settings: Settings, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app of its own: its metrics start at zero."""
    async with client_for(create_app(settings, engine=engine), "10.90.0.1") as client:
        yield client


async def post(http: httpx.AsyncClient, body: Any, token: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return await http.post("/graphql", json=body, headers=headers)


async def test_a_named_query_is_counted_once_with_its_duration(http: httpx.AsyncClient) -> None:
    before = await scrape(http)
    response = await post(http, {"query": "query Header { viewer { user { email } } }"})
    assert response.status_code == 200 and "errors" not in response.json(), response.text
    after = await scrape(http)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    header = {"operation": "Header", "outcome": "ok"}
    assert delta("linkgate_graphql_operations_total", **header) == 1
    assert delta("linkgate_graphql_operation_seconds_count", **header) == 1
    assert delta("linkgate_graphql_operation_seconds_bucket", le="+Inf", **header) == 1
    assert delta("linkgate_graphql_operation_seconds_bucket", le="30.0", **header) == 1
    assert 0 < delta("linkgate_graphql_operation_seconds_sum", **header) < 30
    assert delta("linkgate_graphql_operations_total") == 1  # nothing else ran
    assert delta("linkgate_http_requests_total", method="POST", route="/graphql", status="200") == 1
    assert delta("linkgate_http_request_seconds_count", route="/graphql") == 1
    # The first scrape is counted once it was answered, so the second one sees it.
    assert delta("linkgate_http_requests_total", method="GET", route="/metrics", status="200") == 1
    assert delta("linkgate_graphql_errors_total") == 0


async def test_each_operation_of_a_batch_is_counted(http: httpx.AsyncClient) -> None:
    response = await post(http, [{"query": "query First { __typename }"},
                                 {"query": "query Second { __typename }"},
                                 {"query": "{ __typename }"}])
    assert response.status_code == 200, response.text
    after = await scrape(http)
    for operation in ("First", "Second", "_anonymous"):
        assert after.value("linkgate_graphql_operations_total", operation=operation, outcome="ok") == 1
    assert after.value("linkgate_graphql_operation_seconds_count") == 3
    assert after.value("linkgate_http_requests_total", route="/graphql") == 1


async def test_error_codes_and_outcomes_are_counted(http: httpx.AsyncClient) -> None:
    invalid = await post(http, {"query": "query Broken { noSuchField }"})
    assert invalid.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    expired = await post(http, {"query": "query Mine { viewer { user { email } } }"}, token="not-a-token")
    assert expired.status_code == 401, expired.text
    not_json = await http.post("/graphql", content="{}", headers={"content-type": "text/plain"})
    assert not_json.status_code == 415
    after = await scrape(http)
    assert after.value("linkgate_graphql_operations_total", operation="Broken", outcome="error") == 1
    assert after.value("linkgate_graphql_errors_total", code="BAD_USER_INPUT") == 2  # + the 415
    assert after.value("linkgate_graphql_errors_total", code="UNAUTHENTICATED") == 1
    assert after.value("linkgate_http_requests_total", route="/graphql", status="401") == 1
    assert after.value("linkgate_http_requests_total", route="/graphql", status="415") == 1
    # Refused before GraphQL ran (the token, the content type): a request and an error, but
    # no operation.
    assert after.value("linkgate_graphql_operations_total") == 1


async def test_unknown_paths_and_methods_are_counted_as_other(http: httpx.AsyncClient) -> None:
    paths = ["/wp-login.php", "/graphql/extra", "/.env", "/metrics/../admin"]
    for path in paths:
        assert (await http.get(path)).status_code == 404
    assert (await http.request("BREW", "/healthz")).status_code == 405
    assert (await http.get("/healthz")).status_code == 200
    after = await scrape(http)
    assert after.value("linkgate_http_requests_total", method="GET", route="other", status="404") == len(paths)
    assert after.value("linkgate_http_requests_total", method="other", route="/healthz", status="405") == 1
    assert after.value("linkgate_http_requests_total", method="GET", route="/healthz", status="200") == 1
    routes = after.label_values("linkgate_http_requests_total", "route")
    assert routes == {"other", "/healthz"}, routes  # the scrape itself is counted after it
    assert after.label_values("linkgate_http_requests_total", "method") == {"GET", "other"}


async def test_operation_names_are_capped(http: httpx.AsyncClient) -> None:
    names = 250
    for n in range(names):
        response = await post(http, {"query": f"query Probe{n} {{ __typename }}"})
        assert response.status_code == 200
    after = await scrape(http)
    labels = after.label_values("linkgate_graphql_operations_total", "operation")
    assert len(labels) == MAX_OPERATION_LABELS + 1, len(labels)
    assert OTHER_LABEL in labels
    assert after.value("linkgate_graphql_operations_total", operation=OTHER_LABEL) == names - MAX_OPERATION_LABELS
    assert after.value("linkgate_graphql_operations_total") == names
    assert len(after.label_values("linkgate_graphql_operation_seconds_count", "operation")) == MAX_OPERATION_LABELS + 1
    # A name seen before the cap keeps its own label.
    await post(http, {"query": "query Probe0 { __typename }"})
    again = await scrape(http)
    assert again.value("linkgate_graphql_operations_total", operation="Probe0") == 2


async def test_throttled_sign_ins_are_counted_by_field(
    settings: Settings, engine: AsyncEngine, gql: GraphQLClient
) -> None:
    owner = await new_customer(gql, "Metrics Throttle")
    app = create_app(settings.model_copy(update={"login_max_failures": 2}), engine=engine)
    async with client_for(app, "10.91.0.1") as http:
        email = unique_email("throttled")
        logins = [
            (await post(http, {"query": LOGIN, "variables": {"input": {"email": email, "password": "wrong-password"}}})).json()
            for _ in range(5)
        ]
        limited = [r for r in logins if r.get("errors") and r["errors"][0]["extensions"]["code"] == "RATE_LIMITED"]
        assert len(limited) == 3, logins  # two failures allowed, then refused
        changes = [
            (await post(http, {"query": CHANGE_PASSWORD, "variables": {"input": {
                "currentPassword": "not-my-password", "newPassword": "a-new-long-password"}}},
                token=owner.token)).json()
            for _ in range(3)
        ]
        limited_changes = [r for r in changes if r.get("errors")
                           and r["errors"][0]["extensions"]["code"] == "RATE_LIMITED"]
        assert len(limited_changes) == 1, changes
        # An alias does not hide the field: still a throttled sign-in.
        aliased = (await post(http, {"query": LOGIN.replace("login(", "signIn: login(", 1),
                                     "variables": {"input": {"email": email, "password": "wrong-password"}}})).json()
        assert aliased["errors"][0]["extensions"]["code"] == "RATE_LIMITED", aliased
        after = await scrape(http)
    assert after.value("linkgate_sign_ins_throttled_total", field="login") == 4
    assert after.value("linkgate_sign_ins_throttled_total", field="changePassword") == 1
    assert after.value("linkgate_sign_ins_throttled_total") == 5
    assert after.value("linkgate_graphql_errors_total", code="RATE_LIMITED") == 5


async def test_outbox_gauges_count_what_is_queued(http: httpx.AsyncClient, engine: AsyncEngine, settings: Settings) -> None:
    before = await scrape(http)
    long_ago = datetime(2001, 1, 1, tzinfo=timezone.utc)
    rows = [
        Notification(recipient="queued@example.com", category="SECURITY", subject="Queued",
                     body="b", created_at=long_ago + timedelta(days=n))
        for n in range(3)
    ] + [
        Notification(recipient="failed@example.com", category="SECURITY", subject="Failed", body="b",
                     created_at=long_ago - timedelta(days=1), attempts=settings.notification_max_attempts),
        Notification(recipient="sent@example.com", category="SECURITY", subject="Sent", body="b",
                     created_at=long_ago - timedelta(days=2), sent_at=long_ago, attempts=1),
    ]
    sessions = create_session_factory(engine)
    async with sessions() as session:
        session.add_all(rows)
        await session.commit()
    try:
        after = await scrape(http)
    finally:
        async with sessions() as session:
            await session.execute(delete(Notification).where(Notification.id.in_([row.id for row in rows])))
            await session.commit()
    assert after.value("linkgate_outbox_unsent") - before.value("linkgate_outbox_unsent") == 3
    assert after.value("linkgate_outbox_failed") - before.value("linkgate_outbox_failed") == 1
    # The oldest still to send, not the given-up one (a day older) nor the sent one.
    expected_age = (utcnow() - long_ago).total_seconds()
    age = after.value("linkgate_outbox_oldest_unsent_age_seconds")
    assert expected_age - 60 < age <= expected_age + 1, (age, expected_age)
    assert after.count("linkgate_outbox_unsent") == 1
    cleaned = await scrape(http)
    assert cleaned.value("linkgate_outbox_unsent") == before.value("linkgate_outbox_unsent")


async def test_an_unreadable_outbox_is_left_out_with_one_warning(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'nothing.db'}")
    try:
        app = create_app(settings, engine=broken)
        caplog.set_level(logging.WARNING, logger="linkgate.metrics")
        async with client_for(app) as http:
            first = await scrape(http)
            second = await scrape(http)
    finally:
        await broken.dispose()
    for result in (first, second):
        assert result.count("linkgate_outbox_unsent") == 0
        assert result.count("linkgate_outbox_oldest_unsent_age_seconds") == 0
    assert second.value("linkgate_http_requests_total", route="/metrics", status="200") == 1
    warnings = [r for r in caplog.records if r.name == "linkgate.metrics" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


async def test_pool_gauge_counts_connections_in_use(http: httpx.AsyncClient, engine: AsyncEngine) -> None:
    idle = await scrape(http)
    assert idle.count("linkgate_db_pool_connections_in_use") == 1
    async with engine.connect(), engine.connect():
        busy = await scrape(http)
    assert busy.value("linkgate_db_pool_connections_in_use") == idle.value("linkgate_db_pool_connections_in_use") + 2


async def test_a_pool_that_does_not_count_leaves_the_gauge_out(settings: Settings, database_url: str) -> None:
    unpooled = create_engine(database_url, poolclass=NullPool)
    try:
        async with client_for(create_app(settings, engine=unpooled)) as http:
            result = await scrape(http)
    finally:
        await unpooled.dispose()
    assert result.count("linkgate_db_pool_connections_in_use") == 0
    assert result.count("linkgate_outbox_unsent") == 1


async def test_the_token_guards_the_metrics(settings: Settings, engine: AsyncEngine) -> None:
    app = create_app(settings.model_copy(update={"metrics_token": SecretStr(METRICS_TOKEN)}), engine=engine)
    async with client_for(app) as http:
        for headers in ({}, {"authorization": "Bearer wrong-token-0123456789abcdef"},
                        {"authorization": METRICS_TOKEN},
                        {"authorization": f"Basic {METRICS_TOKEN}"},
                        {"authorization": f"Bearer {METRICS_TOKEN}x"}):
            refused = await http.get("/metrics", headers=headers)
            assert refused.status_code == 401, headers
            assert refused.json() == {"errors": [{
                "message": refused.json()["errors"][0]["message"],
                "extensions": {"code": "UNAUTHENTICATED"},
            }]}
            assert "linkgate_" not in refused.text
        result = await scrape(http, METRICS_TOKEN)
        lower = await http.get("/metrics", headers={"authorization": f"bearer {METRICS_TOKEN}"})
        assert lower.status_code == 200
    assert result.value("linkgate_http_requests_total", route="/metrics", status="401") == 5
    assert result.value("linkgate_graphql_errors_total", code="UNAUTHENTICATED") == 5


async def test_metrics_are_open_without_a_token(http: httpx.AsyncClient) -> None:
    response = await http.get("/metrics", headers={"authorization": "Bearer anything"})
    assert response.status_code == 200
    assert Scrape(response.text).value("linkgate_http_requests_total") == 0  # nothing before it
    assert (await scrape(http)).value("linkgate_http_requests_total", route="/metrics") == 1


async def test_recording_never_fails_a_request(settings: Settings, engine: AsyncEngine) -> None:
    app = create_app(settings, engine=engine)
    app.state.metrics.observe_request(None)  # type: ignore[arg-type]  # swallowed
    async with client_for(app) as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await scrape(http)).value("linkgate_http_requests_total", route="/healthz") == 1


# --- several workers ---------------------------------------------------------------------------

def _per_worker(directory: Path, route: str) -> dict[int, float]:
    """Requests to ``route`` each worker has written to its own file."""
    counts = {}
    for path in directory.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        counts[pid] = sum(
            sample.value
            for metric in MultiProcessCollector.merge([str(path)], accumulate=False)
            for sample in metric.samples
            if sample.name == "linkgate_http_requests_total" and sample.labels.get("route") == route
        )
    return counts


def test_workers_share_their_metrics(database_url: str, tmp_path: Path) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    environment = clean_environment(
        LINKGATE_DATABASE_URL=database_url, LINKGATE_SECRET_KEY=TEST_SECRET,
        PROMETHEUS_MULTIPROC_DIR=str(directory),
    )
    with running_server([*UVICORN, "--workers", "2"], environment=environment) as server:
        sent = 0
        deadline = time.monotonic() + 60
        # Fresh connections, many at once, until both workers have answered some (the second
        # may still be starting when the first answers /readyz).
        while True:
            sent += asyncio.run(_burst(server.base, 40))
            counts = _per_worker(directory, "/healthz")
            if sum(count > 0 for count in counts.values()) >= 2 and sum(counts.values()) == sent:
                break
            assert time.monotonic() < deadline, counts
            time.sleep(0.2)
        result = Scrape(httpx.get(f"{server.base}/metrics", timeout=10).text)
        # The sum over both workers, whichever answered the scrape.
        assert result.value("linkgate_http_requests_total", route="/healthz", status="200") == sent
        assert result.value("linkgate_http_request_seconds_count", route="/healthz") == sent
        # Computed by the scraping worker alone: one sample, not one per worker.
        assert result.count("linkgate_outbox_unsent") == 1
        assert result.count("linkgate_db_pool_connections_in_use") == 1
        assert result.value("linkgate_db_pool_connections_in_use") == 0

        # A worker killed outright: its counts stay, its live gauge goes at the next scrape.
        victim = next(pid for pid, count in counts.items() if count > 0)
        assert (directory / f"gauge_livesum_{victim}.db").exists()
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        after = None
        while (directory / f"gauge_livesum_{victim}.db").exists():
            assert time.monotonic() < deadline, "the dead worker's live gauge was never dropped"
            try:
                after = Scrape(httpx.get(f"{server.base}/metrics", timeout=10).text)
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert after is not None
        assert after.value("linkgate_http_requests_total", route="/healthz", status="200") == sent
    assert "Traceback"  not in server.output, server.output[-3000:]


async def _burst(base: str, requests: int) -> int:
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        responses = await asyncio.gather(*(client.get("/healthz") for _ in range(requests)))
    assert all(response.status_code == 200 for response in responses)
    return requests


def test_serve_with_workers_shares_metrics_without_being_told(database_url: str) -> None:
    """``linkgate serve --workers 2`` with no PROMETHEUS_MULTIPROC_DIR makes a directory of
    its own: every scrape, whichever worker answers it, counts the requests of both."""
    environment = clean_environment(LINKGATE_DATABASE_URL=database_url, LINKGATE_SECRET_KEY=TEST_SECRET)
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with running_server([*LINKGATE, "serve", "--workers", "2"], environment=environment) as server:
        sent = sum(asyncio.run(_burst(server.base, 40)) for _ in range(5))
        limits = httpx.Limits(max_keepalive_connections=0)  # each scrape on a fresh connection
        with httpx.Client(base_url=server.base, timeout=10, limits=limits) as client:
            seen = [Scrape(client.get("/metrics").text).value(
                "linkgate_http_requests_total", route="/healthz", status="200") for _ in range(8)]
    # /readyz polling while starting is another route; the health checks are all counted.
    assert seen == [sent] * 8, seen
    assert "Traceback" not in server.output, server.output[-3000:]


def test_serve_refuses_a_metrics_directory_it_cannot_use(tmp_path: Path) -> None:
    result = run_cli(["serve", "--demo", "--workers", "2"], tmp_path,
                     PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "missing"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "PROMETHEUS_MULTIPROC_DIR" in result.stderr
