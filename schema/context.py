"""What every resolver gets as ``info.context``: built once per request by the server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from strawberry.types import Info as StrawberryInfo

from auth.access_cache import AccessCache
from auth.errors import Unauthenticated
from auth.policy import ANONYMOUS_ACCESS, AccessMap, load_access
from auth.principals import Principal, principal_for
from auth.sessions import SessionSettings
from auth.tokens import TokenClaims, TokenSettings
from auth.throttle import ThrottleSettings
from resolvers.live_events import EventFeed
from resolvers.loaders import Loaders
from resolvers.payment_gateway import NoGateway, PaymentGateway
from resolvers.tunables import Tunables


# graphql-transport-ws close codes the server chooses (docs/live-updates.md): the socket's
# session ended (token expired, session revoked), and a peer that stopped reading.
SESSION_ENDED = 4401
FELL_BEHIND = 4413


@dataclass
class Socket:
    """What a subscription has that a request has not: a socket that outlives any one
    transaction. Each event is read in a session of its own (``Context.rebind``), so no
    connection is held between events."""

    sessions: async_sessionmaker[AsyncSession]
    feed: EventFeed
    # Closes the socket with a graphql-transport-ws close code (the session ended: 4401).
    end: Callable[[int, str], None]
    # How stale the rights an event is passed by on may be (they are read again before any
    # event is delivered).
    recheck_seconds: float = 30.0


@dataclass
class Context:
    """Who is calling is known only from the token's signature until ``authenticate`` runs
    (after validation, before execution): rejected operations never touch the database."""

    session: AsyncSession
    loaders: Loaders
    tokens: TokenSettings
    throttle: ThrottleSettings
    sessions: SessionSettings
    credentials: TokenClaims | None = None
    principal: Principal | None = None
    access: AccessMap = ANONYMOUS_ACCESS
    tunables: Tunables = field(default_factory=Tunables)
    client_address: str = "unknown"
    user_agent: str | None = None
    request_id: str = "-"
    # The card processor the server was configured with (resolvers/payment_gateway.py).
    payments: PaymentGateway = field(default_factory=NoGateway)
    # Switched off only by the benchmark that measures what permission checks cost.
    enforce_permissions: bool = field(default=True)
    # Set for an operation over a socket (a subscription), ``None`` for a request.
    socket: Socket | None = None
    # The process's rights per user (auth/access_cache.py); a fresh one reads every time.
    access_cache: AccessCache = field(default_factory=lambda: AccessCache(max_users=0))

    async def authenticate(self) -> None:
        """Resolve the caller and its permissions, once per request. A subscription reads
        them in a session of its own, released at once."""
        if self.socket is not None:
            async with self.socket.sessions() as session:
                await self.rebind(session)
            return
        if self.credentials is not None and self.principal is None:
            self.principal = await principal_for(self.session, self.credentials)
        self.access = await self.access_cache.load(self.session, self.principal)

    async def rebind(self, session: AsyncSession) -> None:
        """A subscription, before each event: a new session, and the caller and its rights
        read again in it, so a revoked session or right is never honoured after the revoking
        transaction committed. Raises ``Unauthenticated`` when the session has ended."""
        assert self.credentials is not None
        self.session = session
        self.loaders = Loaders(session)
        self.principal = await principal_for(session, self.credentials)
        self.access = await self.access_cache.load(session, self.principal)

    def release(self) -> None:
        """The request is over: free what it loaded (see ``Loaders.clear``)."""
        self.loaders.clear()

    def signed_in(self) -> Principal:
        """The caller of a mutation that needs one; anonymous callers get UNAUTHENTICATED."""
        if self.principal is None:
            raise Unauthenticated("Sign in first.")
        return self.principal

    def grant_ownership(self, account_id: int) -> None:
        """After a mutation creates an account, later fields see it as its owner would."""
        self.access = self.access.with_owned(account_id)

    async def reload_access(self) -> None:
        """After a committed change to links or memberships, later fields see the new rights."""
        self.access = await load_access(self.session, self.principal)


Info = StrawberryInfo[Context, None]
