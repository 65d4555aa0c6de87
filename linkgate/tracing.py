"""OpenTelemetry traces, on only when the standard ``OTEL_*`` variables ask for them.

Off (``Tracing.from_environment`` returns None, and no OpenTelemetry module is even imported)
unless ``OTEL_TRACES_EXPORTER`` names an exporter or an OTLP endpoint is set
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``);
``OTEL_SDK_DISABLED=true`` and ``OTEL_TRACES_EXPORTER=none`` keep it off. Exporters: ``otlp``
(HTTP/protobuf) and ``console``. The SDK reads everything else itself from the process
environment, as in any OpenTelemetry service: the endpoint, headers and timeouts
(``OTEL_EXPORTER_OTLP_*``), the sampler (``OTEL_TRACES_SAMPLER``), the batching
(``OTEL_BSP_*``), the resource (``OTEL_SERVICE_NAME``, default ``linkgate``, and
``OTEL_RESOURCE_ATTRIBUTES``), the propagators (``OTEL_PROPAGATORS``).

A traced request makes these spans, in one trace:

- ``POST /graphql``: the HTTP server span (OpenTelemetry's ASGI middleware), with the request
  id as ``linkgate.request_id``. It never sees the query string (a download link carries its
  token there), so no attribute holds it; header values it may be told to capture
  (``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*``) are redacted for ``authorization`` and
  ``cookie``. The health probes and ``/metrics`` make none (unless
  ``OTEL_PYTHON_ASGI_EXCLUDED_URLS`` or ``OTEL_PYTHON_EXCLUDED_URLS`` chooses other paths).
- ``query Dashboard``: one per GraphQL operation (Strawberry's OpenTelemetry extension), with
  ``graphql.operation.type`` and ``graphql.operation.name``, and its ``GraphQL Parsing`` and
  ``GraphQL Validation`` children. Not the document (a client may write a password into it
  as a literal), and no span per resolver (a dashboard resolves thousands of fields).
- ``SELECT linkgate``…: one per SQL statement (the SQLAlchemy instrumentation), with
  ``db.statement`` as sent, placeholders and all: never the parameters, and no SQL comments
  added. Only inside a traced request: background work and unsampled requests make none.

The tracer provider is this object's own: the global one is never set or read, so several
apps in one process (the tests) each trace to their own exporter.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from linkgate.observation import (
    ANONYMOUS, UNNAMED, current_request_id, method_label, operation_label, route_label,
)
from linkgate.settings import ConfigurationError

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.trace import Span

REQUEST_ID_ATTRIBUTE = "linkgate.request_id"
DEFAULT_SERVICE_NAME = "linkgate"
EXPORTERS = ("otlp", "console")
# Paths that make no span unless the standard variables name others: probes and scrapes
# arrive every few seconds and say nothing about the traffic.
DEFAULT_EXCLUDED_PATHS = "/healthz$,/readyz$,/metrics$"
# Header values never written to a span, whatever OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*
# captures (regular expressions searched in the header name: ``cookie`` covers Set-Cookie).
REDACTED_HEADERS = ("authorization", "cookie")

# ASGI scope entries, between the middleware here and the OpenTelemetry one.
_QUERY_STRING = "linkgate.tracing.query_string"
_SERVER_SPAN = "linkgate.tracing.server_span"


def exporter_names(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The trace exporters the variables ask for, none when tracing is off; a name this
    server cannot export to, or an OTLP protocol other than HTTP/protobuf, is a
    ``ConfigurationError`` naming the variable."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    value = environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if value:
        names: list[str] = []
        for name in (part.strip().lower() for part in value.split(",")):
            if name in ("", "none"):
                continue
            if name == "otlp_proto_http":
                name = "otlp"
            if name not in EXPORTERS:
                raise ConfigurationError(
                    f"OTEL_TRACES_EXPORTER: unknown trace exporter {name!r}; "
                    f"use {', '.join(EXPORTERS)} or none (a comma-separated list)"
                )
            if name not in names:
                names.append(name)
    elif any(environ.get(variable, "").strip() for variable in (
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT",
    )):
        names = ["otlp"]
    else:
        return []
    if "otlp" in names:
        for variable in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
            protocol = environ.get(variable, "").strip()
            if protocol:
                if protocol != "http/protobuf":
                    raise ConfigurationError(
                        f"{variable}: {protocol!r} is not supported; "
                        "this server sends OTLP traces as http/protobuf"
                    )
                break
    return names


class Tracing:
    """A tracer provider of its own and what the app needs to trace with it (see the module's
    docstring). Tests give it a span processor: ``Tracing(SimpleSpanProcessor(exporter))``."""

    def __init__(self, span_processor: SpanProcessor, *more: SpanProcessor,
                 resource: Resource | None = None) -> None:
        from opentelemetry.sdk.trace import TracerProvider

        self.provider: TracerProvider = TracerProvider(resource=resource or default_resource())
        for processor in (span_processor, *more):
            self.provider.add_span_processor(processor)
        self._statement_spans: list[Any] = []

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Tracing | None:
        """None unless the ``OTEL_*`` variables ask for traces (``exporter_names``)."""
        names = exporter_names(environ)
        if not names:
            return None
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        return cls(*(BatchSpanProcessor(_exporter(name)) for name in names))

    def outer_middleware(self) -> list[Middleware]:
        """Outside ``ObserveRequests``: the span per HTTP request."""
        return [Middleware(HttpSpans, tracer_provider=self.provider)]

    def inner_middleware(self) -> list[Middleware]:
        """Inside ``ObserveRequests``: puts the request id on the request's span."""
        return [Middleware(RequestIdOnSpan)]

    def schema_extensions(self) -> list[Any]:
        operation_spans = _operation_spans_class()
        provider = self.provider
        return [lambda: operation_spans(tracer_provider=provider)]

    def instrument_engine(self, engine: AsyncEngine) -> None:
        from opentelemetry.instrumentation.sqlalchemy import __version__ as version
        from opentelemetry.metrics import NoOpMeterProvider

        tracer = self.provider.get_tracer("opentelemetry.instrumentation.sqlalchemy", version)
        # The connection-pool metric is not kept (the listeners for it are not registered).
        unused = NoOpMeterProvider().get_meter("linkgate").create_up_down_counter("unused")
        self._statement_spans.append(
            _statement_spans_class()(tracer, engine.sync_engine, unused, enable_commenter=False)
        )

    def shutdown(self) -> None:
        """Stops tracing the engines and sends what is still buffered."""
        for statement_spans in self._statement_spans:
            statement_spans.remove_listeners()
        self._statement_spans.clear()
        self.provider.shutdown()


def default_resource() -> Resource:
    """The SDK's resource (``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_SERVICE_NAME``…), named
    ``linkgate`` when they name no service."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


def _exporter(name: str) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout…: OTEL_EXPORTER_OTLP_*


class HttpSpans:
    """OpenTelemetry's ASGI middleware, shown each request without its query string (which
    is handed back to the app behind it): the server span's attributes (``http.target``,
    ``http.url``, ``url.query``…, whichever semantic conventions are chosen) cannot hold a
    download token."""

    def __init__(self, app: ASGIApp, tracer_provider: TracerProvider) -> None:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
        from opentelemetry.metrics import NoOpMeterProvider

        self.app = app
        excluded = DEFAULT_EXCLUDED_PATHS
        for variable in ("OTEL_PYTHON_ASGI_EXCLUDED_URLS", "OTEL_PYTHON_EXCLUDED_URLS"):
            if variable in os.environ:  # set, even empty: what it says replaces the default
                excluded = os.environ[variable]
                break
        sanitized = os.environ.get("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS", "")
        self.traced = OpenTelemetryMiddleware(
            _QueryStringRestored(app),
            excluded_urls=excluded,
            server_request_hook=_remember_server_span,
            tracer_provider=tracer_provider,
            # The metrics are Prometheus's (linkgate.metrics); and no span per ASGI message.
            meter_provider=NoOpMeterProvider(),
            exclude_spans=["receive", "send"],
            # Named by route, never by the raw path: clients choose paths freely.
            default_span_details=_span_details,
            http_capture_headers_sanitize_fields=[
                *(field.strip() for field in sanitized.split(",") if field.strip()),
                *REDACTED_HEADERS,
            ],
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hidden = {**scope, "query_string": b"", _QUERY_STRING: scope.get("query_string", b"")}
        await self.traced(hidden, receive, send)


def _span_details(scope: Scope) -> tuple[str, dict[str, Any]]:
    return f"{method_label(scope.get('method', ''))} {route_label(scope.get('path', ''))}", {}


class _QueryStringRestored:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if _QUERY_STRING in scope:
            scope = dict(scope)
            scope["query_string"] = scope.pop(_QUERY_STRING)
        await self.app(scope, receive, send)


def _remember_server_span(span: Span, scope: Scope) -> None:
    scope[_SERVER_SPAN] = span  # for RequestIdOnSpan, once ObserveRequests has chosen the id


class RequestIdOnSpan:
    """ASGI middleware inside ``ObserveRequests``: the request id on the HTTP server span."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        span = scope.get(_SERVER_SPAN)
        request_id = current_request_id()
        if span is not None and request_id is not None and span.is_recording():
            span.set_attribute(REQUEST_ID_ATTRIBUTE, request_id)
        await self.app(scope, receive, send)


@functools.cache
def _operation_spans_class() -> type:
    """Defined on first use, so an untraced server imports no OpenTelemetry module."""
    from opentelemetry import context, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from strawberry.extensions import LifecycleStep, SchemaExtension
    from strawberry.extensions.tracing.opentelemetry import OpenTelemetryExtension

    class OperationSpans(OpenTelemetryExtension):
        """Strawberry's OpenTelemetry extension (its tracer, and its parse and validation
        spans), changed:

        - no span per resolver (not implementing ``resolve`` also spares every field the
          middleware call): a dashboard resolves thousands of fields;
        - the operation span is the current span while the operation runs, so the SQL it
          sends is its children (Strawberry's only parents its resolver spans to it);
        - named after the semantic conventions (``query Dashboard``), with
          ``graphql.operation.type`` and ``graphql.operation.name`` but not the document
          (it may hold secrets written as literals), INTERNAL rather than a second SERVER
          span under the HTTP one; status ERROR when the operation produced no data;
        - every span ended even when another extension's hook raises inside it (a refused
          document).
        """

        resolve = SchemaExtension.resolve  # type: ignore[assignment]

        def on_operation(self) -> Iterator[None]:
            span = self._tracer.start_span("GraphQL operation", kind=SpanKind.INTERNAL)
            self._span_holder[LifecycleStep.OPERATION] = span
            token = context.attach(trace.set_span_in_context(span))
            try:
                yield
            except BaseException as error:  # a refusal from a hook (LinkgateError), or a bug
                code = getattr(error, "code", None) or (getattr(error, "extensions", None) or {}).get("code")
                if isinstance(code, str) and span.is_recording():
                    span.set_attribute("linkgate.error_codes", [code])
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                raise
            finally:
                context.detach(token)
                try:
                    _describe_operation(span, self.execution_context)
                finally:
                    span.end()

        def on_parse(self) -> Iterator[None]:
            yield from self._step(LifecycleStep.PARSE, "GraphQL Parsing")

        def on_validate(self) -> Iterator[None]:
            yield from self._step(LifecycleStep.VALIDATION, "GraphQL Validation")

        def _step(self, step: LifecycleStep, name: str) -> Iterator[None]:
            operation = trace.set_span_in_context(self._span_holder[LifecycleStep.OPERATION])
            span = self._span_holder[step] = self._tracer.start_span(name, context=operation)
            try:
                yield
            finally:
                span.end()

    def _describe_operation(span: Span, execution_context: Any) -> None:
        if not span.is_recording():
            return
        kind: str | None
        try:
            kind = execution_context.operation_type.value
        except Exception:  # no document, or no such operation in it
            kind = None
        label = operation_label(execution_context.operation_name)
        name = None if label in (ANONYMOUS, UNNAMED) else label
        if kind is not None:
            span.set_attribute("graphql.operation.type", kind)
        if name is not None:
            span.set_attribute("graphql.operation.name", name)
        span.update_name(" ".join(part for part in (kind, name) if part) or "GraphQL operation")
        result = execution_context.result
        errors = getattr(result, "errors", None) or execution_context.pre_execution_errors
        if errors:
            codes = sorted({
                str((error.extensions or {}).get("code") or "INTERNAL_SERVER_ERROR")
                for error in errors
            })
            span.set_attribute("linkgate.error_codes", codes)
            if getattr(result, "data", None) is None:
                span.set_status(Status(StatusCode.ERROR))

    return OperationSpans


@functools.cache
def _statement_spans_class() -> type:
    from opentelemetry import trace
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    class StatementSpans(EngineTracer):
        """The SQLAlchemy instrumentation's listeners on one engine, removable on their own
        (``EngineTracer.remove_all_event_listeners`` removes every engine's, process-wide),
        without the connection-pool metric's, and only inside a recording span."""

        _TRACING_EVENTS = ("before_cursor_execute", "after_cursor_execute", "handle_error")

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._listeners: list[tuple[Any, str, Any]] = []
            super().__init__(*args, **kwargs)

        def _register_event_listener(  # type: ignore[override]
            self, target: Any, identifier: str, func: Any, *args: Any, **kw: Any
        ) -> None:
            if identifier in self._TRACING_EVENTS:
                event.listen(target, identifier, func, *args, **kw)
                self._listeners.append((target, identifier, func))

        def _before_cur_exec(self, conn: Any, cursor: Any, statement: Any, params: Any,
                             context: Any, executemany: Any) -> Any:
            if not trace.get_current_span().is_recording():
                return statement, params
            return super()._before_cur_exec(conn, cursor, statement, params, context, executemany)

        def remove_listeners(self) -> None:
            for target, identifier, func in self._listeners:
                if event.contains(target, identifier, func):
                    event.remove(target, identifier, func)
            self._listeners.clear()

    return StatementSpans

