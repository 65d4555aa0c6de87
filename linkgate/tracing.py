"""OpenTelemetry traces, on only when ``OTEL_*`` variables ask for them. INTERFACE STUB."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.middleware import Middleware


class Tracing:
    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Tracing | None:
        return None

    def outer_middleware(self) -> list[Middleware]:
        """Outside ``ObserveRequests``: the span per HTTP request."""
        return []

    def inner_middleware(self) -> list[Middleware]:
        """Inside ``ObserveRequests``: puts the request id on the request's span."""
        return []

    def schema_extensions(self) -> list[Any]:
        return []

    def instrument_engine(self, engine: AsyncEngine) -> None:
        pass

    def shutdown(self) -> None:
        pass
