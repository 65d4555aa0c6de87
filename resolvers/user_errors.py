"""Expected business failures, returned (not raised) in mutation payloads as ``userErrors``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UserError:
    message: str
    code: str
    field: list[str] | None = None
