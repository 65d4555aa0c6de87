"""A local stand-in for the part of Stripe's API that ``linkgate/stripe_gateway.py`` calls.

An ``http.server`` in a thread of the test process (so it answers while the test's event loop
waits, and server subprocesses reach it too), speaking Stripe's shapes: form-encoded requests
with ``a[b]=c`` keys, JSON objects with ``id``/``object``, errors as ``{"error": {type, code,
decline_code, message, …}}`` with Stripe's HTTP statuses (400, 401, 402, 409, 429, 5xx).

What it does, following Stripe's test mode:

- ``tok_visa``, ``tok_mastercard``…: cards that pay; ``tok_chargeCustomerFail``,
  ``tok_chargeDeclined`` and ``tok_chargeDeclinedInsufficientFunds``: accepted on file,
  declined (402 ``card_error``) when charged; ``tok_chargeDeclinedExpiredCard``: refused
  when attached; any other token: 400 ``resource_missing``. (Stripe itself may already
  refuse ``tok_chargeDeclined`` when it is attached; the stub follows the ``test`` gateway,
  where it declines the charge. Both paths are the gateway's, and both are tested.)
- a PaymentIntent is created unconfirmed (``requires_confirmation``: no money moves; Stripe's
  400 if ``off_session`` comes without ``confirm``) and confirmed by
  ``POST /v1/payment_intents/{id}/confirm``, where the card does what it does: a decline is a
  402 ``card_error`` and leaves the PaymentIntent ``requires_payment_method`` with its
  ``last_payment_error``; a card that pays leaves it ``succeeded`` (or ``processing``, see
  ``charge_status``). Money is counted only there, once per PaymentIntent: confirming one
  that was confirmed before (succeeded, processing, cancelled) is Stripe's 400
  ``payment_intent_unexpected_state``, and charges nothing. ``GET /v1/payment_intents/{id}``
  reads one; ``POST …/cancel`` cancels one unless it succeeded or is processing (400);
- ``Idempotency-Key``: a repeat of a key with the same parameters answers the first answer
  again (a 402 too) with ``Idempotent-Replayed: true``, and does nothing new; with other
  parameters it is a 400 ``idempotency_error``. ``forget_idempotency_keys`` is Stripe 24
  hours later: every key is new again;
- a request whose key is still being answered gets Stripe's 409 ``idempotency_key_in_use``;
  a request about a PaymentIntent whose confirmation is still being answered, Stripe's 429
  ``lock_timeout``;
- it counts what was charged (per key of the create, per card, in total) and every request,
  and can be told to answer slowly (the confirmation made, the answer late: a timeout whose
  outcome is a success; or the PaymentIntent created, its id late), or not at all (an
  outage: 500, 503 or 429 for every request, or for confirmations only);
- ``signed_event`` builds a webhook delivery as Stripe signs it: the header
  ``t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

# token → (brand, last4, exp year, what charging it does: None pays, else the decline code;
# "attach:<code>" is refused when the card is attached).
CARDS: dict[str, tuple[str, str, int, str | None]] = {
    "tok_visa": ("visa", "4242", 2034, None),
    "tok_mastercard": ("mastercard", "4444", 2033, None),
    "tok_amex": ("amex", "8431", 2032, None),
    "tok_chargeCustomerFail": ("visa", "0341", 2034, "generic_decline"),
    "tok_chargeDeclined": ("visa", "0002", 2034, "generic_decline"),
    "tok_chargeDeclinedInsufficientFunds": ("visa", "9995", 2034, "insufficient_funds"),
    "tok_chargeDeclinedExpiredCard": ("visa", "0069", 2034, "attach:expired_card"),
}
DECLINE_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
}
API_VERSION = "2025-01-27.acacia"
_ids = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_{next(_ids):06d}{secrets.token_hex(6)}"


def decode_form(body: str) -> dict[str, Any]:
    """Stripe's form encoding back to nested values: ``card[token]=t`` → {"card": {"token": t}};
    lists arrive as ``a[0]=x``."""
    result: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+", key)
        target = result
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    return _lists(result)


def _lists(value: Any) -> Any:
    if isinstance(value, dict):
        if value and all(k.isdecimal() for k in value):
            return [_lists(value[k]) for k in sorted(value, key=int)]
        return {k: _lists(v) for k, v in value.items()}
    return value


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    replayed: bool = False
    delay: float = 0.0  # seconds to hold it (what it did is done already)
    locks: str | None = None  # the PaymentIntent locked until it is sent


@dataclass
class StripeStub:
    api_key: str = field(default_factory=lambda: "sk_test_" + secrets.token_urlsafe(24))
    webhook_secret: str = field(default_factory=lambda: "whsec_" + secrets.token_urlsafe(24))
    # Seconds to hold the answer to a confirmation, after the charge is made (the
    # PaymentIntent stays locked meanwhile, as Stripe's are while a request works on them).
    slow_charges: float = 0.0
    # Seconds to hold the answer to POST /v1/payment_intents, after the PaymentIntent is made.
    slow_opens: float = 0.0
    # Answer every request with this HTTP status and do nothing (500, 503, 429).
    outage: int | None = None
    # The same, for confirmations only: the PaymentIntent opened, never confirmed.
    confirm_outage: int | None = None
    # What a card that pays leaves the PaymentIntent as: "succeeded", or "processing".
    charge_status: str = "succeeded"

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.customers: dict[str, dict[str, Any]] = {}
        self.methods: dict[str, dict[str, Any]] = {}
        self.intents: dict[str, dict[str, Any]] = {}
        self.behaviour: dict[str, str | None] = {}  # pm id → decline code or None
        self.replies: dict[str, tuple[dict[str, Any], Answer]] = {}  # idempotency key → first answer
        # Key of the request that created the PaymentIntent (or its id) → money taken (0 or 1).
        self.charges: Counter[str] = Counter()
        self.charged_cards: Counter[str] = Counter()  # pm id → money taken with it
        self.attempts: Counter[str] = Counter()  # idempotency key → requests with it
        # pi id → confirmation requests (one refused as locked too; not one in a confirm_outage)
        self.confirms: Counter[str] = Counter()
        self.in_flight: set[str] = set()  # keys whose first request is still being answered
        self.locked: set[str] = set()  # PaymentIntents whose confirmation is being answered
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------------- running

    @property
    def url(self) -> str:
        assert self.server is not None, "the stub is not running"
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StripeStub:
        stub = self

        class Handler(_Handler):
            pass

        Handler.stub = stub
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="stripe-stub", daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def total_charges(self) -> int:
        with self.lock:
            return sum(self.charges.values())

    def intent_for(self, idempotency_key: str) -> dict[str, Any]:
        """The (first) PaymentIntent created with this key, as it is now."""
        intents = self.intents_for(idempotency_key)
        assert intents, f"no PaymentIntent was created with {idempotency_key}"
        return intents[0]

    def intents_for(self, idempotency_key: str) -> list[dict[str, Any]]:
        """Every PaymentIntent created with this key (more than one only once the key was
        forgotten), as they are now."""
        with self.lock:
            return [_public(i) for i in self.intents.values() if i["_key"] == idempotency_key]

    def intent(self, intent_id: str) -> dict[str, Any]:
        with self.lock:
            return _public(self.intents[intent_id])

    def forget_idempotency_keys(self) -> None:
        """Stripe 24 hours later: it no longer knows any key, so a repeat is a new request."""
        with self.lock:
            self.replies.clear()

    # ------------------------------------------------------------------------- webhooks

    def event(self, kind: str, intent: dict[str, Any], *, event_id: str | None = None) -> bytes:
        """A Stripe event about ``intent``, serialized as Stripe sends it."""
        return json.dumps({
            "id": event_id or _id("evt"), "object": "event", "api_version": API_VERSION,
            "created": int(time.time()), "livemode": False, "pending_webhooks": 1, "type": kind,
            "request": {"id": None, "idempotency_key": None}, "data": {"object": intent},
        }, indent=2).encode()

    def sign(self, payload: bytes, *, timestamp: int | None = None, secret: str | None = None) -> str:
        """The ``Stripe-Signature`` header Stripe would send with ``payload``."""
        timestamp = int(time.time()) if timestamp is None else timestamp
        mac = hmac.new((secret or self.webhook_secret).encode(), f"{timestamp}.".encode() + payload,
                       hashlib.sha256).hexdigest()
        return f"t={timestamp},v1={mac}"

    def signed_event(
        self, kind: str, intent: dict[str, Any], *, event_id: str | None = None,
        timestamp: int | None = None, secret: str | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """(body, headers) of a webhook delivery: POST them to ``/payments/webhook``."""
        payload = self.event(kind, intent, event_id=event_id)
        return payload, {"stripe-signature": self.sign(payload, timestamp=timestamp, secret=secret),
                         "content-type": "application/json"}

    def finished(self, intent: dict[str, Any], status: str, decline_code: str | None = None) -> dict[str, Any]:
        """``intent`` once Stripe has finished it (what a webhook then reports): ``succeeded``
        (the money taken), or ``requires_payment_method`` (declined with ``decline_code``)."""
        with self.lock:
            stored = self.intents[intent["id"]]
            stored["status"] = status
            if status == "succeeded" and not stored["amount_received"]:
                self._take_money(stored)
            if decline_code is not None:
                stored["last_payment_error"] = {
                    "type": "card_error", "code": "card_declined", "decline_code": decline_code,
                    "message": DECLINE_MESSAGES.get(decline_code, "Your card was declined.")}
            return _public(stored)

    def payment_method(self, token: str) -> str:
        """A PaymentMethod made from ``token`` as Stripe.js makes one (``pm_…``), unattached."""
        with self.lock:
            return self._new_method({"type": "card", "card": {"token": token}}).body["id"]

    def method(self, method_id: str) -> dict[str, Any]:
        with self.lock:
            return dict(self.methods[method_id])

    # ------------------------------------------------------------------------- the API

    def handle(self, method: str, path: str, headers: dict[str, str], form: dict[str, Any]) -> Answer:
        with self.lock:
            self.requests.append((method, path))
        if self.outage is not None:
            return _error(self.outage, "api_error", None, "Stripe is having a bad day (the stub's outage).")
        if headers.get("authorization") != f"Bearer {self.api_key}":
            given = headers.get("authorization", "").removeprefix("Bearer ")
            return _error(401, "invalid_request_error", None,
                          f"Invalid API Key provided: {given[:8]}****{given[-4:]}")
        if self.confirm_outage is not None and _CONFIRM.fullmatch(path):
            return _error(self.confirm_outage, "api_error", None, "Stripe could not confirm (the stub's outage).")
        key = headers.get("idempotency-key")
        if method != "POST" or not key:
            with self.lock:
                answer = self._route(method, path, form, key)
            return self._held(answer)
        with self.lock:
            self.attempts[key] += 1
            if key in self.in_flight:
                return _error(409, "invalid_request_error", "idempotency_key_in_use",
                              "There is currently another in-progress request using this "
                              "Idempotent Key. Please try again later.")
            first = self.replies.get(key)
            if first is not None:
                seen, answer = first
                if seen != {"path": path, **form}:
                    return _error(400, "idempotency_error", None,
                                  "Keys for idempotent requests can only be used with the same "
                                  "parameters they were first used with.")
                return Answer(answer.status, answer.body, replayed=True)
            self.in_flight.add(key)
            answer = self._route(method, path, form, key)
            self.replies[key] = ({"path": path, **form}, answer)
        try:
            return self._held(answer)
        finally:
            with self.lock:
                self.in_flight.discard(key)

    def _held(self, answer: Answer) -> Answer:
        """Sends ``answer`` late if it is to be (what it did is done already)."""
        try:
            if answer.delay:
                time.sleep(answer.delay)
        finally:
            if answer.locks:
                with self.lock:
                    self.locked.discard(answer.locks)
        return answer

    def _route(self, method: str, path: str, form: dict[str, Any], key: str | None) -> Answer:
        intent = _INTENT.fullmatch(path)
        if intent:
            intent_id, action = intent.group(1), intent.group(2)
            if (method, action) not in {("GET", None), ("POST", "confirm"), ("POST", "cancel")}:
                return _error(404, "invalid_request_error", "resource_missing",
                              f"Unrecognized request URL ({method} {path}).")
            stored = self.intents.get(intent_id)
            if stored is None:
                return _error(404, "invalid_request_error", "resource_missing",
                              f"No such payment_intent: '{intent_id}'", param="intent")
            if action is None:
                return Answer(200, _public(stored))
            if action == "confirm":
                self.confirms[intent_id] += 1
            if intent_id in self.locked:
                return _error(429, "invalid_request_error", "lock_timeout",
                              "This object cannot be accessed right now because another API request "
                              "or Stripe process is currently accessing it.")
            return self._confirm(stored, form) if action == "confirm" else self._cancel(stored)
        if method != "POST":
            return _error(404, "invalid_request_error", "resource_missing", f"Unrecognized request URL ({method} {path}).")
        if path == "/v1/customers":
            customer = {"id": _id("cus"), "object": "customer", "created": int(time.time()),
                        "description": form.get("description"), "metadata": form.get("metadata", {}),
                        "livemode": False}
            self.customers[customer["id"]] = customer
            return Answer(200, customer)
        if path == "/v1/payment_methods":
            return self._new_method(form)
        attach = re.fullmatch(r"/v1/payment_methods/([\w-]+)/(attach|detach)", path)
        if attach:
            return self._attach(attach.group(1), attach.group(2), form)
        if path == "/v1/payment_intents":
            return self._open(form, key)
        return _error(404, "invalid_request_error", "resource_missing", f"Unrecognized request URL (POST {path}).")

    def _new_method(self, form: dict[str, Any]) -> Answer:
        token = (form.get("card") or {}).get("token", "")
        if form.get("type") != "card" or token not in CARDS:
            return _error(400, "invalid_request_error", "resource_missing", f"No such token: '{token}'",
                          param="card[token]")
        brand, last4, year, behaviour = CARDS[token]
        method = {
            "id": _id("pm"), "object": "payment_method", "type": "card", "created": int(time.time()),
            "customer": None, "livemode": False, "metadata": {},
            "billing_details": {"address": None, "email": None, "name": None, "phone": None},
            "card": {"brand": brand, "last4": last4, "exp_month": 12, "exp_year": year,
                     "country": "US", "funding": "credit", "fingerprint": secrets.token_hex(8)},
        }
        self.methods[method["id"]] = method
        self.behaviour[method["id"]] = behaviour
        return Answer(200, method)

    def _attach(self, method_id: str, action: str, form: dict[str, Any]) -> Answer:
        method = self.methods.get(method_id)
        if method is None:
            return _error(400, "invalid_request_error", "resource_missing", f"No such PaymentMethod: '{method_id}'",
                          param="payment_method")
        if action == "detach":
            if method["customer"] is None:
                return _error(400, "invalid_request_error", "payment_method_unexpected_state",
                              "The payment method you provided is not attached to a customer so detachment is impossible.")
            method["customer"] = None
            return Answer(200, method)
        if form.get("customer") not in self.customers:
            return _error(400, "invalid_request_error", "resource_missing",
                          f"No such customer: '{form.get('customer')}'", param="customer")
        behaviour = self.behaviour.get(method_id) or ""
        if behaviour.startswith("attach:"):
            code = behaviour.removeprefix("attach:")
            return _error(402, "card_error", "card_declined" if code != "expired_card" else code,
                          DECLINE_MESSAGES.get(code, "Your card was declined."), decline_code=code)
        method["customer"] = form["customer"]
        return Answer(200, method)

    def _attached_method(self, method_id: str, customer: Any) -> dict[str, Any] | Answer:
        method = self.methods.get(method_id)
        if method is None:
            return _error(400, "invalid_request_error", "resource_missing",
                          f"No such PaymentMethod: '{method_id}'", param="payment_method")
        if method["customer"] is None or method["customer"] != customer:
            return _error(400, "invalid_request_error", "payment_method_unexpected_state",
                          "The provided PaymentMethod is not attached to this customer.", param="payment_method")
        return method

    def _open(self, form: dict[str, Any], key: str | None) -> Answer:
        confirm = form.get("confirm") == "true"
        if "off_session" in form and not confirm:
            return _error(400, "invalid_request_error", None,
                          "You may only specify `off_session` when confirming the PaymentIntent "
                          "(set `confirm` to true).", param="off_session")
        method: dict[str, Any] | None = None
        if form.get("payment_method"):
            found = self._attached_method(form["payment_method"], form.get("customer"))
            if isinstance(found, Answer):
                return found
            method = found
        try:
            amount = int(form["amount"])
        except (KeyError, ValueError):
            return _error(400, "invalid_request_error", "parameter_missing", "Missing required param: amount.",
                          param="amount")
        intent: dict[str, Any] = {
            "id": _id("pi"), "object": "payment_intent", "amount": amount, "amount_received": 0,
            "currency": form.get("currency"), "customer": form.get("customer"),
            "payment_method": method["id"] if method else None, "description": form.get("description"),
            "metadata": form.get("metadata", {}), "created": int(time.time()), "livemode": False,
            "confirmation_method": "automatic", "capture_method": "automatic",
            "payment_method_types": form.get("payment_method_types", ["card"]),
            "status": "requires_confirmation" if method else "requires_payment_method",
            "last_payment_error": None, "latest_charge": None, "canceled_at": None,
            "cancellation_reason": None, "_key": key or "",
        }
        intent["_key"] = intent["_key"] or intent["id"]
        self.intents[intent["id"]] = intent
        if confirm:
            self.confirms[intent["id"]] += 1
            return self._confirm(intent, {k: v for k, v in form.items() if k == "off_session"})
        return Answer(200, _public(intent), delay=self.slow_opens)

    def _confirm(self, intent: dict[str, Any], form: dict[str, Any]) -> Answer:
        """Takes the money, once: only a PaymentIntent nobody confirmed (or one declined, with
        a payment method again) can be confirmed."""
        if intent["status"] not in {"requires_confirmation", "requires_payment_method"}:
            return _error(400, "invalid_request_error", "payment_intent_unexpected_state",
                          f"You cannot confirm this PaymentIntent because it has a status of "
                          f"{intent['status']}.", payment_intent=_public(intent))
        if form.get("payment_method"):
            found = self._attached_method(form["payment_method"], intent["customer"])
            if isinstance(found, Answer):
                return found
            intent["payment_method"] = found["id"]
        elif intent["payment_method"] is None or intent["status"] == "requires_payment_method":
            return _error(400, "invalid_request_error", "payment_intent_unexpected_state",
                          "You cannot confirm this PaymentIntent because it's missing a payment method.",
                          payment_intent=_public(intent))
        method = self.methods[intent["payment_method"]]
        if method["customer"] is None or method["customer"] != intent["customer"]:
            return _error(400, "invalid_request_error", "payment_method_unexpected_state",
                          "The provided PaymentMethod was previously used without being attached to a "
                          "Customer or was detached from a Customer, and may not be used again.",
                          param="payment_method")
        decline = self.behaviour.get(method["id"])
        if decline is not None:
            message = DECLINE_MESSAGES.get(decline, "Your card was declined.")
            intent["status"] = "requires_payment_method"
            intent["last_payment_error"] = {"type": "card_error", "code": "card_declined",
                                            "decline_code": decline, "message": message}
            return _error(402, "card_error", "card_declined", message, decline_code=decline,
                          payment_intent=_public(intent), charge=_id("ch"))
        intent["status"], intent["last_payment_error"] = self.charge_status, None
        if self.charge_status == "succeeded":
            self._take_money(intent)
        answer = Answer(200, _public(intent), delay=self.slow_charges)
        if self.slow_charges:
            self.locked.add(intent["id"])
            answer.locks = intent["id"]
        return answer

    def _cancel(self, intent: dict[str, Any]) -> Answer:
        if intent["status"] in {"succeeded", "processing", "canceled"}:
            return _error(400, "invalid_request_error", "payment_intent_unexpected_state",
                          f"You cannot cancel this PaymentIntent because it has a status of "
                          f"{intent['status']}.", payment_intent=_public(intent))
        intent["status"], intent["canceled_at"] = "canceled", int(time.time())
        intent["cancellation_reason"] = "abandoned"
        return Answer(200, _public(intent))

    def _take_money(self, intent: dict[str, Any]) -> None:
        assert not intent["amount_received"], "the stub would charge a PaymentIntent twice"
        intent["amount_received"] = intent["amount"]
        intent["latest_charge"] = _id("ch")
        self.charges[intent["_key"]] += 1
        self.charged_cards[intent["payment_method"]] += 1


_INTENT = re.compile(r"/v1/payment_intents/([\w-]+)(?:/(confirm|cancel))?")
_CONFIRM = re.compile(r"/v1/payment_intents/[\w-]+/confirm")


def _public(intent: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy({k: v for k, v in intent.items() if not k.startswith("_")})


def _error(status: int, kind: str, code: str | None, message: str, **extra: Any) -> Answer:
    error = {"type": kind, "message": message, **({"code": code} if code else {}), **extra}
    if code:
        error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    return Answer(status, {"error": error})


class _Handler(BaseHTTPRequestHandler):
    stub: StripeStub
    server_version = "stripe-stub/1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self._serve("POST")

    def do_GET(self) -> None:  # noqa: N802
        self._serve("GET")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        path, _, query = self.path.partition("?")
        form = decode_form(body or query)
        headers = {k.lower(): v for k, v in self.headers.items()}
        answer = self.stub.handle(method, path, headers, form)
        payload = json.dumps(answer.body).encode()
        try:
            self.send_response(answer.status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.send_header("request-id", _id("req"))
            if headers.get("idempotency-key"):
                self.send_header("idempotency-key", headers["idempotency-key"])
                if answer.replayed:
                    self.send_header("idempotent-replayed", "true")
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (a timeout test): Stripe would not notice either

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the test output is not the place for an access log


def running_stub(**options: Any) -> Iterator[StripeStub]:
    """A started stub for a fixture: ``yield from running_stub()``; stopped afterwards."""
    stub = StripeStub(**options).start()
    try:
        yield stub
    finally:
        stub.stop()
