"""Shared fixtures: one fresh, migrated, demo-seeded database per test run.

The database is SQLite in a temporary folder, or, when ``LINKGATE_TEST_DATABASE_URL`` names a
PostgreSQL server, a new database created on it for this run and dropped afterwards, so runs
never see each other's rows. Tests that write use their own new users and accounts.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.sessions import SessionSettings, open_session_for
from auth.tokens import TokenSettings
from linkgate.app import create_app
from linkgate.demo import DEMO_PASSWORD, seed_demo
from linkgate.logs import logging_config
from linkgate.migrations import upgrade_database
from linkgate.settings import Settings
from models.database import StatementCounter, create_engine, create_session_factory, scratch_database
from tests import log_secrets

TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"
PERSONAS = {
    "olivia": "olivia@northwind.example",
    "bill": "bill@northwind.example",
    "dev": "dev@northwind.example",
    "eve": "eve@contoso.example",
    "agent": "agent@linkgate.example",
    "finance": "finance@linkgate.example",
}


def pytest_configure(config: pytest.Config) -> None:
    """Logs as production writes them (JSON, INFO), all into one file for the secrets check;
    every secret this process makes is remembered from here on (tests/log_secrets.py)."""
    log_secrets.RUN_LOG = log_secrets.RunLog()
    logging.config.dictConfig(logging_config("json", "INFO"))
    logging.getLogger().handlers = [log_secrets.RUN_LOG.handler]
    log_secrets.RECORDER.install()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No log line of the run may hold a secret: a hit fails the run."""
    run_log = log_secrets.RUN_LOG
    if run_log is None:
        return
    log_secrets.RECORDER.uninstall()
    leaks = log_secrets.find_leaks(run_log.read(), log_secrets.RECORDER.secrets)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if leaks:
        if reporter is not None:
            reporter.section("secrets in the logs", sep="=", red=True, bold=True)
            for leak in leaks[:20]:
                reporter.line(f"{leak.secret_kind}: {leak.line[:400]}")
            reporter.line(f"{len(leaks)} log line(s) hold a secret; the run's log: {run_log.path}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    else:
        run_log.path.unlink(missing_ok=True)


def _server_url() -> str | None:
    return os.environ.get("LINKGATE_TEST_DATABASE_URL") or None


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A new database for this run, migrated to head (runs before the event loop starts)."""
    server_url = _server_url()
    if server_url is None:
        path = Path(tmp_path_factory.mktemp("db")) / "linkgate.db"
        url = f"sqlite+aiosqlite:///{path}"
        upgrade_database(url)
        yield url
        return
    if not server_url.startswith("postgresql"):
        raise RuntimeError("LINKGATE_TEST_DATABASE_URL must be a postgresql+asyncpg:// URL")
    with scratch_database(server_url, "linkgate_test") as url:
        upgrade_database(url)
        yield url


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    async with create_session_factory(engine)() as session:
        await seed_demo(session)
        await session.commit()
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    # No answer floor, and no client-wide limits on sign-ins or mailed links: the whole suite
    # signs up and in from one address (127.0.0.1). The tests of the floor and of those
    # limits build an app with settings of their own.
    return Settings(database_url=database_url, secret_key=TEST_SECRET, answer_floor_seconds=0,
                    payment_gateway="test",
                    login_client_max_failures=1_000_000, mail_links_per_client=1_000_000)


@pytest.fixture(scope="session")
async def app(settings: Settings, engine: AsyncEngine) -> Any:
    return create_app(settings, engine=engine)


@dataclass
class GraphQLClient:
    """Posts GraphQL over HTTP to the real Starlette app."""

    http: httpx.AsyncClient
    # The database behind the server, when it is not an in-process app (a real uvicorn).
    database: AsyncEngine | None = None

    @property
    def engine(self) -> AsyncEngine:
        """The server's database, for reading what it emailed (the outbox)."""
        if self.database is not None:
            return self.database
        return self.http._transport.app.state.engine  # type: ignore[attr-defined]

    async def post(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None,
        operation_name: str | None = None,
    ) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        body: dict[str, Any] = {"query": query}
        if variables is not None:
            body["variables"] = variables
        if operation_name is not None:
            body["operationName"] = operation_name
        # ASCII JSON, as browsers send it: a lone surrogate travels as its \ud800 escape.
        return await self.http.post(
            "/graphql", content=json.dumps(body), headers={**headers, "content-type": "application/json"},
        )

    async def execute(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        response = await self.post(query, variables, token=token)
        assert response.status_code == 200, response.text
        return response.json()

    async def login(self, email: str, password: str = DEMO_PASSWORD) -> str:
        result = await self.execute(
            "mutation($input: LoginInput!) { login(input: $input) { token userErrors { code } } }",
            {"input": {"email": email, "password": password}},
        )
        token = result["data"]["login"]["token"]
        assert token, result
        return token


def client_for(app: Any, address: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://linkgate.test")


async def token_for_user(engine: AsyncEngine, user_id: int) -> str:
    """A bearer token for a user the test wrote to the database: a real session row, so
    logout and revocation apply to it as to any sign-in."""
    async with create_session_factory(engine)() as session:
        issued = await open_session_for(
            session, user_id=user_id, settings=SessionSettings(TokenSettings(secret=TEST_SECRET)),
            client_address="test",
        )
    return issued.access_token


@pytest.fixture(scope="session")
async def gql(app: Any) -> AsyncIterator[GraphQLClient]:
    async with client_for(app) as http:
        yield GraphQLClient(http)


@pytest.fixture(scope="session")
async def tokens(gql: GraphQLClient) -> dict[str, str]:
    """A bearer token for each demo persona, signed in once per run over HTTP."""
    return {persona: await gql.login(email) for persona, email in PERSONAS.items()}


@pytest.fixture
def count_statements(engine: AsyncEngine) -> Any:
    return lambda: StatementCounter(engine)


@pytest.fixture
def empty_database(tmp_path: Path) -> Iterator[str]:
    """An empty database of the kind this run tests (SQLite, or a new PostgreSQL database)."""
    server = os.environ.get("LINKGATE_TEST_DATABASE_URL", "")
    if not server.startswith("postgresql"):
        yield f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
        return
    with scratch_database(server, "linkgate_cli") as url:
        yield url


# Strings no one can type: the edge (``linkgate.request_body``) refuses every request with one.
UNTYPABLE = ["\ud800", "nul\u0000"]


def refused_at_the_edge(response: httpx.Response, field: str | None = None) -> dict[str, Any]:
    """The one error of a request refused before GraphQL ran: HTTP 400, ``BAD_USER_INPUT``,
    no ``data``, and (if given) ``field`` named as the JSON path of the bad value."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert "data" not in body and len(body["errors"]) == 1, body
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    if field is not None:
        assert error["extensions"]["field"] == field, error
    return error
