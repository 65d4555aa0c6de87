"""Prometheus metrics (``GET /metrics``). INTERFACE STUB: the implementation is being written."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from linkgate.observation import RequestObservation
from linkgate.settings import Settings


class Metrics:
    """Counts what ``ObserveRequests`` reports and answers ``GET /metrics``."""

    def __init__(self, settings: Settings, engine: AsyncEngine) -> None:
        self.settings = settings
        self.engine = engine

    def observe_request(self, observation: RequestObservation) -> None:
        pass

    async def endpoint(self, request: Request) -> Response:
        return PlainTextResponse("")
