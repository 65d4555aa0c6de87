"""What is known about each request once it is answered: its id, the GraphQL operations it
ran, their outcome and error codes, its status and duration. Written once, by
``ObserveRequests``, to the access log and to the metrics (``linkgate.metrics``).

The record lives in a context variable for the life of the request, so the GraphQL view and
its extension add to it, and every log record written meanwhile carries the request id
(``linkgate.logs.RequestIdFilter``), without passing anything down the layers.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from graphql import DocumentNode, FieldNode, OperationDefinitionNode
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.extensions import SchemaExtension

from linkgate.logs import text_value

access_logger = logging.getLogger("linkgate.access")

Outcome = Literal["ok", "partial", "error"]

# Operation names come from the client: only a GraphQL name, and not a long one, is kept.
_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,63}")
ANONYMOUS = "_anonymous"
UNNAMED = "_unknown"  # a request whose document never parsed, or named no operation in it


PERSISTED_QUERY_MISS = "PERSISTED_QUERY_NOT_FOUND"


@dataclass(slots=True)
class RequestObservation:
    request_id: str
    method: str
    path: str
    started: float = field(default_factory=time.perf_counter)
    operations: list[str] = field(default_factory=list)
    # (code, root field or None): RATE_LIMITED on ``login`` is a throttled sign-in.
    errors: list[tuple[str, str | None]] = field(default_factory=list)
    # Response key → field name of the root selections (``x: login(…)`` is still ``login``).
    root_fields: dict[str, str] = field(default_factory=dict)
    graphql_outcome: Outcome | None = None
    status: int = 0

    def add_operation(self, name: str | None) -> None:
        self.operations.append(operation_label(name))

    def add_result(self, data: object, errors: list[dict[str, Any]] | None) -> None:
        """One GraphQL result (a batch has several): its codes, and the outcome so far —
        the worst of the results."""
        for error in errors or ():
            code = (error.get("extensions") or {}).get("code") or "INTERNAL_SERVER_ERROR"
            path = error.get("path")
            key = str(path[0]) if path else None
            self.errors.append((str(code), self.root_fields.get(key, key) if key else None))
        outcome: Outcome = "ok" if not errors else ("partial" if data is not None else "error")
        if errors and all(code == PERSISTED_QUERY_MISS for code, _ in self.errors[-len(errors):]):
            # An APQ client's first step (it resends the document at once), not a failure: the
            # code is still counted in linkgate_graphql_errors_total.
            outcome = "ok"
        order = ("ok", "partial", "error")
        if self.graphql_outcome is None or order.index(outcome) > order.index(self.graphql_outcome):
            self.graphql_outcome = outcome

    def add_error_code(self, code: str) -> None:
        """A refusal before GraphQL ran (body too large, not JSON…)."""
        self.errors.append((code, None))
        self.graphql_outcome = "error"

    @property
    def outcome(self) -> Outcome:
        if self.graphql_outcome is not None:
            return self.graphql_outcome
        return "ok" if self.status < 400 else "error"

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started


def operation_label(name: str | None) -> str:
    if name is None:
        return ANONYMOUS
    return name if _NAME.fullmatch(name) else UNNAMED


# The gateway's routes (linkgate/app.py): a path that is none of them is ``other`` wherever a
# path becomes a label or a span name, since clients choose paths freely.
ROUTES = frozenset({"/graphql", "/healthz", "/readyz", "/metrics", "/invoices/download"})
OTHER_ROUTE = "other"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"


def route_label(path: str) -> str:
    return path if path in ROUTES else OTHER_ROUTE


def method_label(method: str) -> str:
    return method if method in METHODS else OTHER_METHOD


_current: ContextVar[RequestObservation | None] = ContextVar("linkgate_request", default=None)


def current_observation() -> RequestObservation | None:
    return _current.get()


def current_request_id() -> str | None:
    observation = _current.get()
    return observation.request_id if observation is not None else None


class RequestSink(Protocol):
    """Where a finished request is reported besides the access log (``linkgate.metrics``).
    It must not raise: the request is answered already."""

    def observe_request(self, observation: RequestObservation) -> None: ...


class ObserveRequests:
    """ASGI middleware, outermost: gives each HTTP request its id (``X-Request-Id`` on every
    response, CORS preflights and refusals included), writes one access line when it is
    answered and reports it to ``sink``."""

    def __init__(self, app: ASGIApp, sink: RequestSink | None = None) -> None:
        self.app = app
        self.sink = sink

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        observation = RequestObservation(
            request_id=uuid.uuid4().hex, method=scope["method"], path=scope["path"],
        )
        scope.setdefault("state", {})["request_id"] = observation.request_id
        header = (b"x-request-id", observation.request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                observation.status = message["status"]
                headers = [item for item in message.get("headers", ()) if item[0].lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        token = _current.set(observation)
        try:
            await self.app(scope, receive, send_with_id)
        except BaseException:
            observation.status = observation.status or 500
            raise
        finally:
            _current.reset(token)
            self._report(observation, scope)

    def _report(self, observation: RequestObservation, scope: Scope) -> None:
        duration_ms = round(observation.seconds * 1000, 2)
        codes = sorted({code for code, _ in observation.errors})
        operations = ",".join(observation.operations) or None
        client = scope.get("client")
        # The path only: a query string can hold a signed download token or a whole document.
        access_logger.info(
            # The path as sent, quoted when it holds a space, a quote or "=": a client cannot
            # make it look like the fields after it.
            "%s %s %s", observation.method, text_value(observation.path), observation.status,
            extra={
                "in_message": ("method", "path", "status"),
                "request_id": observation.request_id,
                "method": observation.method, "path": observation.path,
                "status": observation.status, "duration_ms": duration_ms,
                "operation": operations, "outcome": observation.outcome,
                "error_codes": codes or None,
                "client": client[0] if client else None,
            },
        )
        if self.sink is not None:
            self.sink.observe_request(observation)


class OperationNames(SchemaExtension):
    """Records the name of each operation a request runs (a batch runs several) on the
    request's observation; the view adds the results (``GraphQLEndpoint.process_result``).

    Recorded as execution starts, so a request cancelled at its time limit is still named;
    an operation that never executed (it did not parse or validate) is named when it ends."""

    recorded = False

    def on_execute(self) -> Iterator[None]:
        self._record()
        yield

    def on_operation(self) -> Iterator[None]:
        yield
        self._record()

    def _record(self) -> None:
        observation = _current.get()
        if observation is None or self.recorded:
            return
        self.recorded = True
        context = self.execution_context
        name: str | None
        if context.graphql_document is None:
            name = UNNAMED
        else:
            try:
                name = context.operation_name
            except Exception:
                name = UNNAMED
        observation.add_operation(name)
        if context.graphql_document is not None:
            observation.root_fields.update(_root_fields(context.graphql_document))


def _root_fields(document: DocumentNode) -> dict[str, str]:
    """The response key → field name of each operation's root fields, as written."""
    fields: dict[str, str] = {}
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            for selection in definition.selection_set.selections:
                if isinstance(selection, FieldNode):
                    key = selection.alias.value if selection.alias else selection.name.value
                    fields[key] = selection.name.value
    return fields
