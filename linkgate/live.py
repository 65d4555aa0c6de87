"""Subscriptions over graphql-transport-ws on ``/graphql`` (placeholder, being built)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.websockets import WebSocket

from linkgate.settings import Settings


class LiveUpdates:
    """The process's side of live updates: started and stopped with the app."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def live_updates_for(settings: Settings, engine: AsyncEngine,
                     sessions: async_sessionmaker[AsyncSession]) -> LiveUpdates:
    return LiveUpdates()


class LiveSockets:
    """What ``GraphQLEndpoint`` adds for sockets."""

    live: LiveUpdates

    def socket_context(self, request: WebSocket) -> Any:
        return {"request": request}
