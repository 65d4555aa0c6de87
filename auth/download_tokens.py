"""Short-lived signed links for invoice downloads (JWT, HS256, a key of their own).

A link names the user it was made for and the invoices it covers; it is not a permission.
Whoever follows it gets the files only if that user still holds ``INVOICES_READ`` on each
invoice's account at download time (the server re-checks with ``auth.policy.load_access``).

The key is derived from the application secret, and the claims carry their own audience, so a
download link is never accepted as a bearer token and a bearer token never opens a download.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import jwt

from auth.errors import BadInput

ALGORITHM = "HS256"
AUDIENCE = "linkgate:invoice-download"
MAX_INVOICES_PER_LINK = 50


class DownloadLinkExpired(BadInput):
    """The link was valid once; the client should ask for a new one."""


@dataclass(frozen=True, slots=True)
class DownloadClaims:
    user_id: int
    token_version: int
    invoice_ids: tuple[int, ...]
    # The sign-in session the link was made in: ending it ends the link too.
    session_id: int | None = None


def _download_key(secret: str) -> bytes:
    """A key of its own, derived from the application secret (key separation)."""
    return hmac.new(secret.encode(), b"linkgate invoice downloads", hashlib.sha256).digest()


def issue_download_token(
    *, secret: str, issuer: str, user_id: int, token_version: int,
    invoice_ids: list[int] | tuple[int, ...], ttl: timedelta, session_id: int | None = None,
) -> str:
    if not 1 <= len(invoice_ids) <= MAX_INVOICES_PER_LINK:
        raise BadInput(f"A download covers 1 to {MAX_INVOICES_PER_LINK} invoices.", field="ids")
    now = datetime.now(timezone.utc)
    claims = {
        "sub": str(user_id), "ver": token_version, "inv": list(invoice_ids),
        "iss": issuer, "aud": AUDIENCE, "iat": now, "exp": now + ttl,
    }
    if session_id is not None:
        claims["sid"] = session_id
    return jwt.encode(claims, _download_key(secret), algorithm=ALGORITHM)


def read_download_token(token: str, *, secret: str, issuer: str) -> DownloadClaims:
    """Raises ``DownloadLinkExpired`` or ``BadInput`` (tampered, foreign or malformed)."""
    try:
        claims = jwt.decode(
            token, _download_key(secret), algorithms=[ALGORITHM], issuer=issuer,
            audience=AUDIENCE, options={"require": ["sub", "exp", "iss", "aud", "ver", "inv"]},
        )
        invoice_ids = tuple(int(value) for value in claims["inv"])
        if not 1 <= len(invoice_ids) <= MAX_INVOICES_PER_LINK:
            raise ValueError("invoice count")
        session_id = claims.get("sid")
        return DownloadClaims(
            int(claims["sub"]), int(claims["ver"]), invoice_ids,
            None if session_id is None else int(session_id),
        )
    except jwt.ExpiredSignatureError as error:
        raise DownloadLinkExpired("The download link has expired; ask for a new one.") from error
    except (jwt.InvalidTokenError, ValueError, TypeError, OverflowError) as error:
        raise BadInput("The download link is not valid.", field="token") from error
