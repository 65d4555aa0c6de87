"""The ``stripe`` payment gateway: cards on file and charges through Stripe's own client.

What Stripe calls are made, and why they are made that way:

- a card is a PaymentMethod (made from the ``tok_…`` Stripe.js returned, or a ``pm_…`` it
  made itself) attached to one Stripe Customer per account, so it can be charged later with
  the customer away (``off_session``);
- a charge is one PaymentIntent, in two steps. ``open_charge`` creates it unconfirmed (no
  money can move), with the payment row's key as Stripe's ``Idempotency-Key`` so a repeat
  returns the same PaymentIntent; the flow stores its ``pi_…`` on the payment row.
  ``confirm_charge`` confirms that very PaymentIntent (``off_session``: Stripe only accepts
  ``off_session`` when confirming). A PaymentIntent succeeds at most once: confirming one that
  was already confirmed is Stripe's 400 ``payment_intent_unexpected_state``, answered here by
  reading it back, never by a new charge. So a retry is safe however late it comes, also after
  Stripe has forgotten the idempotency key (24 hours): the stored reference it never forgets;
- ``check_charge`` reads a PaymentIntent without touching it and ``cancel_charge`` cancels
  one nobody confirmed (``cancellation_reason=abandoned``): how an abandoned attempt is
  settled without ever charging its card. Cancelling one that was confirmed meanwhile is
  refused by Stripe; its real outcome is read back and answered instead;
- requests go over httpx through ``HttpxTransport``, a ``stripe.HTTPClient`` of our own (the
  package's extension point): stripe's ``HTTPXClient`` sends the form body as httpx's
  deprecated ``data=``, which warns on every call;
- no automatic retries in the client (``max_network_retries=0``): one click waits at most
  ``LINKGATE_PAYMENT_TIMEOUT_SECONDS`` for each Stripe call, and the retry is the customer's
  (it drives the same stored PaymentIntent again);
- a webhook delivery is verified with ``Webhook.construct_event``: the HMAC of the endpoint's
  secret over the timestamp and the body, and the timestamp within Stripe's tolerance
  (5 minutes), so a delivery captured and replayed later is refused. The event says which
  PaymentIntent it is about and its amount and currency, which the flow checks against the
  payment before settling anything.

Stripe's answers map onto the gateway interface: a card error (HTTP 402) is a decline with
Stripe's decline code and its customer-safe message; a timeout, a network error, a 5xx, a 429
or a 409 (the same key, or the same PaymentIntent, still in flight) is ``GatewayUnavailable``,
the outcome being unknown. No log line here holds the API key, the webhook secret or a
signature.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, NoReturn

import httpx
import stripe

from linkgate.settings import Settings
from resolvers.payment_gateway import (
    ABANDONED_MESSAGE, CardOnFile, CardRejected, ChargeOutcome, GatewayUnavailable, InvalidWebhook,
    PaymentEvent,
)

logger = logging.getLogger("linkgate.payments.stripe")

# The webhook events that settle a payment; Stripe sends many more, none of which do.
_EVENTS = {"payment_intent.succeeded": "succeeded", "payment_intent.payment_failed": "declined"}
DECLINED = "Your card was declined."
# A cancelled PaymentIntent (``cancel_charge``): nothing was charged and nothing can be any
# more. Answered as the ``test`` gateway answers it, so that every caller in the flow records an
# abandoned attempt (not a card declined by its bank).
CANCELLED_CODE = "abandoned"


class HttpxTransport(stripe.HTTPClient):
    """Stripe's requests over one ``httpx.AsyncClient`` (async only: the gateway never calls
    Stripe synchronously). Any transport failure (timeout, refused or broken connection) is
    Stripe's ``APIConnectionError``, which the gateway reads as "outcome unknown"."""

    name = "httpx"

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._client = httpx.AsyncClient(timeout=timeout)

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        try:
            response = await self._client.request(method, url, headers=dict(headers),
                                                  content=post_data or None)
        except httpx.HTTPError as error:
            raise stripe.APIConnectionError(f"no answer from Stripe ({type(error).__name__})",
                                            should_retry=True) from error
        return response.content, response.status_code, response.headers

    def sleep_async(self, secs: float) -> Any:
        return asyncio.sleep(secs)

    async def close_async(self) -> None:
        await self._client.aclose()

    def request(self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None) -> NoReturn:
        raise NotImplementedError("the stripe gateway calls Stripe asynchronously only")

    request_stream = request

    async def request_stream_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> NoReturn:
        raise NotImplementedError("the stripe gateway reads no streamed responses")


class StripeGateway:
    """``PaymentGateway`` over ``stripe.StripeClient`` (its ``*_async`` methods, on httpx)."""

    name = "stripe"

    def __init__(self, client: stripe.StripeClient, http: stripe.HTTPClient, webhook_secret: str) -> None:
        self._client = client
        self._http = http
        self._webhook_secret = webhook_secret

    @classmethod
    def from_settings(cls, settings: Settings) -> StripeGateway:
        if settings.stripe_api_key is None or settings.stripe_webhook_secret is None:
            raise ValueError("the stripe gateway needs LINKGATE_STRIPE_API_KEY and LINKGATE_STRIPE_WEBHOOK_SECRET")
        http = HttpxTransport(timeout=settings.payment_timeout_seconds)
        base = {"api": settings.stripe_api_base.rstrip("/")} if settings.stripe_api_base else None
        client = stripe.StripeClient(
            settings.stripe_api_key.get_secret_value(), base_addresses=base, http_client=http,  # type: ignore[arg-type]
            max_network_retries=0,
        )
        return cls(client, http, settings.stripe_webhook_secret.get_secret_value())

    async def aclose(self) -> None:
        """Closes the HTTP connections to Stripe (at shutdown)."""
        await self._http.close_async()

    # ------------------------------------------------------------------------------- cards

    async def add_card(self, *, token: str, customer_ref: str | None, account_number: str) -> CardOnFile:
        methods = self._client.v1.payment_methods
        try:
            if token.startswith("pm_"):
                method_id = token  # Stripe.js made the PaymentMethod itself
            else:
                made = await methods.create_async({"type": "card", "card": {"token": token}})
                method_id = made.id
            if customer_ref is None:
                customer = await self._client.v1.customers.create_async({
                    "description": f"Linkgate account {account_number}",
                    "metadata": {"account": account_number},
                })
                customer_ref = customer.id
            method = (await methods.attach_async(method_id, {"customer": customer_ref})).to_dict()
        except stripe.CardError as declined:
            raise CardRejected("CARD_DECLINED", _safe_message(_error_of(declined).get("message"))) from None
        except stripe.InvalidRequestError as refused:
            if _in_flight(refused):
                raise _unavailable("add a card", refused) from None
            # No such token, a token used before, not a card: nothing to retry as it is.
            logger.info("stripe refused a card token: %s", refused.code or "invalid_request")
            raise CardRejected("INVALID_CARD_TOKEN", "The card processor did not accept the card "
                               "token; enter the card again.") from None
        except stripe.StripeError as failure:
            raise _unavailable("add a card", failure) from None
        card = method.get("card")
        if method.get("type") != "card" or not isinstance(card, dict):
            raise CardRejected("INVALID_CARD_TOKEN", "The token is not a card.")
        return CardOnFile(
            processor_ref=method["id"], brand=str(card.get("brand") or "card"),
            last4=str(card.get("last4") or ""), exp_month=int(card.get("exp_month") or 0),
            exp_year=int(card.get("exp_year") or 0), customer_ref=customer_ref,
        )

    async def remove_card(self, card: CardOnFile) -> None:
        try:
            await self._client.v1.payment_methods.detach_async(card.processor_ref)
        except stripe.InvalidRequestError as refused:
            if _in_flight(refused):
                raise _unavailable("remove a card", refused) from None
            # Already detached, or unknown to Stripe: either way it can no longer be charged.
            logger.info("stripe: card %s was not attached (%s)", card.processor_ref, refused.code)
        except stripe.StripeError as failure:
            raise _unavailable("remove a card", failure) from None

    # ------------------------------------------------------------------------------ charges

    async def open_charge(
        self, *, card: CardOnFile, amount: int, currency: str, idempotency_key: str,
        description: str, metadata: dict[str, str],
    ) -> str:
        params: dict[str, Any] = {
            "amount": amount, "currency": currency.lower(), "payment_method": card.processor_ref,
            # Cards only: no redirect-based method, so no return_url is needed off session.
            # Not confirmed: no money moves until ``confirm_charge`` (Stripe accepts
            # ``off_session`` only with a confirmation, so it is given there).
            "payment_method_types": ["card"], "confirm": False,
            "description": description, "metadata": metadata,
        }
        if card.customer_ref:
            params["customer"] = card.customer_ref
        try:
            intent = await self._intents.create_async(
                params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as failure:
            if isinstance(failure, stripe.InvalidRequestError) and not _in_flight(failure):
                # Stripe refused to open it (the card detached there, the customer deleted):
                # nothing opened, nothing charged. The interface has no "refused" answer for
                # an open, so it is "no answer": the attempt stays pending, then abandoned.
                logger.warning("stripe refused to open the charge %s: %s", idempotency_key,
                               failure.code or "invalid_request")
            raise _unavailable(f"open the charge {idempotency_key}", failure) from None
        if not isinstance(intent.id, str) or not intent.id:
            raise GatewayUnavailable("stripe: a PaymentIntent without an id")
        return intent.id

    async def confirm_charge(self, *, reference: str, card: CardOnFile) -> ChargeOutcome:
        try:
            intent = await self._intents.confirm_async(
                reference, {"payment_method": card.processor_ref, "off_session": True},
            )
        except stripe.CardError as declined:
            # Declined (or, off session, the bank wants the customer: authentication_required).
            return _declined(reference, _error_of(declined))
        except stripe.InvalidRequestError as refused:
            if _in_flight(refused):
                raise _unavailable(f"confirm {reference}", refused) from None
            # Already confirmed (an earlier try whose answer was lost), or cancelled: what Stripe
            # holds is the answer, and nothing new is charged.
            outcome = await self._read(reference, "confirm")
            if outcome.status != "unconfirmed":
                return outcome
            # Stripe refused to confirm it (the card detached there, the customer deleted):
            # nothing was charged, so the invoice is free to be paid with another card.
            logger.warning("stripe refused to confirm %s: %s", reference, refused.code or "invalid_request")
            return ChargeOutcome("declined", processor_ref=reference,
                                 decline_code=(refused.code or "invalid_request")[:50],
                                 message="The card on file could not be charged; add it again or "
                                 "use another card.")
        except stripe.StripeError as failure:
            raise _unavailable(f"confirm {reference}", failure) from None
        outcome = _intent_outcome(intent.to_dict())
        # Stripe answered the confirmation but does not say it is confirmed: not known yet.
        return ChargeOutcome("pending", processor_ref=reference) if outcome.status == "unconfirmed" else outcome

    async def check_charge(self, *, reference: str) -> ChargeOutcome:
        return await self._read(reference, "check")

    async def cancel_charge(self, *, reference: str) -> ChargeOutcome:
        try:
            intent = await self._intents.cancel_async(reference, {"cancellation_reason": "abandoned"})
        except stripe.InvalidRequestError as refused:
            if _in_flight(refused):
                raise _unavailable(f"cancel {reference}", refused) from None
            # Confirmed meanwhile (it may have succeeded), or cancelled already: its real outcome.
            outcome = await self._read(reference, "cancel")
            if outcome.status == "unconfirmed":
                logger.warning("stripe refused to cancel %s: %s", reference, refused.code or "invalid_request")
                raise GatewayUnavailable("stripe: the charge can be neither cancelled nor read as settled")
            return outcome
        except stripe.StripeError as failure:
            raise _unavailable(f"cancel {reference}", failure) from None
        return _intent_outcome(intent.to_dict())

    async def _read(self, reference: str, action: str) -> ChargeOutcome:
        """The PaymentIntent's outcome as Stripe holds it, touching nothing."""
        try:
            intent = await self._intents.retrieve_async(reference)
        except stripe.StripeError as failure:
            # Unknown to Stripe (another account's key?) is no answer either: it may be paid there.
            raise _unavailable(f"{action} {reference} (reading it)", failure) from None
        return _intent_outcome(intent.to_dict())

    @property
    def _intents(self) -> Any:
        return self._client.v1.payment_intents

    # ----------------------------------------------------------------------------- webhooks

    def read_webhook(self, payload: bytes, signature: str | None) -> PaymentEvent | None:
        try:
            event = self._client.construct_event(payload, signature, self._webhook_secret).to_dict()
        except stripe.SignatureVerificationError:
            raise InvalidWebhook("the Stripe-Signature does not verify (wrong secret, altered "
                                 "body, or a timestamp outside the tolerance)") from None
        except Exception:  # noqa: BLE001 - whatever a body that is not an event raises: refused
            raise InvalidWebhook("the body is not a Stripe event") from None
        try:
            return _payment_event(event)
        except (ValueError, TypeError, KeyError, AttributeError):
            raise InvalidWebhook("the event is not shaped as Stripe sends it") from None


def _payment_event(event: dict[str, Any]) -> PaymentEvent | None:
    event_id, kind = event["id"], event["type"]
    if not isinstance(event_id, str) or not isinstance(kind, str) or not event_id:
        raise ValueError("the event has no id or type")
    if kind not in _EVENTS:
        return None
    intent = event["data"]["object"]
    intent_id, amount, currency = intent["id"], intent["amount"], intent["currency"]
    if not isinstance(intent_id, str) or not intent_id:
        raise ValueError("the PaymentIntent has no id")
    if not isinstance(amount, int) or isinstance(amount, bool) or not isinstance(currency, str):
        raise ValueError("the PaymentIntent has no amount or currency")
    metadata = {str(k): str(v) for k, v in (intent.get("metadata") or {}).items()}
    payment_id = metadata.get("payment_id", "")
    if _EVENTS[kind] == "succeeded":
        outcome = ChargeOutcome("succeeded", processor_ref=intent_id)
    else:
        outcome = _declined(intent_id, intent.get("last_payment_error") or {})
    return PaymentEvent(event_id=event_id, type=kind, outcome=outcome,
                        amount=amount, currency=currency.upper(),
                        payment_id=int(payment_id) if payment_id.isdecimal() and len(payment_id) < 19 else None,
                        metadata=metadata)


def _intent_outcome(intent: dict[str, Any]) -> ChargeOutcome:
    """What a PaymentIntent's status means for the payment row."""
    intent_id, status = intent["id"], intent.get("status")
    if status == "succeeded":
        return ChargeOutcome("succeeded", processor_ref=intent_id)
    if status == "canceled":
        # Nothing was charged and nothing can be any more: the caller reads it as abandoned.
        return ChargeOutcome("declined", processor_ref=intent_id, decline_code=CANCELLED_CODE,
                             message=ABANDONED_MESSAGE)
    if status == "requires_payment_method":
        error = intent.get("last_payment_error")
        if error:  # a confirmation was declined
            return _declined(intent_id, error if isinstance(error, dict) else {})
        return ChargeOutcome("unconfirmed", processor_ref=intent_id)
    if status == "requires_confirmation":  # opened, never confirmed: no money asked for
        return ChargeOutcome("unconfirmed", processor_ref=intent_id)
    # Not final, money possibly on its way: processing (the bank has not answered),
    # requires_action (not off session, but not a decline either), requires_capture, or a
    # status new to us.
    return ChargeOutcome("pending", processor_ref=intent_id)


def _declined(intent_id: str | None, error: dict[str, Any]) -> ChargeOutcome:
    """A decline as Stripe describes it: its decline code, and its message, which Stripe
    writes to be shown to the customer."""
    code = error.get("decline_code") or error.get("code") or "card_declined"
    return ChargeOutcome("declined", processor_ref=intent_id, decline_code=str(code)[:50],
                         message=_safe_message(error.get("message")))


def _error_of(failure: stripe.StripeError) -> dict[str, Any]:
    body = failure.json_body
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _safe_message(message: Any) -> str:
    if not isinstance(message, str) or not message.strip():
        return DECLINED
    return " ".join(message.split())[:300]


def _in_flight(error: stripe.StripeError) -> bool:
    """A 4xx that says "not now" rather than "no": the same key still being answered (409)."""
    return error.http_status == 409 or error.code in {"lock_timeout", "idempotency_key_in_use"}


def _unavailable(action: str, error: stripe.StripeError) -> GatewayUnavailable:
    """Logged by kind and status only: Stripe's message for a bad key quotes part of it."""
    if isinstance(error, (stripe.AuthenticationError, stripe.PermissionError)):
        logger.error("stripe refused the API key (HTTP %s) to %s: check LINKGATE_STRIPE_API_KEY",
                     error.http_status, action)
    else:
        logger.warning("stripe did not answer to %s: %s (HTTP %s)", action, type(error).__name__,
                       error.http_status or "none")
    return GatewayUnavailable(f"stripe: {type(error).__name__}")
