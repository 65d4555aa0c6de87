"""The card processor, as ``resolvers.payments`` sees it: one small interface.

The server picks the concrete gateway from settings (``linkgate/card_gateways.py``): ``test``
(Stripe's test tokens, nothing leaves the process) or ``stripe`` (the official package). The
payment flow never knows which one it talks to.

To add a processor, implement ``PaymentGateway``:

- ``add_card`` turns a token the browser got from the processor's own card form into a card
  on file. It raises ``CardRejected`` for a token the processor refuses.
- ``charge`` takes money from a card on file. The ``idempotency_key`` is unique per payment
  row: the processor must treat a repeat of a key as the same charge, so a retry after a
  timeout can never charge twice. A decline is an outcome (``ChargeOutcome.declined``), not an
  exception. ``GatewayUnavailable`` means the outcome is unknown (timeout, network, 5xx).
- ``read_webhook`` verifies a webhook delivery's signature and says what it reports, or
  ``None`` for event types the payment flow does not use. It raises ``InvalidWebhook`` for a
  delivery that is not from the processor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol


@dataclass(frozen=True)
class CardOnFile:
    processor_ref: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    customer_ref: str | None = None


@dataclass(frozen=True)
class ChargeOutcome:
    status: Literal["succeeded", "declined", "pending"]
    processor_ref: str | None = None
    decline_code: str | None = None  # the processor's own, e.g. insufficient_funds
    message: str | None = None  # safe to show the customer

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


@dataclass(frozen=True)
class PaymentEvent:
    """What a webhook delivery reports about one charge."""

    event_id: str
    type: str
    outcome: ChargeOutcome
    # The payment row the charge was made for (the processor echoes it back as metadata).
    payment_id: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)


class CardRejected(Exception):
    """The processor refused the card token: unknown, used up, expired."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class GatewayUnavailable(Exception):
    """No answer from the processor: what happened to the charge is not known yet."""


class InvalidWebhook(Exception):
    """A webhook delivery whose signature does not verify, or that cannot be read."""


class PaymentGateway(Protocol):
    name: str

    async def add_card(self, *, token: str, customer_ref: str | None, account_number: str) -> CardOnFile: ...

    async def remove_card(self, card: CardOnFile) -> None: ...

    async def charge(
        self, *, card: CardOnFile, amount: int, currency: str, idempotency_key: str,
        description: str, metadata: dict[str, str],
    ) -> ChargeOutcome: ...

    def read_webhook(self, payload: bytes, signature: str | None) -> PaymentEvent | None: ...


class NoGateway:
    """Cards switched off (no ``LINKGATE_PAYMENT_GATEWAY``): every card operation is refused
    with ``PAYMENTS_UNAVAILABLE``; offline payments recorded by staff still work."""

    name = "none"

    async def add_card(self, *, token: str, customer_ref: str | None, account_number: str) -> CardOnFile:
        raise GatewayUnavailable("no payment gateway is configured")

    async def remove_card(self, card: CardOnFile) -> None:
        return None

    async def charge(
        self, *, card: CardOnFile, amount: int, currency: str, idempotency_key: str,
        description: str, metadata: dict[str, str],
    ) -> ChargeOutcome:
        raise GatewayUnavailable("no payment gateway is configured")

    def read_webhook(self, payload: bytes, signature: str | None) -> PaymentEvent | None:
        raise InvalidWebhook("no payment gateway is configured")
