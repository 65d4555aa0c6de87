"""The Starlette application: ``/graphql`` (POST, and GET with GraphiQL), ``/healthz``, ``/readyz``,
``/metrics``, ``/invoices/download`` (signed invoice links)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLRequestData
from strawberry.types import ExecutionResult
from strawberry.extensions import (
    AddValidationRules, MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter,
    ValidationCache,
)
from cross_web import HTTPException
from graphql import GraphQLError, OperationDefinitionNode, OperationType, specified_rules
from graphql import parse as parse_document
from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from auth.access_cache import AccessCache
from auth.errors import BadInput, LinkgateError
from linkgate.context import build_context
from linkgate.card_gateways import gateway_for
from linkgate.downloads import download_endpoint
from linkgate.encoding import encode_json
from linkgate.graphiql import graphiql_page, graphiql_routes
from linkgate.live import LiveSockets, live_updates_for, open_socket
from linkgate.payment_webhook import webhook_endpoint
from linkgate.metrics import Metrics
from linkgate.notifications import start_delivery_loop, stop_delivery_loop
from linkgate.observation import ObserveRequests, OperationNames, current_observation
from linkgate.persisted_documents import (
    NOT_FOUND_CACHE_CONTROL, NOT_FOUND_CODE, PersistedDocuments, PersistedQueryNotFound,
    RegisterPersistedQueries, TrustedDocuments, TrustedParsing, TrustedValidation, not_found_error,
)
from linkgate.request_body import Operation, operation_in_query_string, operations_in_body
from linkgate.serving import tune_garbage_collection
from linkgate.settings import Settings, get_settings
from linkgate.tracing import Tracing
from models.database import create_engine
from models.rights import missing_triggers
from resolvers.database import RequestSession
from resolvers.payment_gateway import NoGateway, PaymentGateway
from schema import LinkgateSchema, build_schema
from schema.input_rules import UntypableStringLiterals
from schema.document_limits import TOO_MANY_TOKENS, DocumentLimits, lex
from schema.limits import CostLimit
from schema.parsing import CachedParsing
from schema.trusted_documents import TrustedDocumentsOnly

logger = logging.getLogger("linkgate.app")


class JSONBody(JSONResponse):
    """Starlette's JSONResponse, rendered by ``encode_json``."""

    def render(self, content: Any) -> bytes:
        return encode_json(content)


def error_response(status: int, code: str, message: str, **extensions: Any) -> JSONResponse:
    """Failures outside GraphQL execution, in the same shape as GraphQL errors."""
    observation = current_observation()
    if observation is not None:
        observation.add_error_code(code)
    return JSONBody(
        {"errors": [{"message": message, "extensions": {"code": code, **extensions}}]},
        status_code=status,
    )


_HTTP_CODES = {401: "UNAUTHENTICATED", 403: "FORBIDDEN", 404: "NOT_FOUND", 429: "RATE_LIMITED"}


class GraphQLEndpoint(LiveSockets, GraphQL):
    """Strawberry's view with a database session per request and JSON errors throughout;
    subscriptions over graphql-transport-ws on the same path (``linkgate.live``)."""

    # False only in the benchmark that measures what permission checks cost (``create_app``).
    enforce_permissions: bool = True
    payments: PaymentGateway = NoGateway()
    access_cache: AccessCache = AccessCache(max_users=0)

    def __init__(
        self, schema: LinkgateSchema, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        persisted: PersistedDocuments,
    ) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.graphiql else None,
            allow_queries_via_get=True,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=timedelta(seconds=settings.subscription_init_timeout_seconds),
            max_subscriptions_per_connection=settings.max_subscriptions_per_socket,
            # Cross-site pages may open a socket only from the CORS origins (the token travels
            # in connection_init, never in a cookie, but a socket is still the browser's).
            allowed_origins=settings.cors_origins,
        )
        self.settings = settings
        self.sessions = sessions
        self.persisted = persisted  # what the requests' hashes and documentIds name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self.run(open_socket(scope, receive, send))
            return
        request = Request(scope, receive)
        request_id = scope["state"]["request_id"]  # given by ObserveRequests, with its header
        try:
            length = int(request.headers.get("content-length") or 0)
        except ValueError:
            length = 0
        body = None
        if length <= self.settings.max_body_bytes and request.method == "POST":
            # Counted as it arrives: a chunked upload has no Content-Length to check first.
            body = await _read_body(receive, self.settings.max_body_bytes)
        if length > self.settings.max_body_bytes or body is _TOO_LARGE:
            response: Response = error_response(
                413, "BAD_USER_INPUT", f"The request body is over {self.settings.max_body_bytes} bytes."
            )
        else:
            if body is not None:
                request = Request(scope, _replaying(body, receive))
            response = await self._respond(request, request_id)
        await response(scope, receive, send)

    async def _respond(self, request: Request, request_id: str) -> Response:
        if request.method == "POST" and not _is_json(request.headers.get("content-type", "")):
            # Only JSON bodies: a form, text/plain or multipart POST (what a browser can send
            # cross-site without a CORS preflight) never reaches GraphQL, so no CSRF either.
            response = error_response(
                415, "BAD_USER_INPUT", "Send the operation as application/json."
            )
            response.headers["accept-post"] = "application/json"
            return response
        async with self.sessions() as session:
            request.state.session = session
            try:
                async with asyncio.timeout(self.settings.request_timeout_seconds):
                    response = await self.run(request)
                return _negotiated(request, response)
            except TimeoutError:
                logger.warning("request ran past the time limit of %s seconds",
                               self.settings.request_timeout_seconds)
                return error_response(
                    503, "INTERNAL_SERVER_ERROR",
                    f"The request ran past its time limit of "
                    f"{self.settings.request_timeout_seconds} seconds.",
                    requestId=request_id,
                )
            except HTTPException as error:
                status = error.status_code
                if isinstance(error.__cause__, InvalidOperationTypeError):
                    # GraphQL over HTTP: a mutation over GET is a method the resource refuses.
                    response = error_response(405, "BAD_USER_INPUT", "Send mutations with POST.")
                    response.headers["allow"] = "POST"
                    return response
                return error_response(status, _HTTP_CODES.get(status, "BAD_USER_INPUT"), error.reason)
            except LinkgateError as error:
                status = 401 if error.code == "UNAUTHENTICATED" else 400
                return error_response(status, error.code, error.message, **error.extensions)
            except Exception:
                logger.exception("unexpected error")
                return error_response(
                    500, "INTERNAL_SERVER_ERROR",
                    "Internal server error. Quote the request id when reporting it.",
                    requestId=request_id,
                )
            finally:
                context = getattr(request.state, "context", None)
                if context is not None:
                    context.release()

    async def parse_http_body(self, request: Any) -> GraphQLRequestData | list[GraphQLRequestData]:
        """Strawberry's, with ``linkgate.request_body`` deciding what a body may be: any
        JSON value, bytes that are not UTF-8, a batch item that is not an object or a string
        with a NUL in it is a 400 naming the field, never an exception inside the view.
        A persisted document's hash or id becomes its text here (``linkgate.persisted_documents``),
        so everything after sees the text, as if the client had sent it."""
        transport = self._get_stream_transport_from_headers(request.headers)
        protocol: Any = transport.protocol if transport else "http"
        if request.method == "GET":
            found: Operation | list[Operation] = operation_in_query_string(request.query_params)
        else:
            found = operations_in_body(await request.get_body())
        if isinstance(found, list):
            self._validate_batch_request(found, protocol=protocol)
            return [
                _request_data(self.persisted.resolve(operation, f"[{index}]."), protocol)
                for index, operation in enumerate(found)
            ]
        return _request_data(self.persisted.resolve(found), protocol)

    async def execute_operation(  # type: ignore[override]
        self, request: Any, request_adapter: Any, request_data: Any, *args: Any, **kwargs: Any
    ) -> Any:
        """A batch runs its operations concurrently on the request's one session and
        transaction, so one operation's rollback would undo another's writes (a spent refresh
        token, a counted sign-in failure). Batches are for queries: one with a mutation in it
        is refused before anything runs."""
        if isinstance(request_data, _UnknownHash):
            return _not_found()
        if isinstance(request_data, list):
            texts = [item.query for item in request_data if isinstance(item.query, str)]
            # One budget for the whole batch: ten operations cost what one may, not ten times.
            if lex("\n".join(texts), self.settings.max_query_tokens) == TOO_MANY_TOKENS:
                raise BadInput(
                    f"The batch's documents hold more than {self.settings.max_query_tokens} "
                    "tokens together; send fewer or smaller operations.",
                    limit="tokens", maxTokens=self.settings.max_query_tokens,
                )
            if any(_has_mutation(text, self.settings.max_query_tokens) for text in texts):
                raise HTTPException(400, "Send mutations one request at a time: a batch may only hold queries.")
        return await super().execute_operation(request, request_adapter, request_data, *args, **kwargs)

    async def execute_single(  # type: ignore[override]
        self, request: Any, request_adapter: Any, sub_response: Any, context: Any,
        root_value: Any, request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """Strawberry's; an operation of a batch whose APQ hash is unknown gets its own
        ``PersistedQueryNotFound``, so the client resends that one and the others run."""
        if isinstance(request_data, _UnknownHash):
            return _not_found()
        return await super().execute_single(
            request=request, request_adapter=request_adapter, sub_response=sub_response,
            context=context, root_value=root_value, request_data=request_data,
        )

    async def process_result(self, request: Request, result: Any) -> Any:
        """Chooses the HTTP status of a single operation's response (see ``_negotiated``)."""
        data = await super().process_result(request, result)
        observation = current_observation()
        if observation is not None:
            observation.add_result(data.get("data"), data.get("errors"))
        # Request-level failures (the token, the database; not a field) get their HTTP status.
        request_errors = [error.extensions or {} for error in result.errors or () if not error.path]
        request_codes = {extensions.get("code") for extensions in request_errors}
        if result.data is None and "UNAUTHENTICATED" in request_codes:
            request.state.status_code = 401
        elif result.data is None and "INTERNAL_SERVER_ERROR" in request_codes:
            request.state.status_code = 500
        elif NOT_FOUND_CODE in request_codes:
            # Apollo's protocol: 200 whatever the Accept header (on a 400 apollo-client would
            # stop using hashes altogether), Apollo Server's body, and no copy kept by a CDN.
            data.pop("data", None)
            request.state.cache_control = NOT_FOUND_CACHE_CONTROL
        elif result.data is None and any(extensions.get("trustedDocumentsOnly") for extensions in request_errors):
            request.state.status_code = 400  # the document may never run here: the request is wrong
            data.pop("data", None)
        elif result.data is None and result.errors and _wants_graphql_response(request):
            # application/graphql-response+json: a request that never executed is a 4xx,
            # and its body has no ``data`` entry.
            request.state.status_code = 400
            data.pop("data", None)
        return data

    async def render_graphql_ide(self, request: Request) -> Response:
        return graphiql_page(self.settings)

    async def get_context(self, request: Any, response: Any) -> Any:
        if isinstance(request, WebSocket):
            return self.socket_context(request)
        context = build_context(
            request, request.state.session, self.settings,
            enforce_permissions=self.enforce_permissions, payments=self.payments,
            access_cache=self.access_cache,
        )
        request.state.context = context  # released when the response is ready (``_respond``)
        return context

    def encode_json(self, data: object) -> bytes:
        return encode_json(data)


async def check_rights_triggers(engine: AsyncEngine, cache: AccessCache) -> None:
    """Rights are cached only while the database moves the rights version on every change
    (models/rights.py). A database without its triggers (a restore without them, a table
    rebuilt by a later migration) or one that cannot be asked turns the cache off, loudly."""
    if not cache.max_users:
        return
    try:
        async with engine.connect() as connection:
            missing = await connection.run_sync(missing_triggers)
    except Exception as error:  # noqa: BLE001 - one line; the server still serves, uncached
        missing = [f"(could not check: {type(error).__name__}: {error})"]
    if missing:
        cache.max_users = 0
        logger.warning("rights are read on every request: the database lacks what keeps the rights "
                       "version moving: %s (run `linkgate db upgrade`, or restore with triggers)",
                       ", ".join(missing))


_TOO_LARGE = b"<over the limit>"


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body, or ``_TOO_LARGE`` as soon as it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away: what arrived is all there is
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return _TOO_LARGE
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands over the body already read, then the client's own events."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


@dataclass
class _UnknownHash(GraphQLRequestData):
    """An operation whose APQ hash this process does not hold: it never runs, and is
    answered ``PersistedQueryNotFound`` (``GraphQLEndpoint.execute_single``)."""


def _request_data(found: Operation | PersistedQueryNotFound, protocol: Any) -> GraphQLRequestData:
    kind = GraphQLRequestData
    if isinstance(found, PersistedQueryNotFound):
        kind, found = _UnknownHash, found.operation
    return kind(
        query=found.query, variables=found.variables,
        operation_name=found.operation_name, extensions=found.extensions,
        protocol=protocol,
    )


def _not_found() -> ExecutionResult:
    return ExecutionResult(data=None, errors=[not_found_error()])


def _has_mutation(query: str, max_tokens: int) -> bool:
    """Whether a batch item's document defines a mutation (an unparsable one is left to the
    normal path, which answers it with its own error). Read from its tokens, which costs a
    tenth of a parse: a ``mutation`` keyword starting a definition, outside any braces."""
    tokens = lex(query, max_tokens)
    if isinstance(tokens, list):
        depth, previous = 0, "}"
        for token in tokens:
            if token == "mutation" and depth == 0 and previous == "}":
                return True
            depth += (token == "{") - (token == "}")
            previous = token
        return False
    try:
        document = parse_document(query, max_tokens=max_tokens, no_location=True)
    except GraphQLError:
        return False
    return any(
        isinstance(definition, OperationDefinitionNode)
        and definition.operation is OperationType.MUTATION
        for definition in document.definitions
    )


def _is_json(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


def _wants_graphql_response(request: Request) -> bool:
    return "application/graphql-response+json" in request.headers.get("accept", "")


def _negotiated(request: Request, response: Response) -> Response:
    """The status ``process_result`` chose, and the media type the client asked for."""
    status = getattr(request.state, "status_code", None)
    if status is not None:
        response.status_code = status
    cache_control = getattr(request.state, "cache_control", None)
    if cache_control is not None:
        response.headers["cache-control"] = cache_control
    if response.media_type == "application/json" and _wants_graphql_response(request):
        response.headers["content-type"] = "application/graphql-response+json; charset=utf-8"
    return response


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def limit_rules(settings: Settings) -> list[type[ASTValidationRule]]:
    """The validation rules the limits add to GraphQL's own. Make them once per application:
    the validation cache is keyed by the rule classes, and the limiters make new classes each
    time they are constructed, so building them per request would validate every request
    afresh."""
    rules: list[type[ASTValidationRule]] = [
        UntypableStringLiterals,
        *QueryDepthLimiter(max_depth=settings.max_query_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.max_aliases).validation_rules,
    ]
    if not settings.introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    return rules


def shape_limits(settings: Settings) -> DocumentLimits:
    """The limits measured before parsing and before validation, so a hostile document is
    refused before either costs CPU; shared by the requests (it remembers the texts that
    passed)."""
    return DocumentLimits(
        max_tokens=settings.max_query_tokens,
        max_selections_per_set=settings.max_selections_per_set,
        max_selections=settings.max_selections,
        max_merge_comparisons=settings.max_merge_comparisons,
    )


def trusted_documents_for(settings: Settings) -> TrustedDocuments | None:
    """``LINKGATE_TRUSTED_DOCUMENTS``, every document checked as a request's would be (the
    tokens, the shape limits, GraphQL's rules and ``limit_rules``); None when unset.
    ``ConfigurationError`` in one line otherwise. The settings call this too, so that
    ``linkgate serve`` stops before it starts rather than in a worker."""
    if settings.trusted_documents is None:
        return None
    return TrustedDocuments.load(
        settings.trusted_documents,
        schema=build_schema()._schema,
        rules=[*specified_rules, *limit_rules(settings)],
        limits=shape_limits(settings),
    )


def create_app(
    settings: Settings | None = None,
    engine: AsyncEngine | None = None,
    *,
    enforce_permissions: bool = True,
    tracing: Tracing | None = None,
) -> Starlette:
    """The application. ``enforce_permissions=False`` exists for the benchmark only (bench/):
    it is an argument, never a setting, so no deployment can switch the checks off.
    ``tracing``: given by tests; otherwise from the ``OTEL_*`` variables (off unless set)."""
    settings = settings or get_settings()
    settings.signing_key  # noqa: B018 — a server without a key cannot start (ConfigurationError)
    # Persisted documents (linkgate/persisted_documents.py); a wrong manifest stops the start
    # here (ConfigurationError). Its documents are parsed and validated now, once: the parser
    # and validation caches take them from it.
    trusted = trusted_documents_for(settings)
    persisted = PersistedDocuments(
        trusted, trusted_only=settings.trusted_documents_only,
        cache_size=settings.persisted_query_cache_size,
    )
    engine = engine or create_engine(settings.database_url, **settings.pool_options())
    if tracing is None:
        tracing = Tracing.from_environment()  # None unless OTEL_* variables ask for traces
    if tracing is not None:
        tracing.instrument_engine(engine)
    metrics = Metrics(settings, engine)
    sessions = async_sessionmaker(engine, class_=RequestSession, expire_on_commit=False)

    # Dashboards send the same few documents over and over: parse and validate each once.
    # Both caches are bounded, so unique query texts cannot grow memory.
    rules = limit_rules(settings)
    document_limits = shape_limits(settings)

    def parsing() -> CachedParsing:
        return CachedParsing(maxsize=256) if trusted is None else TrustedParsing(trusted, maxsize=256)

    def validation() -> ValidationCache:
        return ValidationCache(maxsize=256) if trusted is None else TrustedValidation(trusted, maxsize=256)

    extensions: list[Any] = [
        # First of all: its parse and validation spans enclose the caches' and limits' work.
        *(tracing.schema_extensions() if tracing is not None else ()),
        # Then the token limit is a parse option, so it must be set before parsing.
        lambda: MaxTokensLimiter(max_token_count=settings.max_query_tokens),
        # Trusted documents only: a customer's other document is refused before it is
        # measured or parsed.
        *([lambda: TrustedDocumentsOnly(trusted)] if trusted is not None and persisted.trusted_only else []),
        # Before the parser cache (its on_parse parses) and ValidationCache (its on_validate
        # validates).
        document_limits.extension,
        parsing,
        validation,
        lambda: AddValidationRules(rules),
        lambda: CostLimit(max_cost=settings.max_query_cost),
        OperationNames,
        # Last: a document sent with its APQ hash is kept once everything before let it run.
        *([lambda: RegisterPersistedQueries(persisted)] if persisted.registered is not None else []),
    ]
    schema = build_schema(
        extensions,
        hide_suggestions=not settings.introspection,
        max_batch_operations=settings.max_batch_operations,
    )
    graphql = GraphQLEndpoint(schema, settings, sessions, persisted)
    graphql.enforce_permissions = enforce_permissions
    payments = gateway_for(settings)
    graphql.payments = payments
    graphql.access_cache = AccessCache(settings.access_cache_size)
    live = live_updates_for(settings, engine)
    graphql.live = live
    if payments.name == "test" and not settings.demo:
        logger.warning("LINKGATE_PAYMENT_GATEWAY=test: cards are simulated and nothing is charged; "
                       "any customer can mark invoices paid with Stripe's test tokens")

    async def readyz(request: Request) -> Response:
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as error:
            # A probe runs every few seconds: one line, not a traceback each time.
            logger.warning("readiness check failed: %s: %s", type(error).__name__, error)
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        delivery = start_delivery_loop(settings, engine)  # None unless configured
        tune_garbage_collection(settings.gc_young_threshold)
        await check_rights_triggers(engine, graphql.access_cache)
        await live.start()
        yield
        await live.stop()
        await stop_delivery_loop(delivery)
        close_gateway = getattr(payments, "aclose", None)
        if close_gateway is not None:
            await close_gateway()
        await engine.dispose()
        metrics.close()
        if tracing is not None:
            tracing.shutdown()

    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            *graphiql_routes(settings),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics.endpoint, methods=["GET"]),
            Route("/invoices/download", download_endpoint(settings, sessions), methods=["GET"]),
            Route("/payments/webhook", webhook_endpoint(settings, sessions, payments), methods=["POST"]),
        ],
        lifespan=lifespan,
        middleware=[
            *(tracing.outer_middleware() if tracing is not None else ()),
            # Outermost of ours: every response, a CORS preflight too, gets its request id.
            Middleware(ObserveRequests, sink=metrics),
            *(tracing.inner_middleware() if tracing is not None else ()),
            Middleware(
                CORSMiddleware, allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST"],
                allow_headers=["authorization", "content-type", *settings.cors_allow_headers],
                expose_headers=["x-request-id"], max_age=600,
            ),
        ],
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.metrics = metrics
    app.state.live = live  # read by GET /metrics (linkgate_live_*)
    app.state.access_cache = graphql.access_cache  # and linkgate_access_cache_*
    return app
