"""Builds the per-request ``Context``: session, principal, permissions, loaders."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from auth.access_cache import AccessCache
from auth.sessions import SessionSettings
from auth.throttle import ThrottleSettings
from auth.tokens import TokenClaims, TokenSettings
from linkgate.client_address import client_address
from linkgate.settings import Settings
from resolvers.loaders import Loaders
from resolvers.payment_gateway import NoGateway, PaymentGateway
from schema.context import Context


def bearer_token(connection: HTTPConnection) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_settings(settings: Settings) -> TokenSettings:
    return TokenSettings(
        secret=settings.signing_key, issuer=settings.token_issuer, ttl=settings.token_ttl
    )


def throttle_settings(settings: Settings) -> ThrottleSettings:
    return ThrottleSettings(
        max_failures=settings.login_max_failures,
        client_max_failures=settings.login_client_max_failures,
        identity_max_failures=settings.login_email_max_failures,
        window=timedelta(seconds=settings.login_window_seconds),
    )


def build_context(
    connection: HTTPConnection,
    session: AsyncSession,
    settings: Settings,
    *,
    enforce_permissions: bool = True,
    payments: PaymentGateway | None = None,
    signed_in_as: TokenClaims | None = None,
    access_cache: AccessCache | None = None,
) -> Context:
    """Raises ``Unauthenticated`` for a token that is present but forged or expired; that
    needs no database. Revocation is checked by ``Context.authenticate``, after validation.

    ``enforce_permissions=False`` comes only from ``create_app``'s benchmark argument."""
    tokens = token_settings(settings)
    if signed_in_as is not None:  # a socket: signed in by connection_init, not by a header
        credentials: TokenClaims | None = signed_in_as
    else:
        token = bearer_token(connection)
        credentials = tokens.read(token) if token is not None else None
    return Context(
        session=session,
        credentials=credentials,
        loaders=Loaders(session),
        tokens=tokens,
        sessions=SessionSettings(
            tokens=tokens, lifetime=timedelta(seconds=settings.session_ttl_seconds)
        ),
        throttle=throttle_settings(settings),
        tunables=settings.tunables(),
        client_address=client_address(
            connection.client.host if connection.client else None,
            connection.headers.getlist("x-forwarded-for"), settings.trusted_proxies,
        ),
        user_agent=connection.headers.get("user-agent"),
        request_id=connection.scope.get("state", {}).get("request_id") or uuid.uuid4().hex,
        enforce_permissions=enforce_permissions,
        payments=payments or NoGateway(),
        access_cache=AccessCache(max_users=0) if access_cache is None else access_cache,
    )
