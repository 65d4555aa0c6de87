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
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler, Operation, _OperationStreamClosed,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import CompleteMessage, SubscribeMessage
from strawberry.types.graphql import OperationType as StrawberryOperationType
from strawberry.utils.aio import aclosing

from auth.errors import LinkgateError
from auth.principals import principal_for
from auth.tokens import TokenClaims
from linkgate.context import build_context, token_settings
from linkgate.encoding import encode_json
from linkgate.event_bus import HUB, LocalHub, PostgresListener, install_commit_hooks
from linkgate.settings import Settings
from schema.context import FELL_BEHIND, SESSION_ENDED, Context, Socket

logger = logging.getLogger("linkgate.live")

FLOODED = 4429
# Subscribe messages one socket may send in FLOOD_WINDOW seconds.
FLOOD_LIMIT, FLOOD_WINDOW = 30, 10.0
# How long a close may wait for a peer that does not read; then the socket is ended here.
CLOSE_SECONDS = 5.0
# What may wait in one socket's outbox, and how long one send may take, before the peer is
# taken for one that does not read.
OUTBOX_BYTES = 4 * 1024 * 1024
SEND_SECONDS = 10.0
# The longest operation id a client may give (it is kept for the operation's life).
MAX_ID_CHARS = 128


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

    def tasks(self) -> int:
        """asyncio tasks the open sockets run (writers, watchdogs, operations): a leak shows."""
        return sum(socket.task_count() for sockets in self.sockets_by_user.values() for socket in sockets)

    def subscriptions_of(self, user_id: int) -> int:
        return sum(len(socket.operations) for socket in self.sockets_by_user.get(user_id, ()))


def live_updates_for(settings: Settings, engine: AsyncEngine) -> LiveUpdates:
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
    session, a context of its own for each operation, and an outbox.

    Everything sent goes through the outbox, bounded in bytes, which one writer task drains
    into the socket. So an operation never waits on the peer: the database session an event
    was read in is released as soon as its answer is queued, whether or not the peer reads.
    A peer too slow to take what is queued is cut off (4413)."""

    view: Any  # the GraphQLEndpoint (LiveSockets)
    context: SocketState
    watchdog: asyncio.Task[None] | None = None
    writer: asyncio.Task[None] | None = None
    cut: bool = False

    async def handle(self) -> None:
        self.outbox: asyncio.Queue[str] = asyncio.Queue()
        self.outbox_bytes = 0
        self.writer = asyncio.create_task(self._write())
        await super().handle()

    def task_count(self) -> int:
        tasks = [self.writer, self.watchdog, *(operation.task for operation in self.operations.values())]
        return sum(1 for task in tasks if task is not None and not task.done())

    async def handle_message(self, message: Any) -> None:
        """The shape of every message, before Strawberry reads it (it expects an object with
        a string ``id`` and a ``payload`` object, and fails on anything else)."""
        problem = _misshapen(message)
        if problem is not None:
            await self.handle_invalid_message(problem)
            return
        await super().handle_message(message)

    async def handle_connection_init(self, message: Any) -> None:
        await super().handle_connection_init(message)
        user_id = self.context.user_id
        if self.connection_acknowledged and user_id is not None:
            sockets = self.view.live.sockets_by_user[user_id]
            if len(sockets) >= self.view.settings.max_subscriptions_per_user:
                await self.websocket.close(FLOODED, "Too many sockets open for this user.")
                return
            sockets.add(self)
            self.watchdog = asyncio.create_task(self._watch_session())

    async def send_message(self, message: Any) -> None:
        if self.cut:
            return
        text = encode_json(message).decode("utf-8")
        if self.outbox_bytes + len(text) > OUTBOX_BYTES:
            self.cut_off(FELL_BEHIND, "Too much was waiting for this socket; reconnect.")
            return
        self.outbox_bytes += len(text)
        self.outbox.put_nowait(text)

    async def _write(self) -> None:
        """Drains the outbox into the socket, as text frames (browsers' graphql-ws refuses
        binary ones). A send the peer does not take within SEND_SECONDS cuts it off."""
        while True:
            text = await self.outbox.get()
            self.outbox_bytes -= len(text)
            try:
                async with asyncio.timeout(SEND_SECONDS):
                    await self.websocket.ws.send_text(text)
            except TimeoutError:
                self.cut_off(FELL_BEHIND, "The socket did not take what was sent; reconnect.")
                return
            except Exception:  # the peer is gone; the receive loop ends the socket
                return

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
                allowed_operation_types=(StrawberryOperationType.SUBSCRIPTION,),
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

    def cut_off(self, code: int, reason: str) -> None:
        """A peer that does not read: nothing more is queued, and the socket is closed."""
        if not self.cut:
            self.cut = True
            self.end(code, reason)

    async def _close(self, code: int, reason: str) -> None:
        """Operations first (their streams leave the hub at once), then what is queued, then
        the close frame. A peer that does not read could hold either forever, so both waits
        are bounded; past them the socket is ended here (``open_socket``), and everything the
        server held for it is released."""
        for operation_id in list(self.operations):
            await self.cleanup_operation(operation_id)
        try:
            async with asyncio.timeout(CLOSE_SECONDS):
                while not self.cut and self.outbox_bytes and self.writer is not None and not self.writer.done():
                    await asyncio.sleep(0.05)
                if self.writer is not None:
                    self.writer.cancel()
                await self.websocket.close(code, reason)
        except Exception:  # noqa: BLE001 - the timeout, or a peer already gone
            pass
        ended = getattr(self.websocket.ws.state, "ended", None)
        if ended is not None:
            ended.set()

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
        if self.writer is not None:
            self.writer.cancel()
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


def _misshapen(message: Any) -> str | None:
    """What is wrong with a message's shape, if anything (closed with 4400)."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return "Each message is a JSON object with a string `type`."
    if message["type"] not in ("subscribe", "complete"):
        return None
    operation_id = message.get("id")
    if not isinstance(operation_id, str) or not 0 < len(operation_id) <= MAX_ID_CHARS:
        return f"`id` must be a string of 1 to {MAX_ID_CHARS} characters."
    if message["type"] == "subscribe":
        payload = message.get("payload")
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            return "A subscribe message's `payload` is an object with a `query` string."
        if not isinstance(payload.get("variables"), (dict, type(None))):
            return "`variables` must be an object."
        if not isinstance(payload.get("operationName"), (str, type(None))):
            return "`operationName` must be a string."
    return None


def open_socket(scope: Scope, receive: Receive, send: Send) -> WebSocket:
    """The socket a connection becomes, which the server can also end on its own: once
    ``state.ended`` is set, the next receive answers a disconnect (a peer that never reads
    would otherwise keep its handler, and what it holds, for as long as TCP lasts)."""
    ended = asyncio.Event()

    async def receive_until_ended() -> Message:
        if not ended.is_set():
            receiving = asyncio.ensure_future(receive())
            ending = asyncio.ensure_future(ended.wait())
            await asyncio.wait({receiving, ending}, return_when=asyncio.FIRST_COMPLETED)
            ending.cancel()
            if receiving.done():
                return receiving.result()
            receiving.cancel()
        return {"type": "websocket.disconnect", "code": 1006}

    socket = WebSocket(scope, receive=receive_until_ended, send=send)
    socket.state.ended = ended
    return socket


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
            payments=getattr(self, "payments", None), signed_in_as=state.credentials,
            access_cache=getattr(self, "access_cache", None),
        )
        context.socket = Socket(sessions=self.sessions, feed=self.live.hub, end=end,
                                recheck_seconds=self.settings.subscription_recheck_seconds)
        return context


def _token_in(params: dict[str, Any]) -> str | None:
    value = params.get("authorization", params.get("Authorization"))
    if not isinstance(value, str):
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or len(token) > 4096:
        return None
    return token.strip()
