"""Subscriptions over graphql-transport-ws on ``/graphql``: the socket's life.

- **Sign-in.** The token travels in ``connection_init``'s payload (``{"authorization":
  "Bearer <token>"}``), never in the URL. Missing, forged, expired or revoked: the socket is
  closed with 4403 before anything runs.
- **While open.** The socket closes with 4401 when its token expires, and when a check of
  its session (every ``LINKGATE_SUBSCRIPTION_RECHECK_SECONDS``, and before every event)
  finds it revoked. Each event is read again with the subscriber's current rights
  (``schema/subscription.py``).
- **Limits.** Subscriptions per socket and per user (on this process); a flood of subscribe
  messages closes the socket (4429); a subscriber that stops reading is cut off (4413).
- **Only subscriptions.** Queries and mutations go over HTTP, where each has its request's
  session, limits and logs; over the socket they get an error.

Events reach this process through ``linkgate/event_bus.py`` (``LISTEN`` on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from graphql import GraphQLError, OperationDefinitionNode, OperationType
from graphql import parse as parse_document
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.websockets import WebSocket
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler, Operation, _OperationStreamClosed,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import CompleteMessage, SubscribeMessage
from strawberry.utils.aio import aclosing

from auth.errors import LinkgateError
from auth.principals import principal_for
from auth.tokens import TokenClaims
from linkgate.context import build_context, token_settings
from linkgate.event_bus import HUB, LocalHub, PostgresListener, install_commit_hooks
from linkgate.settings import Settings
from schema.context import Context, Socket

logger = logging.getLogger("linkgate.live")

SESSION_ENDED = 4401
REFUSED = 4403
FLOODED = 4429
# Subscribe messages one socket may send in FLOOD_WINDOW seconds.
FLOOD_LIMIT, FLOOD_WINDOW = 30, 10.0
# How long a close may wait for a peer that does not read (then uvicorn's pings end it).
CLOSE_SECONDS = 5.0


class LiveUpdates:
    """The process's side of live updates: the hub its subscribers read, the ``LISTEN``
    connection on PostgreSQL, and who has how many subscriptions open."""

    def __init__(self, hub: LocalHub, listener: PostgresListener | None) -> None:
        self.hub = hub
        self.listener = listener
        self.sockets_by_user: dict[int, set[LinkgateTransportWS]] = defaultdict(set)

    async def start(self) -> None:
        if self.listener is not None:
            await self.listener.start()

    async def stop(self) -> None:
        if self.listener is not None:
            await self.listener.stop()

    def subscriptions_of(self, user_id: int) -> int:
        return sum(len(socket.operations) for socket in self.sockets_by_user.get(user_id, ()))


def live_updates_for(settings: Settings, engine: AsyncEngine,
                     sessions: async_sessionmaker[AsyncSession]) -> LiveUpdates:
    """In-process on SQLite; ``LISTEN/NOTIFY`` on PostgreSQL, so every replica hears every commit."""
    install_commit_hooks()
    HUB.queue_size = settings.subscription_queue_size
    listener = None
    if engine.dialect.name == "postgresql":
        listener = PostgresListener(settings.database_url, HUB)
    return LiveUpdates(HUB, listener)


@dataclass
class SocketState:
    """The connection's context until ``connection_init`` signs it in."""

    request: WebSocket
    connection_params: dict[str, Any] | None = None
    credentials: TokenClaims | None = None
    user_id: int | None = None
    subscribes: deque[float] = field(default_factory=deque)


class LinkgateTransportWS(BaseGraphQLTransportWSHandler[Any, Any]):
    """Strawberry's graphql-transport-ws handler, with sign-in, limits, a watchdog for the
    session, and a context of its own for each operation."""

    view: Any  # the GraphQLEndpoint (LiveSockets)
    context: SocketState
    watchdog: asyncio.Task[None] | None = None

    async def handle_connection_init(self, message: Any) -> None:
        await super().handle_connection_init(message)
        if self.connection_acknowledged and self.context.user_id is not None:
            self.view.live.sockets_by_user[self.context.user_id].add(self)
            self.watchdog = asyncio.create_task(self._watch_session())

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if self.connection_acknowledged:
            now = time.monotonic()
            times = self.context.subscribes
            times.append(now)
            while times and times[0] < now - FLOOD_WINDOW:
                times.popleft()
            if len(times) > FLOOD_LIMIT:
                await self.websocket.close(FLOODED, "Too many subscribe messages; slow down.")
                return
            user_id = self.context.user_id
            limit = self.view.settings.max_subscriptions_per_user
            if user_id is not None and self.view.live.subscriptions_of(user_id) >= limit:
                error = GraphQLError(
                    f"You have {limit} subscriptions open, the most one user may; complete one first.",
                    extensions={"code": "RATE_LIMITED"})
                await self.send_message({"id": message["id"], "type": "error", "payload": [error.formatted]})
                return
        await super().handle_subscribe(message)

    async def run_operation(self, operation: Operation[Any, Any]) -> None:
        """Strawberry's, with a context of the operation's own and only subscriptions."""
        refusal = _refusal(operation.query, self.view.settings.max_query_tokens)
        if refusal is not None:
            await operation.send_operation_message(
                {"id": operation.id, "type": "error", "payload": [refusal.formatted]})
            return
        context = self.view.operation_context(self.context, self.end)
        try:
            result_source = await self.schema.stream(
                operation.query, variable_values=operation.variables, context_value=context,
                root_value=self.root_value, operation_name=operation.operation_name,
            )
            async with aclosing(result_source):
                await self._send_result_stream(operation, result_source)
            await operation.send_operation_message(CompleteMessage(id=operation.id, type="complete"))
        except _OperationStreamClosed:
            return
        except LinkgateError as error:
            # A refusal before execution (a document limit, trusted documents only): told
            # to the client as that operation's error, as an HTTP request would be.
            refusal = GraphQLError(error.message, extensions={"code": error.code, **error.extensions})
            await operation.send_operation_message(
                {"id": operation.id, "type": "error", "payload": [refusal.formatted]})
        except Exception as error:  # pragma: no cover - logged once, the socket stays up
            await self.handle_task_exception(error)
            with contextlib.suppress(Exception):
                await operation.send_operation_message({"id": operation.id, "type": "complete"})
            self.operations.pop(operation.id, None)

    def end(self, code: int, reason: str) -> None:
        """Close the socket from inside one of its operations (which the close cancels)."""
        asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        """Operations first (their streams leave the hub at once), then the socket: its close
        frame may wait on a peer that does not read, so that wait is bounded."""
        for operation_id in list(self.operations):
            await self.cleanup_operation(operation_id)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_SECONDS):
                await self.websocket.close(code, reason)

    async def _watch_session(self) -> None:
        """Closes the socket when its token expires or its session is found revoked."""
        credentials = self.context.credentials
        assert credentials is not None
        every = self.view.settings.subscription_recheck_seconds
        while True:
            left = every
            if credentials.expires_at is not None:
                left = min(left, credentials.expires_at - time.time())
            if left <= 0:
                await self._close(SESSION_ENDED, "The token has expired; refresh it and reconnect.")
                return
            await asyncio.sleep(left)
            if credentials.expires_at is not None and time.time() >= credentials.expires_at:
                continue
            try:
                async with self.view.sessions() as session:
                    await principal_for(session, credentials)
            except LinkgateError as error:
                await self._close(SESSION_ENDED, error.message)
                return
            except Exception as error:  # the database is away: check again later
                logger.warning("live updates: session check failed (%s)", type(error).__name__)

    async def shutdown(self) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.watchdog
        user_id = self.context.user_id
        if user_id is not None:
            sockets = self.view.live.sockets_by_user.get(user_id)
            if sockets is not None:
                sockets.discard(self)
                if not sockets:
                    del self.view.live.sockets_by_user[user_id]
        await super().shutdown()


def _refusal(query: object, max_tokens: int) -> GraphQLError | None:
    """Why an operation may not run over the socket, if it may not: not a string, over the
    token limit, more than one operation, or not a subscription. A document that does not
    parse otherwise is left to Strawberry, which closes the socket with the syntax error (the
    protocol's rule)."""
    if not isinstance(query, str):
        return GraphQLError("The subscribe message needs a `query` string.",
                            extensions={"code": "BAD_USER_INPUT"})
    try:
        document = parse_document(query, max_tokens=max_tokens, no_location=True)
    except GraphQLError as error:
        if "tokens" not in error.message:
            return None
        return GraphQLError(f"The document holds more than {max_tokens} tokens.",
                            extensions={"code": "BAD_USER_INPUT", "limit": "tokens", "maxTokens": max_tokens})
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) > 1:
        return GraphQLError("Send one operation per subscribe message.",
                            extensions={"code": "BAD_USER_INPUT"})
    if operations and operations[0].operation is not OperationType.SUBSCRIPTION:
        return GraphQLError("Over the socket only subscriptions run; send queries and mutations "
                            "as HTTP requests.", extensions={"code": "BAD_USER_INPUT"})
    return None


class LiveSockets:
    """What ``GraphQLEndpoint`` adds for sockets (it has ``settings``, ``sessions``,
    ``payments`` and ``enforce_permissions``)."""

    graphql_transport_ws_handler_class = LinkgateTransportWS
    live: LiveUpdates
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]

    def socket_context(self, request: WebSocket) -> SocketState:
        return SocketState(request)

    async def on_ws_connect(self, state: SocketState) -> None:
        """``connection_init``: the token, checked as a request's would be, or 4403."""
        token = _token_in(state.connection_params or {})
        if token is None:
            raise ConnectionRejectionError({"message": "Send the token in connection_init: "
                                            "{\"authorization\": \"Bearer <token>\"}."})
        try:
            credentials = token_settings(self.settings).read(token)
            async with self.sessions() as session:
                principal = await principal_for(session, credentials)
        except LinkgateError as error:
            raise ConnectionRejectionError({"message": error.message}) from error
        state.credentials, state.user_id = credentials, principal.user_id
        return None

    def operation_context(self, state: SocketState, end: Any) -> Context:
        """A request-like context for one subscription: its own loaders and session per event."""
        context = build_context(
            state.request, self.sessions(), self.settings,
            enforce_permissions=getattr(self, "enforce_permissions", True),
            payments=getattr(self, "payments", None),
        )
        context.credentials = state.credentials
        context.socket = Socket(sessions=self.sessions, feed=self.live.hub, end=end)
        return context


def _token_in(params: dict[str, Any]) -> str | None:
    value = params.get("authorization", params.get("Authorization"))
    if not isinstance(value, str):
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or len(token) > 4096:
        return None
    return token.strip()
