"""Signed bearer tokens (JWT, HS256): short-lived access tokens naming a user, the user's token
version and the sign-in session they belong to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import jwt

from auth.errors import Unauthenticated

ALGORITHM = "HS256"
# Ids are BIGINT: a validly signed token with a larger ``sub`` is simply invalid.
_MAX_VERSION = 2**31 - 1
_MAX_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: int
    token_version: int
    session_id: int
    # When the token stops being accepted (seconds since the epoch): a socket opened with it
    # is closed then.
    expires_at: int | None = None


def issue_token(
    *, user_id: int, token_version: int, session_id: int, secret: str, issuer: str,
    ttl: timedelta, now: datetime | None = None,
) -> str:
    now = now or datetime.now(timezone.utc)
    claims = {
        "sub": str(user_id),
        "ver": token_version,
        "sid": session_id,
        "iss": issuer,
        "iat": now,
        "exp": now + ttl,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def _bounded_id(value: object, maximum: int = _MAX_ID) -> int:
    """A claim as a positive integer the database can compare (BIGINT ids, INTEGER version)."""
    number = int(str(value))
    if not 0 <= number <= maximum:
        raise ValueError("claim out of range")
    return number


def read_token(token: str, *, secret: str, issuer: str) -> TokenClaims:
    """Only HS256 with our key and issuer is accepted; ``alg: none`` and friends are refused,
    and so is any other token of ours (download links carry an audience, so they fail here)."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], issuer=issuer,
            options={"require": ["sub", "exp", "iss", "ver", "sid"]},
        )
        return TokenClaims(
            user_id=_bounded_id(claims["sub"]), token_version=_bounded_id(claims["ver"], _MAX_VERSION),
            session_id=_bounded_id(claims["sid"]),
            expires_at=int(claims["exp"]),
        )
    except jwt.ExpiredSignatureError as error:
        raise Unauthenticated("The token has expired; refresh the session or sign in again.") from error
    except (jwt.InvalidTokenError, ValueError, TypeError, OverflowError) as error:
        raise Unauthenticated("The token is invalid.") from error


@dataclass(frozen=True, slots=True)
class TokenSettings:
    secret: str
    issuer: str = "linkgate"
    ttl: timedelta = timedelta(minutes=15)

    def issue(
        self, *, user_id: int, token_version: int, session_id: int, now: datetime | None = None
    ) -> str:
        """A token valid until ``now + ttl`` (JWT times are whole seconds: pass ``now``
        without microseconds to know the exact expiry)."""
        return issue_token(
            user_id=user_id, token_version=token_version, session_id=session_id,
            secret=self.secret, issuer=self.issuer, ttl=self.ttl, now=now,
        )

    def read(self, token: str) -> TokenClaims:
        return read_token(token, secret=self.secret, issuer=self.issuer)
