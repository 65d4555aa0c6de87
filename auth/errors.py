"""Failure types. Every expected failure is one of these; the schema maps each to one code."""

from __future__ import annotations

from typing import Any


class LinkgateError(Exception):
    """Base of every expected failure; ``code`` is what clients see in ``extensions.code``."""

    code = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extensions = extensions


class Unauthenticated(LinkgateError):
    code = "UNAUTHENTICATED"


class PermissionDenied(LinkgateError):
    code = "FORBIDDEN"


class NotFound(LinkgateError):
    """Also what an object of an invisible account looks like: no hint that it exists."""

    code = "NOT_FOUND"


class BadInput(LinkgateError):
    code = "BAD_USER_INPUT"


class RateLimited(LinkgateError):
    code = "RATE_LIMITED"
