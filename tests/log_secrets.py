"""The check that no log line of a whole test run holds a secret.

While the tests run, every secret the process makes is remembered: each random token
(``secrets.token_urlsafe``: refresh tokens, emailed links, invitations, enrollment tokens),
each TOTP secret, each password hashed or checked, each signed token (``jwt.encode``). Every
log record of the run, in the JSON format production uses, goes to one file, and so does
what each server subprocess printed (``tests.servers``). At the end of the run the file is
searched for every remembered secret, and for the shapes of secrets made by other processes
(signed tokens, prefixed tokens, a ``#token=`` link, an argon2 hash). A hit fails the run
(``pytest_sessionfinish`` in ``tests/conftest.py``).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pyotp
from argon2 import PasswordHasher

from linkgate.demo import DEMO_PASSWORD
from linkgate.logs import JsonFormatter, RequestIdFilter

# A password or token shorter than this, or made of few distinct characters, could match
# ordinary log text by chance ("aaaaaaaaaa" from the property tests).
MIN_SECRET_LENGTH = 10
FINGERPRINT = MIN_SECRET_LENGTH
# Public by design: the README and `serve --demo` print it.
PUBLIC_SECRETS = frozenset({DEMO_PASSWORD})

# Secrets made in another process (a server subprocess) are found by their shape.
SECRET_SHAPES = re.compile(
    r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]+"  # a signed token (JWT)
    r"|\b(?:lgr|lgi|lgp|lgs)_[\w-]{20,}"  # refresh, invitation, reset, sign-up tokens
    r"|\bENR-[\w-]{10,}"  # enrollment tokens
    r"|#token=[\w-]"  # an emailed link
    r"|\$argon2id?\$"  # a password hash
)


@dataclass
class Leak:
    secret_kind: str
    line: str


@dataclass
class SecretRecorder:
    """Remembers the secrets this process makes; ``install`` wraps their makers."""

    secrets: dict[str, str] = field(default_factory=dict)  # secret → kind
    _undo: list[Callable[[], None]] = field(default_factory=list)

    def remember(self, secret: object, kind: str) -> None:
        if isinstance(secret, bytes):
            secret = secret.decode("utf-8", "replace")
        if (
            isinstance(secret, str) and len(secret) >= MIN_SECRET_LENGTH
            and len(set(secret)) >= 5 and secret not in PUBLIC_SECRETS
        ):
            self.secrets.setdefault(secret, kind)

    def install(self) -> None:
        self._wrap(secrets, "token_urlsafe", "random token", result=True)
        self._wrap(pyotp, "random_base32", "TOTP secret", result=True)
        self._wrap(jwt, "encode", "signed token", result=True)
        self._wrap(PasswordHasher, "hash", "password", argument=1)
        self._wrap(PasswordHasher, "verify", "password", argument=2)

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()

    def _wrap(self, owner: Any, name: str, kind: str, *, result: bool = False, argument: int | None = None) -> None:
        original = getattr(owner, name)
        recorder = self

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if argument is not None and len(args) > argument:
                recorder.remember(args[argument], kind)
            value = original(*args, **kwargs)
            if result:
                recorder.remember(value, kind)
            return value

        setattr(owner, name, wrapper)
        self._undo.append(lambda: setattr(owner, name, original))


def find_leaks(text: str, known: dict[str, str]) -> list[Leak]:
    """Every line of ``text`` that holds a known secret or a secret's shape."""
    by_fingerprint: dict[str, list[str]] = {}
    for secret in known:
        by_fingerprint.setdefault(secret[:FINGERPRINT], []).append(secret)
    leaks = []
    for line in text.splitlines():
        shape = SECRET_SHAPES.search(line)
        if shape:
            leaks.append(Leak("the shape of a secret", line))
            continue
        for start in range(len(line) - FINGERPRINT + 1):
            candidates = by_fingerprint.get(line[start:start + FINGERPRINT])
            if candidates and any(line.startswith(secret, start) for secret in candidates):
                secret = next(s for s in candidates if line.startswith(s, start))
                leaks.append(Leak(known[secret], line))
                break
    return leaks


class RunLog:
    """The file that every log record of the run, and every server's output, goes to."""

    def __init__(self) -> None:
        handle, name = tempfile.mkstemp(prefix="linkgate-test-run-", suffix=".log")
        os.close(handle)
        self.path = Path(name)
        self.handler = logging.FileHandler(self.path, encoding="utf-8")
        self.handler.setFormatter(JsonFormatter())
        self.handler.addFilter(RequestIdFilter())

    def add_output(self, lines: Iterable[str]) -> None:
        with self.path.open("a", encoding="utf-8") as file:
            file.writelines(line if line.endswith("\n") else line + "\n" for line in lines)

    def read(self) -> str:
        self.handler.flush()
        return self.path.read_text(encoding="utf-8", errors="replace")


RECORDER = SecretRecorder()
RUN_LOG: RunLog | None = None
