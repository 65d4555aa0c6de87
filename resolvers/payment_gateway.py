"""The card processor, as ``resolvers.payments`` sees it: one small interface.

The server picks the concrete gateway from settings (``linkgate/card_gateways.py``): ``test``
(Stripe's test tokens, nothing leaves the process) or ``stripe`` (the official package). The
payment flow never knows which one it talks to.

To add a processor, implement ``PaymentGateway``:

- ``add_card`` turns a token the browser got from the processor's own card form into a card
  on file. It raises ``CardRejected`` for a token the processor refuses.
- A charge is two calls, so that its reference is stored before any money can move:
  ``open_charge`` creates it without taking money and returns the processor's reference (the
  ``idempotency_key``, unique per payment row, makes a repeat return the same one);
  ``confirm_charge`` takes the money. Confirming a charge that was already confirmed must
  answer its outcome, never charge again: so no retry, however late, charges twice (Stripe
  forgets idempotency keys after 24 hours; a stored reference it never forgets).
- ``check_charge`` reads a charge's outcome without taking money (``unconfirmed`` if nobody
  confirmed it); ``cancel_charge`` abandons an unconfirmed charge (and answers the real
  outcome if it was confirmed after all). Both are how an abandoned attempt is settled.
- A decline is an outcome (``ChargeOutcome.declined``), not an exception.
  ``GatewayUnavailable`` means the outcome is unknown (timeout, network, 5xx).
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
    # unconfirmed: opened, no money asked for yet; pending: asked for, no final answer yet.
    status: Literal["succeeded", "declined", "pending", "unconfirmed"]
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
    # What the processor says was charged; it must agree with the payment it names.
    amount: int | None = None
    currency: str | None = None
    # The payment row the charge was made for (the processor echoes it back as metadata).
    payment_id: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)


ABANDONED_MESSAGE = "This attempt got no answer for too long and was cancelled; nothing was charged."


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

    async def open_charge(
        self, *, card: CardOnFile, amount: int, currency: str, idempotency_key: str,
        description: str, metadata: dict[str, str],
    ) -> str: ...

    async def confirm_charge(self, *, reference: str, card: CardOnFile) -> ChargeOutcome: ...

    async def check_charge(self, *, reference: str) -> ChargeOutcome: ...

    async def cancel_charge(self, *, reference: str) -> ChargeOutcome: ...

    def read_webhook(self, payload: bytes, signature: str | None) -> PaymentEvent | None: ...


class NoGateway:
    """Cards switched off (no ``LINKGATE_PAYMENT_GATEWAY``): every card operation is refused
    with ``PAYMENTS_UNAVAILABLE``; offline payments recorded by staff still work."""

    name = "none"

    async def add_card(self, *, token: str, customer_ref: str | None, account_number: str) -> CardOnFile:
        raise GatewayUnavailable("no payment gateway is configured")

    async def remove_card(self, card: CardOnFile) -> None:
        return None

    async def open_charge(
        self, *, card: CardOnFile, amount: int, currency: str, idempotency_key: str,
        description: str, metadata: dict[str, str],
    ) -> str:
        raise GatewayUnavailable("no payment gateway is configured")

    async def confirm_charge(self, *, reference: str, card: CardOnFile) -> ChargeOutcome:
        raise GatewayUnavailable("no payment gateway is configured")

    async def check_charge(self, *, reference: str) -> ChargeOutcome:
        raise GatewayUnavailable("no payment gateway is configured")

    async def cancel_charge(self, *, reference: str) -> ChargeOutcome:
        raise GatewayUnavailable("no payment gateway is configured")

    def read_webhook(self, payload: bytes, signature: str | None) -> PaymentEvent | None:
        raise InvalidWebhook("no payment gateway is configured")
