"""Signed bearer tokens (JWT, HS256) carrying the user's token version."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import jwt

from auth.errors import Unauthenticated

ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: int
    token_version: int


def issue_token(
    *, user_id: int, token_version: int, secret: str, issuer: str, ttl: timedelta
) -> str:
    now = datetime.now(timezone.utc)
    claims = {
        "sub": str(user_id),
        "ver": token_version,
        "iss": issuer,
        "iat": now,
        "exp": now + ttl,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def read_token(token: str, *, secret: str, issuer: str) -> TokenClaims:
    """Only HS256 with our key and issuer is accepted; ``alg: none`` and friends are refused."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], issuer=issuer,
            options={"require": ["sub", "exp", "iss", "ver"]},
        )
        return TokenClaims(user_id=int(claims["sub"]), token_version=int(claims["ver"]))
    except jwt.ExpiredSignatureError as error:
        raise Unauthenticated("The token has expired; sign in again.") from error
    except (jwt.InvalidTokenError, ValueError, TypeError) as error:
        raise Unauthenticated("The token is invalid.") from error


@dataclass(frozen=True, slots=True)
class TokenSettings:
    secret: str
    issuer: str = "linkgate"
    ttl: timedelta = timedelta(hours=1)

    def issue(self, *, user_id: int, token_version: int) -> str:
        return issue_token(
            user_id=user_id, token_version=token_version,
            secret=self.secret, issuer=self.issuer, ttl=self.ttl,
        )

    def read(self, token: str) -> TokenClaims:
        return read_token(token, secret=self.secret, issuer=self.issuer)
