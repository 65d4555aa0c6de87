"""Enrollment tokens: the secret printed on an account's invoices that proves control when linking.

Only a SHA-256 digest is stored. The token is high-entropy and random, so a fast unsalted hash
is enough (unlike passwords), and it lets a lookup by account number compare in constant time.
"""

from __future__ import annotations

import hmac
import secrets

from auth.secrets import digest

ENROLLMENT_TOKEN_PREFIX = "ENR-"


def new_enrollment_token() -> str:
    """A fresh token: the prefix plus 16 URL-safe characters (96 random bits)."""
    return ENROLLMENT_TOKEN_PREFIX + secrets.token_urlsafe(12)


def hash_enrollment_token(token: str) -> str:
    """The stored form. Surrounding whitespace is dropped: tokens are copied from invoices."""
    return digest(token)


def enrollment_token_matches(token: str, token_hash: str) -> bool:
    """Constant-time comparison, so a wrong guess reveals nothing about the stored digest."""
    return hmac.compare_digest(hash_enrollment_token(token), token_hash)
