"""OpenTelemetry traces (linkgate/tracing.py): off unless the OTEL_* variables ask; when on, a
span per HTTP request, per GraphQL operation and per SQL statement, in one trace, holding the
request id and no secret (no query string, header, document literal or SQL parameter)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from linkgate.app import create_app
from linkgate.demo import DEMO_PASSWORD
from linkgate.settings import ConfigurationError, Settings
from linkgate.tracing import REQUEST_ID_ATTRIBUTE, Tracing, exporter_names
from models.database import create_engine
from tests.conftest import PERSONAS, TEST_SECRET, GraphQLClient, client_for

DASHBOARD = """
query Dashboard {
  viewer {
    user { email }
    accounts(first: 5) { edges { node { number name } } }
  }
}"""

INVOICE_LINKS = """
query InvoiceLinks {
  viewer { accounts(first: 10) { edges { node {
    invoices(first: 1) { edges { node { downloadUrl } } }
  } } } }
}"""


@dataclass
class Traced:
    gql: GraphQLClient
    exporter: InMemorySpanExporter
    engine: AsyncEngine

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def server_span(self, request_id: str) -> ReadableSpan:
        (span,) = [
            span for span in self.spans()
            if span.kind is SpanKind.SERVER and span.attributes.get(REQUEST_ID_ATTRIBUTE) == request_id
        ]
        return span

    def trace_of(self, span: ReadableSpan) -> list[ReadableSpan]:
        return [other for other in self.spans() if other.context.trace_id == span.context.trace_id]


@contextlib.asynccontextmanager
async def traced_app(settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch,
                     caplog: pytest.LogCaptureFixture) -> AsyncIterator[Traced]:
    """An app traced to an in-memory exporter, on a database engine of its own (the
    instrumentation listens on the engine; the shared one is left untraced)."""
    exporter = InMemorySpanExporter()
    tracing = Tracing(SimpleSpanProcessor(exporter))
    own = create_engine(database_url)
    app = create_app(settings, engine=own, tracing=tracing)
    with caplog.at_level(logging.ERROR, logger="opentelemetry"):
        async with client_for(app) as http:
            yield Traced(GraphQLClient(http), exporter, own)
    # Every span ended, and the context it was current in was left as it was found (the SDK
    # logs "Failed to detach context" at ERROR). A WARNING that an earlier test's provider,
    # already shut down, dropped a late span says nothing about this app.
    assert not [record for record in caplog.records
                if record.name.startswith("opentelemetry") and record.levelno >= logging.ERROR]
    tracing.shutdown()
    assert len(own.sync_engine.dispatch.before_cursor_execute) == 0  # no longer instrumented
    await own.dispose()


@pytest.fixture
async def traced(settings: Settings, database_url: str, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch,
                 caplog: pytest.LogCaptureFixture) -> AsyncIterator[Traced]:
    """(``engine``: the demo is seeded.)"""
    async with traced_app(settings, database_url, monkeypatch, caplog) as traced:
        yield traced


def attribute_values(spans: list[ReadableSpan]) -> Iterator[str]:
    for span in spans:
        yield span.name
        for attributes in (span.attributes, *(span_event.attributes for span_event in span.events)):
            for value in (attributes or {}).values():
                yield from (map(str, value) if isinstance(value, tuple) else (str(value),))


def ancestors(span: ReadableSpan, spans: list[ReadableSpan]) -> list[int]:
    by_id = {other.context.span_id: other for other in spans}
    chain = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        chain.append(span.context.span_id)
    return chain


async def test_a_named_query_is_traced_from_http_to_sql(traced: Traced) -> None:
    email = PERSONAS["olivia"]
    token = await traced.gql.login(email)
    response = await traced.gql.post(DASHBOARD, token=token)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["viewer"]["user"]["email"] == email

    server = traced.server_span(response.headers["x-request-id"])
    assert server.name == "POST /graphql"
    assert server.parent is None
    spans = traced.trace_of(server)

    (operation,) = [span for span in spans if span.name == "query Dashboard"]
    assert operation.parent is not None and operation.parent.span_id == server.context.span_id
    assert operation.attributes["graphql.operation.name"] == "Dashboard"
    assert operation.attributes["graphql.operation.type"] == "query"
    assert "query" not in operation.attributes  # the document is not recorded
    assert REQUEST_ID_ATTRIBUTE not in operation.attributes  # on the server span only
    children = {span.name for span in spans
                if span.parent and span.parent.span_id == operation.context.span_id}
    assert {"GraphQL Parsing", "GraphQL Validation"} <= children

    statements = [span for span in spans if span.kind is SpanKind.CLIENT]
    assert statements, [span.name for span in spans]
    assert all("db.statement" in span.attributes for span in statements)
    assert any("SELECT" in span.attributes["db.statement"] for span in statements)
    # The statements the operation sent (the session lookup, the viewer's accounts) are its
    # children: it was the current span while it ran.
    assert all(operation.context.span_id in ancestors(span, spans) for span in statements)
    # Nothing else: no span per resolver, per ASGI message, or per pool event.
    assert {span.name for span in spans} - {span.name for span in statements} == {
        "POST /graphql", "query Dashboard", "GraphQL Parsing", "GraphQL Validation",
    }

    # The sign-in's statements held the email and the password hash as parameters, and the
    # dashboard's the session; none of it, nor the password or the token, is in any span.
    everything = list(attribute_values(traced.spans()))
    for secret in (email, DEMO_PASSWORD, token, "Bearer"):
        assert not [value for value in everything if secret in value], secret
    assert not [value for value in everything if "/*" in value]  # no sqlcommenter comments


async def test_the_request_id_is_on_every_server_span(traced: Traced) -> None:
    """Refusals too: the id is set before anything can refuse the request."""
    response = await traced.gql.http.post("/graphql", content=b"{}", headers={"content-type": "text/plain"})
    assert response.status_code == 415
    server = traced.server_span(response.headers["x-request-id"])
    assert server.attributes["http.status_code"] == 415
    anonymous = await traced.gql.post("{ __typename }")
    server = traced.server_span(anonymous.headers["x-request-id"])
    (operation,) = [span for span in traced.trace_of(server) if span.kind is SpanKind.INTERNAL
                    and span.name.startswith("query")]
    assert operation.name == "query"
    assert "graphql.operation.name" not in operation.attributes


async def test_failed_operations_say_so(traced: Traced, settings: Settings) -> None:
    response = await traced.gql.post("query Broken { nope }")
    server = traced.server_span(response.headers["x-request-id"])
    (operation,) = [span for span in traced.trace_of(server) if span.name == "query Broken"]
    (error,) = response.json()["errors"]
    assert operation.status.status_code is StatusCode.ERROR
    assert operation.attributes["linkgate.error_codes"] == (error["extensions"]["code"],)

    # Refused before it was parsed (another extension's hook raised): the span still ends,
    # named by what is known.
    huge = "query Huge { " + "__typename " * (settings.max_query_tokens + 1) + "}"
    response = await traced.gql.post(huge, operation_name="Huge")
    (error,) = response.json()["errors"]
    server = traced.server_span(response.headers["x-request-id"])
    spans = traced.trace_of(server)
    (operation,) = [span for span in spans if span.kind is SpanKind.INTERNAL and "Huge" in span.name]
    assert operation.name == "Huge" and operation.status.status_code is StatusCode.ERROR
    assert operation.attributes["linkgate.error_codes"] == (error["extensions"]["code"],)


async def test_download_links_leave_no_token_in_any_span(traced: Traced) -> None:
    token = await traced.gql.login(PERSONAS["olivia"])
    links = await traced.gql.execute(INVOICE_LINKS, token=token)
    urls = [
        invoice["node"]["downloadUrl"]
        for account in links["data"]["viewer"]["accounts"]["edges"]
        for invoice in account["node"]["invoices"]["edges"]
    ]
    assert urls, links
    url = urls[0]
    assert url.startswith("/invoices/download?token=")
    traced.exporter.clear()

    response = await traced.gql.http.get(url)
    assert response.status_code == 200, response.text
    refused = await traced.gql.http.get("/invoices/download?token=not-a-real-token&x=1")
    assert refused.status_code == 400

    spans = traced.spans()
    server = traced.server_span(response.headers["x-request-id"])
    assert server.name == "GET /invoices/download"
    assert [span for span in traced.trace_of(server) if span.kind is SpanKind.CLIENT]  # it read the invoice
    traced.server_span(refused.headers["x-request-id"])
    link_token = url.split("token=", 1)[1]
    everything = list(attribute_values(spans))
    for secret in ("token=", link_token, link_token[-20:], "not-a-real-token", "x=1"):
        assert not [value for value in everything if secret in value], secret


async def test_captured_headers_never_show_credentials(
    settings: Settings, database_url: str, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Even told to capture every header, the span shows no Authorization or Cookie value."""
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", ".*")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS", "x-secret-thing")
    async with traced_app(settings, database_url, monkeypatch, caplog) as traced:
        token = await traced.gql.login(PERSONAS["bill"])
        response = await traced.gql.http.post(
            "/graphql", content=json.dumps({"query": DASHBOARD}),
            headers={"authorization": f"Bearer {token}", "cookie": "refresh=cookie-secret",
                     "x-secret-thing": "other-secret", "content-type": "application/json"},
        )
        assert response.status_code == 200, response.text
        server = traced.server_span(response.headers["x-request-id"])
        assert server.attributes["http.request.header.authorization"] == ("[REDACTED]",)
        assert server.attributes["http.request.header.cookie"] == ("[REDACTED]",)
        assert server.attributes["http.request.header.x_secret_thing"] == ("[REDACTED]",)
        assert server.attributes["http.request.header.content_type"] == ("application/json",)
        everything = list(attribute_values(traced.spans()))
        for secret in (token, "Bearer", "cookie-secret", "other-secret"):
            assert not [value for value in everything if secret in value], secret


async def test_probes_and_background_statements_make_no_spans(traced: Traced) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await traced.gql.http.get(path)).status_code == 200
    async with traced.engine.connect() as connection:  # outside any request
        await connection.execute(text("SELECT 1"))
    assert traced.spans() == []


def test_off_without_otel_variables() -> None:
    assert Tracing.from_environment({}) is None
    assert Tracing.from_environment({"OTEL_SERVICE_NAME": "linkgate"}) is None
    assert Tracing.from_environment({"OTEL_TRACES_EXPORTER": "none"}) is None
    assert Tracing.from_environment({
        "OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
    }) is None
    assert Tracing.from_environment({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}) is None
    assert Tracing.from_environment({
        "OTEL_SDK_DISABLED": "TRUE", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces",
    }) is None


def test_an_untraced_server_imports_no_opentelemetry(database_url: str) -> None:
    """Off costs nothing: serving a request loads no OpenTelemetry module, so nothing can
    make a span."""
    script = f"""
import asyncio, json, sys
import httpx
from linkgate.app import create_app
from linkgate.settings import Settings

async def main():
    app = create_app(Settings(database_url={database_url!r}, secret_key={TEST_SECRET!r}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://linkgate.test") as http:
        response = await http.post("/graphql", json={{"query": "query Ping {{ __typename }}"}})
        assert response.status_code == 200, response.text
    await app.state.engine.dispose()
    print(json.dumps(sorted(name for name in sys.modules if name.startswith("opentelemetry"))))

asyncio.run(main())
"""
    environ = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", script], env=environ, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []


@pytest.mark.parametrize(("environ", "names"), [
    ({}, []),
    ({"OTEL_TRACES_EXPORTER": ""}, []),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, ["otlp"]),
    ({"OTEL_TRACES_EXPORTER": " Console , otlp_proto_http,otlp "}, ["console", "otlp"]),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, ["otlp"]),
    ({"OTEL_TRACES_EXPORTER": "console", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, ["console"]),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, ["otlp"]),
    ({"OTEL_TRACES_EXPORTER": "console", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, ["console"]),
    ({"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "console"}, ["console"]),
])
def test_exporters_the_variables_choose(environ: dict[str, str], names: list[str]) -> None:
    assert exporter_names(environ) == names


@pytest.mark.parametrize(("environ", "variable", "value"), [
    ({"OTEL_TRACES_EXPORTER": "bogus"}, "OTEL_TRACES_EXPORTER", "bogus"),
    ({"OTEL_TRACES_EXPORTER": "otlp,zipkin"}, "OTEL_TRACES_EXPORTER", "zipkin"),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
     "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json",
      "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
])
def test_a_bad_exporter_is_a_configuration_error(environ: dict[str, str], variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Tracing.from_environment(environ)
    message = str(raised.value)
    assert message.startswith(f"{variable}: ") and value in message and "\n" not in message


@pytest.mark.parametrize("exporter", ["otlp", "console"])
def test_real_exporters_are_batched(exporter: str) -> None:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    tracing = Tracing.from_environment({"OTEL_TRACES_EXPORTER": exporter})
    assert tracing is not None
    try:
        processors = tracing.provider._active_span_processor._span_processors
        assert [type(processor) for processor in processors] == [BatchSpanProcessor]
    finally:
        tracing.shutdown()  # nothing was traced: nothing is sent


def test_the_service_is_named_linkgate_unless_the_variables_say(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    processor = SimpleSpanProcessor(InMemorySpanExporter())
    assert Tracing(processor).provider.resource.attributes["service.name"] == "linkgate"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes,deployment.environment=eu")
    resource = Tracing(processor).provider.resource
    assert resource.attributes["service.name"] == "from-attributes"
    assert resource.attributes["deployment.environment"] == "eu"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "gateway-eu")
    assert Tracing(processor).provider.resource.attributes["service.name"] == "gateway-eu"


async def test_a_path_of_the_clients_choosing_names_no_span(traced: Traced) -> None:
    """Span names come from the gateway's routes: a made-up path is ``other``, so a client
    can neither multiply span names nor write into them."""
    response = await traced.gql.http.get('/graphql%0A{"level":"INFO"}%1B[31m')
    mixed_case = await traced.gql.http.get("/Metrics")
    names = {traced.server_span(r.headers["x-request-id"]).name for r in (response, mixed_case)}
    assert names == {"GET other"}
