"""The Starlette application: ``/graphql`` (POST, and GET with GraphiQL), ``/healthz``, ``/readyz``,
``/invoices/download`` (signed invoice links)."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.extensions import (
    AddValidationRules, MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter,
    ValidationCache,
)
from cross_web import HTTPException
from graphql.validation import NoSchemaIntrospectionCustomRule

from auth.errors import LinkgateError
from linkgate.context import build_context
from linkgate.downloads import download_endpoint
from linkgate.notifications import start_delivery_loop, stop_delivery_loop
from linkgate.settings import Settings, get_settings
from models.database import create_engine
from resolvers.database import RequestSession
from schema import LinkgateSchema, build_schema
from schema.parsing import CachedParsing

logger = logging.getLogger("linkgate.app")


def error_response(status: int, code: str, message: str, **extensions: Any) -> JSONResponse:
    """Failures outside GraphQL execution, in the same shape as GraphQL errors."""
    return JSONResponse(
        {"errors": [{"message": message, "extensions": {"code": code, **extensions}}]},
        status_code=status,
    )


_HTTP_CODES = {401: "UNAUTHENTICATED", 403: "FORBIDDEN", 404: "NOT_FOUND", 429: "RATE_LIMITED"}


class GraphQLEndpoint(GraphQL):
    """Strawberry's view with a database session per request and JSON errors throughout."""

    # False only in the benchmark that measures what permission checks cost (``create_app``).
    enforce_permissions: bool = True

    def __init__(self, schema: LinkgateSchema, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.graphiql else None,
            allow_queries_via_get=True,
        )
        self.settings = settings
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        try:
            length = int(request.headers.get("content-length") or 0)
        except ValueError:
            length = 0
        if length > self.settings.max_body_bytes:
            response: Response = error_response(
                413, "BAD_USER_INPUT", f"The request body is over {self.settings.max_body_bytes} bytes."
            )
        else:
            response = await self._respond(request, request_id)
        response.headers["x-request-id"] = request_id
        await response(scope, receive, send)

    async def _respond(self, request: Request, request_id: str) -> Response:
        async with self.sessions() as session:
            request.state.session = session
            try:
                return await self.run(request)
            except HTTPException as error:
                status = error.status_code
                return error_response(status, _HTTP_CODES.get(status, "BAD_USER_INPUT"), error.reason)
            except LinkgateError as error:
                status = 401 if error.code == "UNAUTHENTICATED" else 400
                return error_response(status, error.code, error.message, **error.extensions)
            except Exception:
                logger.exception("unexpected error in request %s", request_id)
                return error_response(
                    500, "INTERNAL_SERVER_ERROR",
                    "Internal server error. Quote the request id when reporting it.",
                    requestId=request_id,
                )

    async def get_context(self, request: Any, response: Any) -> Any:
        return await build_context(
            request, request.state.session, self.settings,
            enforce_permissions=self.enforce_permissions,
        )

    def encode_json(self, data: object) -> bytes:
        # orjson: about ten times json.dumps on large dashboard responses.
        return orjson.dumps(data)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app(
    settings: Settings | None = None,
    engine: AsyncEngine | None = None,
    *,
    enforce_permissions: bool = True,
) -> Starlette:
    """The application. ``enforce_permissions=False`` exists for the benchmark only (bench/):
    it is an argument, never a setting, so no deployment can switch the checks off."""
    settings = settings or get_settings()
    engine = engine or create_engine(settings.database_url)
    sessions = async_sessionmaker(engine, class_=RequestSession, expire_on_commit=False)

    # Dashboards send the same few documents over and over: parse and validate each once.
    # Both caches are bounded, so unique query texts cannot grow memory.
    extensions: list[Any] = [
        lambda: CachedParsing(maxsize=256),
        lambda: ValidationCache(maxsize=256),
        lambda: QueryDepthLimiter(max_depth=settings.max_query_depth),
        lambda: MaxAliasesLimiter(max_alias_count=settings.max_aliases),
        lambda: MaxTokensLimiter(max_token_count=settings.max_query_tokens),
    ]
    if not settings.introspection:
        extensions.append(lambda: AddValidationRules([NoSchemaIntrospectionCustomRule]))
    graphql = GraphQLEndpoint(build_schema(extensions), settings, sessions)
    graphql.enforce_permissions = enforce_permissions

    async def readyz(request: Request) -> Response:
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception:
            logger.exception("readiness check failed")
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        delivery = start_delivery_loop(settings, engine)  # None unless configured
        yield
        await stop_delivery_loop(delivery)
        await engine.dispose()

    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/invoices/download", download_endpoint(settings, sessions), methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    return app
