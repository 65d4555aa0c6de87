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
- ``Idempotency-Key``: a repeat of a key with the same parameters answers the first answer
  again (a 402 too) with ``Idempotent-Replayed: true``, and charges nothing new; with other
  parameters it is a 400 ``idempotency_error``;
- a request whose key is still being answered gets Stripe's 409 ``idempotency_key_in_use``;
- it counts what was charged (per key and in total) and every request, and can be told to
  answer slowly (the charge made, the answer late: a timeout whose outcome is a success),
  or not at all (an outage: 500, 503 or 429 for every request);
- ``signed_event`` builds a webhook delivery as Stripe signs it: the header
  ``t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``.
"""

from __future__ import annotations

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


@dataclass
class StripeStub:
    api_key: str = field(default_factory=lambda: "sk_test_" + secrets.token_urlsafe(24))
    webhook_secret: str = field(default_factory=lambda: "whsec_" + secrets.token_urlsafe(24))
    # Seconds to hold the answer to POST /v1/payment_intents, after the charge is made.
    slow_charges: float = 0.0
    # Answer every request with this HTTP status and do nothing (500, 503, 429).
    outage: int | None = None
    # What a card that pays leaves the PaymentIntent as: "succeeded", or "processing".
    charge_status: str = "succeeded"

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.customers: dict[str, dict[str, Any]] = {}
        self.methods: dict[str, dict[str, Any]] = {}
        self.intents: dict[str, dict[str, Any]] = {}
        self.behaviour: dict[str, str | None] = {}  # pm id → decline code or None
        self.replies: dict[str, tuple[dict[str, Any], Answer]] = {}  # idempotency key → first answer
        self.charges: Counter[str] = Counter()  # idempotency key → money taken (0 or 1)
        self.attempts: Counter[str] = Counter()  # idempotency key → requests with it
        self.in_flight: set[str] = set()  # keys whose first request is still being answered
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
        """The PaymentIntent the first request with this key made."""
        with self.lock:
            reply = self.replies[idempotency_key][1].body
        return reply.get("error", {}).get("payment_intent") or reply

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
            if status == "succeeded" and self.charges[stored["_key"]] == 0:
                stored["amount_received"] = stored["amount"]
                self.charges[stored["_key"]] = 1
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
        key = headers.get("idempotency-key")
        if method != "POST" or not key:
            with self.lock:
                return self._route(method, path, form, key)
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
            if path == "/v1/payment_intents" and self.slow_charges:
                time.sleep(self.slow_charges)  # the charge is made; the answer comes late
        finally:
            with self.lock:
                self.in_flight.discard(key)
        return answer

    def _route(self, method: str, path: str, form: dict[str, Any], key: str | None) -> Answer:
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
            return self._charge(form, key)
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

    def _charge(self, form: dict[str, Any], key: str | None) -> Answer:
        method = self.methods.get(form.get("payment_method", ""))
        if method is None:
            return _error(400, "invalid_request_error", "resource_missing",
                          f"No such PaymentMethod: '{form.get('payment_method')}'", param="payment_method")
        if method["customer"] is None or method["customer"] != form.get("customer"):
            return _error(400, "invalid_request_error", "payment_method_unexpected_state",
                          "The provided PaymentMethod is not attached to this customer.", param="payment_method")
        try:
            amount = int(form["amount"])
        except (KeyError, ValueError):
            return _error(400, "invalid_request_error", "parameter_missing", "Missing required param: amount.",
                          param="amount")
        intent: dict[str, Any] = {
            "id": _id("pi"), "object": "payment_intent", "amount": amount, "amount_received": 0,
            "currency": form.get("currency"), "customer": form.get("customer"),
            "payment_method": method["id"], "description": form.get("description"),
            "metadata": form.get("metadata", {}), "created": int(time.time()), "livemode": False,
            "confirmation_method": "automatic", "capture_method": "automatic",
            "payment_method_types": form.get("payment_method_types", ["card"]),
            "status": "requires_payment_method", "last_payment_error": None, "latest_charge": None,
            "_key": key or "",
        }
        self.intents[intent["id"]] = intent
        decline = self.behaviour.get(method["id"])
        if decline is not None:
            message = DECLINE_MESSAGES.get(decline, "Your card was declined.")
            intent["last_payment_error"] = {"type": "card_error", "code": "card_declined",
                                            "decline_code": decline, "message": message}
            return _error(402, "card_error", "card_declined", message, decline_code=decline,
                          payment_intent=_public(intent), charge=_id("ch"))
        intent["status"] = self.charge_status
        if self.charge_status == "succeeded":
            intent["amount_received"] = amount
            intent["latest_charge"] = _id("ch")
            self.charges[key or intent["id"]] += 1
        return Answer(200, _public(intent))


def _public(intent: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in intent.items() if not k.startswith("_")}


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
