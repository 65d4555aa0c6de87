"""Random secrets handed to people or clients (emailed links, refresh tokens, recovery codes),
and the digest under which each is stored.

The secrets are long and random, so one fast SHA-256 is enough (unlike passwords, which need
argon2); it also lets a secret be found by its digest with a unique index, in one lookup.
Each kind has its own prefix, so a secret pasted in the wrong place is recognisably wrong,
and each lookup also filters by kind: an invitation token is never a reset token.
"""

from __future__ import annotations

import hashlib
import secrets


def digest(secret: str) -> str:
    """The stored form (hex SHA-256). Surrounding whitespace is dropped: secrets get copied."""
    return hashlib.sha256(secret.strip().encode("utf-8", "surrogatepass")).hexdigest()


def new_secret(prefix: str, *, random_bytes: int = 32) -> tuple[str, str]:
    """A fresh secret (``prefix`` + URL-safe random text) and its digest."""
    secret = prefix + secrets.token_urlsafe(random_bytes)
    return secret, digest(secret)
