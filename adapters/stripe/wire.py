"""Stripe's wire format, as far as the card adapter uses it: form-encoded requests, JSON answers,
the status vocabulary of PaymentIntents and the ``Stripe-Signature`` webhook scheme.

Requests are ``application/x-www-form-urlencoded`` with nested keys in brackets
(``metadata[juhe_payment_id]=…``, ``payment_method_types[0]=card``); amounts are integers in the
currency's smallest unit, as ours are. Webhooks are signed as
``Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``, where the header
may carry several ``v1`` entries while Stripe rolls the endpoint secret; one match is enough.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, TypeAlias
from urllib.parse import urlencode

import msgspec

TOLERANCE_S = 300
SIGNATURE_HEADER = "Stripe-Signature"
# Pinned so that a change of the account's default API version cannot reshape the answers we
# decode; webhooks still follow the endpoint's version, which is why their structs are lenient.
API_VERSION = "2024-06-20"
PAYMENT_ID_KEY = "juhe_payment_id"
REFUND_ID_KEY = "juhe_refund_id"

Outcome = Literal["pending", "paid", "failed"]
FormValue: TypeAlias = "str | int | bool | Mapping[str, FormValue] | Sequence[FormValue] | None"

# Anything not listed (a status Stripe adds later) reads as pending: never claim paid or failed
# on a state we do not understand.
STATUSES: dict[str, Outcome] = {
    "succeeded": "paid",
    "canceled": "failed",
    "requires_payment_method": "pending",  # also after a decline: the customer may try again
    "requires_confirmation": "pending",
    "requires_action": "pending",  # 3-D Secure and the like
    "requires_capture": "pending",
    "processing": "pending",
}
EVENT_OUTCOMES: dict[str, Outcome] = {
    "payment_intent.succeeded": "paid",
    "payment_intent.payment_failed": "failed",
    "payment_intent.processing": "pending",
}


class CreateIntent(msgspec.Struct, frozen=True, kw_only=True):
    """Form of ``POST /v1/payment_intents``; card only, so that a server-side confirm never
    needs a return URL for redirect-based methods."""

    amount: int
    currency: str  # lower case on this wire
    metadata: dict[str, str]
    capture_method: str = "automatic"
    payment_method_types: tuple[str, ...] = ("card",)
    description: str | None = None


class AttachPaymentMethod(msgspec.Struct, frozen=True, kw_only=True):
    """Form of ``POST /v1/payment_intents/{id}``: the card the customer entered."""

    payment_method: str


class CreateRefund(msgspec.Struct, frozen=True, kw_only=True):
    """Form of ``POST /v1/refunds``."""

    payment_intent: str
    amount: int
    metadata: dict[str, str]


class PaymentError(msgspec.Struct, frozen=True, kw_only=True):
    code: str | None = None
    decline_code: str | None = None
    message: str | None = None


class PaymentIntent(msgspec.Struct, frozen=True, kw_only=True):
    """The fields we read; `status` stays a plain string so an unknown one is not a decode
    error (see `STATUSES`)."""

    id: str
    status: str
    amount: int
    currency: str
    metadata: dict[str, str] = {}
    last_payment_error: PaymentError | None = None


class SearchResult(msgspec.Struct, frozen=True, kw_only=True):
    data: list[PaymentIntent]


class Refund(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    status: str | None = None


class ErrorDetail(msgspec.Struct, frozen=True, kw_only=True):
    type: str = ""
    code: str | None = None
    decline_code: str | None = None
    message: str = ""


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    error: ErrorDetail


class EventData(msgspec.Struct, frozen=True, kw_only=True):
    object: msgspec.Raw  # decoded only for the event types we handle


class Event(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    type: str
    data: EventData


class IntentEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A webhook event that concerns one of our payments."""

    event_id: str
    outcome: Outcome
    intent: PaymentIntent
    payment_id: str


class SignatureInvalid(Exception):
    """A webhook signature was refused; the text says why and is safe to log or return."""


class PayloadInvalid(Exception):
    """A verified webhook body that is not a Stripe event we can read."""


def form_encode(params: Mapping[str, FormValue]) -> bytes:
    """Stripe's form body: nested mappings as ``a[b]``, sequences as ``a[0]``, None left out."""
    return urlencode(list(_flatten(params.items(), ""))).encode()


def _flatten(items: Iterable[tuple[str, FormValue]], prefix: str) -> Iterable[tuple[str, str]]:
    for key, value in items:
        name = f"{prefix}[{key}]" if prefix else key
        if value is None:
            continue
        if isinstance(value, bool):  # before int: bool is an int
            yield name, "true" if value else "false"
        elif isinstance(value, str | int):
            yield name, str(value)
        elif isinstance(value, Mapping):
            yield from _flatten(value.items(), name)
        else:
            yield from _flatten(((str(i), v) for i, v in enumerate(value)), name)


def form(struct: msgspec.Struct) -> bytes:
    return form_encode(msgspec.to_builtins(struct))


def order_status(status: str) -> Outcome:
    return STATUSES.get(status, "pending")


def search_query(payment_id: str) -> str:
    """Stripe search syntax for our metadata key; quotes and backslashes escaped."""
    escaped = payment_id.replace("\\", "\\\\").replace("'", "\\'")
    return f"metadata['{PAYMENT_ID_KEY}']:'{escaped}'"


def confirm_keys(intent_id: str, payment_method: str) -> tuple[str, str]:
    """Idempotency keys of the attach and confirm calls: a retried confirm with the same card
    replays Stripe's first answers instead of failing on an intent that already moved on."""
    return f"{intent_id}:attach:{payment_method}", f"{intent_id}:confirm:{payment_method}"


def decode_error(raw: bytes) -> ErrorDetail | None:
    try:
        return msgspec.json.decode(raw, type=ErrorBody).error
    except msgspec.DecodeError:
        return None


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode(), hashlib.sha256)
    mac.update(body)
    return mac.hexdigest()


def signature_header(secret: str, body: bytes, now: float) -> str:
    """What Stripe would send with `body` at `now` (for tests and tools)."""
    timestamp = int(now)
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup that works for a CIMultiDict and for a plain dict alike."""
    value = headers.get(name)
    if value is None:
        wanted = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == wanted), None)
    return value


def verify_signature(
    secret: str, headers: Mapping[str, str], body: bytes, now: float, tolerance: int = TOLERANCE_S
) -> None:
    """Raise `SignatureInvalid` unless one ``v1`` entry signs `body` at a recent timestamp."""
    value = header(headers, SIGNATURE_HEADER)
    if not value:
        raise SignatureInvalid(f"{SIGNATURE_HEADER} is required")
    timestamp: str | None = None
    candidates: list[str] = []
    for part in value.split(","):
        scheme, sep, item = part.strip().partition("=")
        if not sep:
            continue
        if scheme == "t" and timestamp is None:
            timestamp = item
        elif scheme == "v1":
            candidates.append(item)
    if timestamp is None or not timestamp.isascii() or not timestamp.isdigit():
        raise SignatureInvalid(f"{SIGNATURE_HEADER} needs t=<unix seconds>")
    if not candidates:
        raise SignatureInvalid(f"{SIGNATURE_HEADER} has no v1 signature")
    if abs(now - int(timestamp)) > tolerance:
        raise SignatureInvalid(f"{SIGNATURE_HEADER} timestamp is more than {tolerance} s off")
    expected = signature(secret, int(timestamp), body).encode()
    # Every candidate is compared, so the time taken does not tell which one was close.
    matches = [hmac.compare_digest(expected, given.encode()) for given in candidates]
    if not any(matches):
        raise SignatureInvalid("signature does not match")


def decode_event(body: bytes) -> IntentEvent | None:
    """The event in a verified webhook body, or None when it is none of our business: a type
    we do not handle, or an intent that no Juhe payment opened."""
    try:
        event = msgspec.json.decode(body, type=Event)
    except msgspec.DecodeError as exc:
        raise PayloadInvalid(f"not a Stripe event: {exc}") from None
    outcome = EVENT_OUTCOMES.get(event.type)
    if outcome is None:
        return None
    try:
        intent = msgspec.json.decode(event.data.object, type=PaymentIntent)
    except msgspec.DecodeError as exc:
        raise PayloadInvalid(f"{event.type} without a payment intent: {exc}") from None
    payment_id = intent.metadata.get(PAYMENT_ID_KEY)
    if not payment_id:
        return None
    return IntentEvent(event_id=event.id, outcome=outcome, intent=intent, payment_id=payment_id)
