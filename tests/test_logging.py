"""Logs (issue 15): one format for every logger, the request id on every line of a request,
the operation and its outcome per request, and never a secret."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from linkgate.app import create_app
from linkgate.logs import JsonFormatter, RequestIdFilter, TextFormatter
from linkgate.settings import Settings
from tests import log_secrets
from tests.conftest import TEST_SECRET, GraphQLClient, client_for
from tests.customers import PASSWORD, emailed_token, new_customer
from tests.servers import UVICORN, clean_environment, running_server

LOGIN = """mutation SignIn($input: LoginInput!) {
  login(input: $input) { token refreshToken userErrors { code } }
}"""
REFRESH = """mutation Refresh($input: RefreshSessionInput!) {
  refreshSession(input: $input) { token refreshToken userErrors { code } }
}"""
RESET = "mutation Forgot($input: RequestPasswordResetInput!) { requestPasswordReset(input: $input) { ok } }"


class Collected(logging.Handler):
    """Every record that reaches the root logger, formatted as production would."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(formatter)
        self.addFilter(RequestIdFilter())
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


@pytest.fixture
def collected() -> Any:
    handler = Collected(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def _access(handler: Collected, request_id: str) -> dict[str, Any]:
    entries = [json.loads(line) for line in handler.lines]
    found = [e for e in entries if e["logger"] == "linkgate.access" and e["request_id"] == request_id]
    assert len(found) == 1, entries
    return found[0]


async def test_the_access_line_names_the_operation_and_its_outcome(gql: GraphQLClient, collected: Collected) -> None:
    ok = await gql.post("query Header { viewer { user { email } } }")
    partial = await gql.post("query Broken { nope }")
    entry = _access(collected, ok.headers["x-request-id"])
    assert entry["operation"] == "Header" and entry["outcome"] == "ok"
    assert entry["status"] == 200 and entry["method"] == "POST" and entry["path"] == "/graphql"
    assert entry["duration_ms"] > 0 and entry["error_codes"] is None
    refused = _access(collected, partial.headers["x-request-id"])
    assert refused["operation"] == "Broken" and refused["outcome"] == "error"
    assert refused["error_codes"] == ["BAD_USER_INPUT"]


async def test_a_refusal_before_graphql_is_logged_with_its_code(gql: GraphQLClient, collected: Collected) -> None:
    response = await gql.http.post("/graphql", content=b"{", headers={"content-type": "application/json"})
    assert response.status_code == 400
    entry = _access(collected, response.headers["x-request-id"])
    assert entry["status"] == 400 and entry["outcome"] == "error" and entry["error_codes"] == ["BAD_USER_INPUT"]


async def test_every_response_carries_a_request_id(gql: GraphQLClient, collected: Collected) -> None:
    ids = set()
    for response in (
        await gql.http.get("/healthz"),
        await gql.http.get("/no-such-page"),
        await gql.http.options("/graphql", headers={"origin": "https://x.example",
                                                    "access-control-request-method": "POST"}),
    ):
        ids.add(response.headers["x-request-id"])
        assert _access(collected, response.headers["x-request-id"])["status"] == response.status_code
    assert len(ids) == 3


async def test_the_query_string_is_never_logged(gql: GraphQLClient, collected: Collected) -> None:
    response = await gql.http.get("/invoices/download", params={"token": "eyJhbGciOi.eyJzdWIiOiIx.sig"})
    entry = _access(collected, response.headers["x-request-id"])
    assert entry["path"] == "/invoices/download"
    assert not any("eyJ" in line for line in collected.lines)


async def test_every_line_of_a_request_carries_its_id(tmp_path: Path, collected: Collected) -> None:
    """An unexpected failure (here: the database file is missing) writes its traceback with
    the same request id as the access line and the id the client was given."""
    missing = tmp_path / "missing" / "linkgate.db"
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{missing}", secret_key=TEST_SECRET))
    async with client_for(app) as http:
        response = await GraphQLClient(http).post(
            'mutation SignIn { login(input: {email: "a@b.example", password: "whatever-it-is"}) { token } }'
        )
    request_id = response.headers["x-request-id"]
    assert response.json()["errors"][0]["extensions"]["requestId"] == request_id
    mine = [json.loads(line) for line in collected.lines if request_id in line]
    assert {entry["logger"] for entry in mine} == {"linkgate.access", "linkgate.errors"}, mine
    assert all(entry["request_id"] == request_id for entry in mine)
    failure = next(entry for entry in mine if entry["level"] == "ERROR")
    assert "Traceback" in failure["exception"]  # one record, the traceback inside it


def test_text_lines_have_time_level_logger_and_request_id() -> None:
    record = logging.makeLogRecord({
        "name": "linkgate.access", "levelname": "INFO", "levelno": 20, "msg": "%s %s %s",
        "args": ("POST", "/graphql", 200), "request_id": "abc123",
        "operation": "Header", "outcome": "ok", "error_codes": ["A", "B"], "method": "POST",
        "in_message": ("method",),
    })
    line = TextFormatter().format(record)
    assert line.endswith("INFO linkgate.access [abc123] POST /graphql 200 operation=Header outcome=ok error_codes=A,B")
    assert line[:4].isdigit() and "Z INFO" in line


def test_the_leak_check_finds_a_secret_and_a_secrets_shape() -> None:
    known = {"lgr_Zq3xTf7KpW0aB9cD1eF2gH3iJ4kL5mN6": "random token", "correct horse staple": "password"}
    text = "\n".join([
        '{"message": "fine", "request_id": "0123456789abcdef"}',
        '{"message": "refresh lgr_Zq3xTf7KpW0aB9cD1eF2gH3iJ4kL5mN6 failed"}',
        '{"message": "wrong password correct horse staple"}',
        '{"message": "link https://x.example/reset-password#token=abc"}',
        '{"message": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"}',
    ])
    leaks = log_secrets.find_leaks(text, known)
    assert [leak.secret_kind for leak in leaks] == [
        "the shape of a secret", "password", "the shape of a secret", "the shape of a secret",
    ]


async def test_the_run_remembers_the_secrets_it_makes(gql: GraphQLClient) -> None:
    """The check at the end of the run can only find what it knows: the tokens and passwords
    this process makes are all remembered."""
    customer = await new_customer(gql)
    signed_in = (await gql.execute(LOGIN, {"input": {"email": customer.email, "password": PASSWORD}}))["data"]["login"]
    known = log_secrets.RECORDER.secrets
    assert known.get(PASSWORD) == "password"
    assert known.get(signed_in["token"]) == "signed token"
    random_part = signed_in["refreshToken"].removeprefix("lgr_")
    assert known.get(random_part) == "random token"


async def test_a_debug_server_logs_no_secret(database_url: str, engine: AsyncEngine) -> None:
    """A real server at DEBUG, JSON: every line is one JSON object, and nothing any flow hands
    out or takes in — password, access and refresh tokens, a reset link, a download link —
    appears in its output, SQL included."""
    environment = clean_environment(
        LINKGATE_DATABASE_URL=database_url, LINKGATE_SECRET_KEY=TEST_SECRET,
        LINKGATE_LOG_FORMAT="json", LINKGATE_LOG_LEVEL="DEBUG", LINKGATE_ANSWER_FLOOR_SECONDS="0",
        LINKGATE_MAIL_LINKS_PER_CLIENT="1000000",
    )
    with running_server(UVICORN, environment=environment) as server:
        async with httpx.AsyncClient(base_url=server.base, timeout=60) as http:
            gql = GraphQLClient(http, database=engine)
            customer = await new_customer(gql)
            signed_in = (await gql.execute(LOGIN, {"input": {"email": customer.email, "password": PASSWORD}}))["data"]["login"]
            refreshed = (await gql.execute(REFRESH, {"input": {"refreshToken": signed_in["refreshToken"]}}))["data"]["refreshSession"]
            wrong = await gql.execute(LOGIN, {"input": {"email": customer.email, "password": "not-the-password-42"}})
            assert wrong["data"]["login"]["userErrors"] == [{"code": "INVALID_CREDENTIALS"}]
            await gql.execute(RESET, {"input": {"email": customer.email}})
            reset_token = await emailed_token(engine, customer.email, "reset-password")
            download = await http.get("/invoices/download", params={"token": refreshed["token"]})
            request_ids = {download.headers["x-request-id"]}
    lines = [line for line in server.output.splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is JSON, uvicorn's too
    assert {"uvicorn.error", "linkgate.access"} <= {entry["logger"] for entry in entries}
    assert any(entry["logger"].startswith("sqlalchemy.engine") for entry in entries)  # DEBUG shows SQL
    assert request_ids <= {entry["request_id"] for entry in entries}
    secrets = [PASSWORD, "not-the-password-42", customer.token, signed_in["token"],
               signed_in["refreshToken"], refreshed["token"], refreshed["refreshToken"], reset_token]
    assert all(secrets)
    for secret in secrets:
        assert secret not in server.output, secret
    assert not log_secrets.find_leaks(server.output, {s: "flow secret" for s in secrets})


def test_a_client_cannot_forge_a_text_line() -> None:
    """A request's path is percent-decoded: ``/graphql%0A…`` would start a new line, and an
    ESC would drive the reader's terminal. One record is one line, with them escaped."""
    record = logging.makeLogRecord({
        "name": "linkgate.access", "levelname": "INFO", "levelno": 20, "msg": "%s %s %s",
        "args": ("GET", "/x\n2026-01-01T00:00:00.000Z ERROR forged \x1b[2J", 404), "request_id": "r1",
        "path": "/x\n\x1b[2J", "client": "10.0.0.1",
    })
    line = TextFormatter().format(record)
    assert "\n" not in line and "\x1b" not in line
    assert "GET /x\\n2026-01-01T00:00:00.000Z ERROR forged \\x1b[2J 404" in line
    assert 'path="/x\\n\\u001b[2J"' in line


async def test_a_path_cannot_pose_as_the_fields_after_it(gql: GraphQLClient, collected: Collected) -> None:
    """``/graphql 200 outcome=ok client=…`` as a path: quoted, and the real fields still there."""
    response = await gql.http.get("/graphql%20200%20outcome=ok%20client=203.0.113.9")
    record = next(r for r in collected.records
                  if r.name == "linkgate.access" and r.request_id == response.headers["x-request-id"])
    line = TextFormatter().format(record)
    assert 'GET "/graphql 200 outcome=ok client=203.0.113.9" 404 ' in line
    assert line.endswith("outcome=error client=127.0.0.1")


async def test_a_request_cut_at_its_time_limit_is_still_named(
    settings: Settings, engine: AsyncEngine, collected: Collected, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The slowest requests are the ones to find: named as execution starts, not as it ends."""
    import asyncio

    import resolvers.sign_in

    async def slow(*args: Any, **kwargs: Any) -> bool:
        await asyncio.sleep(1)
        return False

    monkeypatch.setattr(resolvers.sign_in, "_signed_in_before", slow)
    app = create_app(settings.model_copy(update={"request_timeout_seconds": 0.2}), engine=engine)
    async with client_for(app, "10.77.0.1") as http:
        response = await GraphQLClient(http).post(
            'mutation SlowLogin { login(input: {email: "slow@example.com", password: "whatever-it-is"}) { token } }'
        )
    assert response.status_code == 503
    entry = _access(collected, response.headers["x-request-id"])
    assert entry["operation"] == "SlowLogin" and entry["outcome"] == "error"
    assert entry["error_codes"] == ["INTERNAL_SERVER_ERROR"]
