"""Time-based one-time passwords (TOTP, RFC 6238) as every authenticator app makes them:
SHA-1, 6 digits, 30-second steps; and single-use recovery codes.

A code is accepted in the step it was made for or the one before or after (clock drift),
and never twice: the step of the last accepted code is kept (``User.totp_last_step``), so a
code seen over someone's shoulder is useless once it has been used.
"""

from __future__ import annotations

import secrets
import time

import pyotp

from auth.secrets import digest

ISSUER = "Linkgate"
STEP_SECONDS = 30
RECOVERY_CODE_COUNT = 10
_DRIFT_STEPS = 1


def new_totp_secret() -> str:
    return pyotp.random_base32()  # 160 bits, as RFC 4226 recommends


def provisioning_uri(secret: str, email: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads from a QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=ISSUER)


def matching_step(secret: str, code: str, *, last_step: int | None, now: float | None = None) -> int | None:
    """The time step ``code`` belongs to, if it is valid now and newer than ``last_step``."""
    code = "".join(code.split())
    if not (code.isascii() and code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    current = int((time.time() if now is None else now) // STEP_SECONDS)
    for step in range(current - _DRIFT_STEPS, current + _DRIFT_STEPS + 1):
        if last_step is not None and step <= last_step:
            continue
        if secrets.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def new_recovery_codes() -> list[str]:
    """Ten codes like ``7f3k-q9zx-2m4h``: 60 random bits each, easy to read and type."""
    alphabet = "23456789abcdefghjkmnpqrstuvwxyz"
    return [
        "-".join("".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(3))
        for _ in range(RECOVERY_CODE_COUNT)
    ]


def recovery_code_digest(code: str) -> str:
    """Codes are compared without case, spaces or dashes: people type them from paper."""
    return digest("".join(character for character in code.lower() if character.isalnum()))
