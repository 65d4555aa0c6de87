"""Enrollment tokens: the secret printed on an account's invoices that proves control when linking.

The token is derived, never stored: an HMAC of the account id and a per-account version under a
key derived from ``LINKGATE_SECRET_KEY``. That is what lets every invoice print it (the seeds
do) without keeping it in clear, and rotating it is bumping the version: the old token stops
matching at once, everywhere.

It is written for people copying it from paper: ``ENR-`` and four groups of four characters
from an alphabet without 0/O and 1/I/L; case, spaces and hyphens do not matter when checking.

Accounts made before tokens were derived also keep the digest of their random token
(``enrollment_token_hash``); that one is accepted until the account's first rotation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from auth.secrets import digest

ENROLLMENT_TOKEN_PREFIX = "ENR-"
# Crockford's base32: no I, L, O, U; 16 characters carry 80 bits.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TRANSLATE = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _ALPHABET.encode())
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})


def enrollment_key(secret_key: str) -> bytes:
    """A key of its own, so an enrollment token says nothing about the token-signing key."""
    return hmac.new(secret_key.encode(), b"linkgate enrollment tokens v1", hashlib.sha256).digest()


def enrollment_token(key: bytes, account_id: int, version: int) -> str:
    """The account's token at ``version``; the same inputs always give the same token."""
    if not key:
        raise ValueError("enrollment tokens need a key (LINKGATE_SECRET_KEY)")
    mac = hmac.new(key, f"{account_id}:{version}".encode(), hashlib.sha256).digest()
    text = base64.b32encode(mac[:10]).translate(_TRANSLATE).decode()
    return ENROLLMENT_TOKEN_PREFIX + "-".join(text[i:i + 4] for i in range(0, 16, 4))


def _normalized(token: str) -> str:
    text = "".join(token.split()).upper().replace("-", "")
    return text.removeprefix("ENR").translate(_READ_AS)


def enrollment_token_matches(
    token: str, *, key: bytes, account_id: int, version: int, legacy_hash: str | None = None
) -> bool:
    """Constant-time comparison with the current token (and the legacy one, if any)."""
    current = hmac.compare_digest(_normalized(token), _normalized(enrollment_token(key, account_id, version)))
    legacy = legacy_hash is not None and hmac.compare_digest(digest(token), legacy_hash)
    return current | legacy


def hash_enrollment_token(token: str) -> str:
    """The digest kept for tokens made before they were derived (see the module docstring)."""
    return digest(token)
