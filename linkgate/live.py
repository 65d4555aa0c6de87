"""Subscriptions over graphql-transport-ws on ``/graphql`` (placeholder, being built)."""

from __future__ import annotations

from typing import Any

from starlette.websockets import WebSocket


class LiveSockets:
    """What ``GraphQLEndpoint`` adds for sockets."""

    def socket_context(self, request: WebSocket) -> Any:
        return {"request": request}
