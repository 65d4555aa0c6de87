"""``POST /payments/webhook``: the card processor's confirmations (Stripe's signed events).

The gateway that owns the webhook verifies it (``PaymentGateway.read_webhook``); a delivery
that does not verify is refused with 400 and changes nothing. A verified event is applied
once per event id, and answered 200 even when seen before or not about a payment of ours, so
the processor stops redelivering it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from linkgate.settings import Settings
from resolvers.payment_gateway import InvalidWebhook, PaymentGateway
from resolvers.payments import apply_gateway_event

logger = logging.getLogger("linkgate.payments")

# Stripe's events are a few KB; anything far larger is not one.
MAX_WEBHOOK_BYTES = 256 * 1024


def webhook_endpoint(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], gateway: PaymentGateway
) -> Callable[[Request], Awaitable[Response]]:
    tunables = settings.tunables()

    async def webhook(request: Request) -> Response:
        from linkgate.app import error_response

        if gateway.name in ("test", "none"):
            return error_response(404, "NOT_FOUND", "This server takes no payment webhooks "
                                  "(they come with LINKGATE_PAYMENT_GATEWAY=stripe).")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_WEBHOOK_BYTES:
                return error_response(413, "BAD_USER_INPUT", "The webhook body is too large.")
        try:
            event = gateway.read_webhook(bytes(body), request.headers.get("stripe-signature"))
        except InvalidWebhook as refused:
            logger.warning("payment webhook refused: %s", refused)
            return error_response(400, "BAD_USER_INPUT", "The webhook could not be verified.")
        if event is None:
            return JSONResponse({"received": True, "applied": False})
        async with sessions() as session:
            applied = await apply_gateway_event(session, event, gateway=gateway.name, tunables=tunables)
        logger.info("payment webhook %s %s: %s", event.type, event.event_id,
                    "applied" if applied else "seen before")
        return JSONResponse({"received": True, "applied": applied})

    return webhook
