"""A graphql-transport-ws client for the tests: a real WebSocket (the ``websockets``
package) against a real server process."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

PROTOCOL = "graphql-transport-ws"


def socket_url(base: str) -> str:
    return base.replace("http://", "ws://", 1) + "/graphql"


@dataclass
class Closed:
    code: int
    reason: str


class Live:
    """One socket. ``open`` signs it in; ``next`` waits for the next message."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    @classmethod
    async def connect(cls, base: str, **options: Any) -> Live:
        return cls(await websockets.connect(socket_url(base), subprotocols=[PROTOCOL], **options))  # type: ignore[list-item]

    @classmethod
    async def open(cls, base: str, token: str, **options: Any) -> Live:
        live = await cls.connect(base, **options)
        await live.send({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        ack = await live.next()
        assert ack["type"] == "connection_ack", ack
        return live

    async def send(self, message: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(message))

    async def subscribe(self, operation_id: str, query: str, variables: dict[str, Any] | None = None) -> None:
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = variables
        await self.send({"id": operation_id, "type": "subscribe", "payload": payload})

    async def next(self, timeout: float = 10) -> dict[str, Any]:
        """The next message other than a ping (answered)."""
        while True:
            frame = await asyncio.wait_for(self.connection.recv(), timeout)
            # Text frames only: browsers' graphql-ws clients refuse binary ones.
            assert isinstance(frame, str), f"a binary frame: {frame[:80]!r}"
            message = json.loads(frame)
            if message["type"] == "ping":
                await self.send({"type": "pong"})
                continue
            return message

    async def answer(self, operation_id: str, timeout: float = 10) -> dict[str, Any]:
        """The next ``next`` or ``error`` of one operation (others' ``complete`` skipped)."""
        while True:
            message = await self.next(timeout)
            if message.get("id") == operation_id and message["type"] in {"next", "error"}:
                return message
            assert message["type"] == "complete", message

    async def silent_for(self, seconds: float) -> None:
        """Nothing arrives for ``seconds``."""
        try:
            message = await asyncio.wait_for(self.connection.recv(), seconds)
        except TimeoutError:
            return
        raise AssertionError(f"expected nothing, got {message!r}")

    async def closed(self, timeout: float = 10) -> Closed:
        """Waits for the server to close the socket; its code and reason."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self.connection.recv()
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, "closed without a close frame"
            return Closed(closed.rcvd.code, closed.rcvd.reason)

    async def close(self) -> None:
        await self.connection.close()


async def gauge(base: str, name: str) -> float | None:
    """One value of the server's ``GET /metrics``, or None if the series is absent."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{base}/metrics")).text
    found = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


async def eventually(check: Any, timeout: float = 10, every: float = 0.1) -> Any:
    """Polls ``check()`` (async) until it returns something truthy; that value."""
    async with asyncio.timeout(timeout):
        while True:
            value = await check()
            if value:
                return value
            await asyncio.sleep(every)
