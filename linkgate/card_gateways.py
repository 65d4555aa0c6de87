"""The payment gateways the server can use, and the one setting that picks among them.

``test`` follows Stripe's documented test tokens, so a dashboard built against it behaves the
same against Stripe in test mode: ``tok_visa`` (and the other brands) are cards that pay,
``tok_chargeDeclined`` and its variants are cards that are accepted on file and declined when
charged. It keeps no state: what a card does is written in its reference, so every replica
answers the same. Having no memory, it cannot tell whether a charge was confirmed: checking one
answers ``unconfirmed``, so an abandoned attempt (its server died mid-payment) is cancelled
and the next click pays anew; with no real money behind it, that is the safe reading.
"""

from __future__ import annotations

import secrets

from linkgate.settings import Settings
from resolvers.payment_gateway import (
    ABANDONED_MESSAGE,
    CardOnFile, CardRejected, ChargeOutcome, InvalidWebhook, NoGateway, PaymentEvent, PaymentGateway,
)

# token → (brand, last 4, decline code or None). Stripe's test cards of the same names.
TEST_CARDS: dict[str, tuple[str, str, str | None]] = {
    "tok_visa": ("visa", "4242", None),
    "tok_visa_debit": ("visa", "5556", None),
    "tok_mastercard": ("mastercard", "4444", None),
    "tok_amex": ("amex", "8431", None),
    "tok_chargeDeclined": ("visa", "0002", "generic_decline"),
    "tok_chargeDeclinedInsufficientFunds": ("visa", "9995", "insufficient_funds"),
}
# Refused when added, as Stripe refuses them: the card cannot be kept on file at all.
TEST_CARDS_REFUSED: dict[str, str] = {
    "tok_chargeDeclinedExpiredCard": "Your card has expired.",
    "tok_chargeCustomerFail": "Your card was declined.",
}
_DECLINE_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
}
TEST_EXPIRY = (12, 2034)


class TestGateway:
    """Stripe's test-mode semantics in process; nothing is charged."""

    __test__ = False  # not a pytest class
    name = "test"

    async def add_card(self, *, token: str, customer_ref: str | None, account_number: str) -> CardOnFile:
        refused = TEST_CARDS_REFUSED.get(token.strip())
        if refused is not None:
            raise CardRejected("CARD_DECLINED", refused)
        card = TEST_CARDS.get(token.strip())
        if card is None:
            raise CardRejected("INVALID_CARD_TOKEN", "The card token is not one the test gateway "
                               "knows (try tok_visa or tok_chargeDeclined).")
        brand, last4, decline = card
        behaviour = decline or "pays"
        return CardOnFile(
            processor_ref=f"pm_test_{behaviour}_{secrets.token_hex(6)}", brand=brand, last4=last4,
            exp_month=TEST_EXPIRY[0], exp_year=TEST_EXPIRY[1],
            customer_ref=customer_ref or f"cus_test_{secrets.token_hex(6)}",
        )

    async def remove_card(self, card: CardOnFile) -> None:
        return None

    async def open_charge(
        self, *, card: CardOnFile, amount: int, currency: str, idempotency_key: str,
        description: str, metadata: dict[str, str],
    ) -> str:
        return "pi_test_" + idempotency_key.rsplit("-", 1)[-1]

    async def confirm_charge(self, *, reference: str, card: CardOnFile) -> ChargeOutcome:
        behaviour = card.processor_ref.removeprefix("pm_test_").rsplit("_", 1)[0]
        if behaviour == "pays":
            return ChargeOutcome("succeeded", processor_ref=reference)
        return ChargeOutcome("declined", processor_ref=reference, decline_code=behaviour,
                             message=_DECLINE_MESSAGES.get(behaviour, "Your card was declined."))

    async def check_charge(self, *, reference: str) -> ChargeOutcome:
        return ChargeOutcome("unconfirmed", processor_ref=reference)

    async def cancel_charge(self, *, reference: str) -> ChargeOutcome:
        return ChargeOutcome("declined", processor_ref=reference, decline_code="abandoned",
                             message=ABANDONED_MESSAGE)

    def read_webhook(self, payload: bytes, signature: str | None) -> PaymentEvent | None:
        raise InvalidWebhook("the test gateway sends no webhooks")


def gateway_for(settings: Settings) -> PaymentGateway:
    """The gateway ``LINKGATE_PAYMENT_GATEWAY`` names (``test`` in demo mode), else none."""
    name = settings.card_gateway
    if name == "test":
        return TestGateway()
    if name == "stripe":
        from linkgate.stripe_gateway import StripeGateway

        return StripeGateway.from_settings(settings)
    return NoGateway()
