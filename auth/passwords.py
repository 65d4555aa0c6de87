"""Password hashing with argon2id."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile

# Verified against when the email is unknown, so a missing user costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("linkgate-timing-equaliser")


def _secret(password: str) -> bytes:
    """The bytes hashed. ``surrogatepass``: a string that is not valid Unicode (a lone
    surrogate, which JSON can carry) is simply a password no one has, never an error."""
    return password.encode("utf-8", "surrogatepass")


def hash_password(password: str) -> str:
    return _hasher.hash(_secret(password))


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, _secret(password)) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False
