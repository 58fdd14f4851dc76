"""The simulator's wire protocol, shared by the server and the adapter so they cannot drift apart.

JSON bodies are msgspec structs; amounts are decimal strings of the minor-unit integer because an
ETH amount in wei does not fit in 64 bits. Two HMAC-SHA256 signatures, hex encoded:

- API calls: ``f"{timestamp}\\n{METHOD}\\n{path}\\n" + body``, where ``path`` is the request target
  exactly as sent (raw path plus query string), next to ``Authorization: Bearer <api_key>``;
- callbacks: ``f"{timestamp}\\n" + body``.

Either is refused when its unix-seconds timestamp is more than `TOLERANCE_S` away from now, which
bounds how long a captured message can be replayed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec

TOLERANCE_S = 300
TIMESTAMP_HEADER = "X-Sim-Timestamp"
SIGNATURE_HEADER = "X-Sim-Signature"

PositiveMinor = Annotated[str, msgspec.Meta(pattern=r"^[1-9][0-9]{0,77}$")]
Minor = Annotated[str, msgspec.Meta(pattern=r"^(0|[1-9][0-9]{0,77})$")]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3,5}$")]
Reference = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
HttpUrl = Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s]+$", max_length=2048)]
OrderStatus = Literal["PENDING", "PAID", "FAILED", "REFUNDED", "PARTIALLY_REFUNDED", "CANCELED"]
EventKind = Literal["order.paid", "order.failed", "order.pending"]


class CreateOrder(msgspec.Struct, frozen=True, kw_only=True):
    """Body of ``POST /v1/orders``; `merchant_ref` is the idempotency key."""

    merchant_ref: Reference
    amount_minor: PositiveMinor
    currency: Currency
    notify_url: HttpUrl
    expire_at: int
    return_url: HttpUrl | None = None
    subject: str | None = None


class VirtualAccount(msgspec.Struct, frozen=True, kw_only=True):
    bank_code: str
    account_no: str
    reference: str


class OrderCreated(msgspec.Struct, frozen=True, kw_only=True):
    """What the customer is shown depends on the account's personality: a card page
    (`pay_url`), an e-wallet QR (`qr_code`, and `pay_url` as a deep link), or a bank transfer
    to a virtual account."""

    order_no: str
    status: OrderStatus
    pay_url: str
    qr_code: str | None = None
    virtual_account: VirtualAccount | None = None


class OrderView(msgspec.Struct, frozen=True, kw_only=True):
    """Answer of ``GET /v1/orders/{order_no}`` and ``GET /v1/orders?merchant_ref=…``."""

    order_no: str
    merchant_ref: str
    status: OrderStatus
    amount_minor: PositiveMinor
    currency: str
    refunded_minor: Minor


class CreateRefund(msgspec.Struct, frozen=True, kw_only=True):
    """Body of ``POST /v1/refunds``; `refund_ref` is the idempotency key."""

    order_no: str
    refund_ref: Reference
    amount_minor: PositiveMinor


class RefundCreated(msgspec.Struct, frozen=True, kw_only=True):
    refund_no: str
    status: Literal["SUCCESS"]


class Error(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    message: str = ""


class CallbackEvent(msgspec.Struct, frozen=True, kw_only=True):
    """What the simulator POSTs to an order's notify_url."""

    event_id: Reference
    event: EventKind
    order_no: str
    merchant_ref: str
    amount_minor: PositiveMinor
    currency: str
    ts: int


PayoutStatus = Literal["PROCESSING", "PAID", "FAILED", "RETURNED"]
PayoutEventKind = Literal["payout.paid", "payout.failed", "payout.returned"]


class PayoutAccount(msgspec.Struct, frozen=True, kw_only=True):
    kind: Literal["bank_account", "crypto_wallet"]
    number: Reference
    holder: str | None = None
    bank_name: str | None = None


class CreatePayout(msgspec.Struct, frozen=True, kw_only=True):
    """Body of ``POST /v1/payouts``; `payout_ref` is the idempotency key."""

    payout_ref: Reference
    amount_minor: PositiveMinor
    currency: Currency
    account: PayoutAccount
    notify_url: HttpUrl


class PayoutView(msgspec.Struct, frozen=True, kw_only=True):
    """Answer of ``POST /v1/payouts`` and ``GET /v1/payouts?payout_ref=…``."""

    payout_no: str
    payout_ref: str
    status: PayoutStatus
    amount_minor: PositiveMinor
    currency: str
    failure_code: str | None = None


class PayoutEvent(msgspec.Struct, frozen=True, kw_only=True):
    """What the simulator POSTs to a payout's notify_url, signed like order callbacks."""

    event_id: Reference
    event: PayoutEventKind
    payout_no: str
    payout_ref: str
    amount_minor: PositiveMinor
    currency: str
    ts: int


# ``GET /v1/statements/{YYYY-MM-DD}``: the account's settled orders and refunds created that day
# (UTC), as CSV with this header; a refund's merchant_ref is its refund_ref, its order_no the
# refund_no; times are unix seconds.
STATEMENT_COLUMNS = (
    "order_no",
    "merchant_ref",
    "type",
    "amount_minor",
    "currency",
    "fee_minor",
    "status",
    "created_at",
    "paid_at",
)
StatementType = Literal["payment", "refund"]
StatementStatus = Literal["SUCCESS", "FAILED"]
FaultKind = Literal["extra", "omit", "amount", "status", "fee", "duplicate"]


class StatementFault(msgspec.Struct, frozen=True, kw_only=True):
    """A discrepancy to put into an account's statements (``PUT /_sim/statements/{api_key}/
    discrepancies``, a list of these; tests): `omit` drops the line of `merchant_ref`, `amount`
    and `fee` add `delta` to it, `status` reports it FAILED, `duplicate` lists it twice, `extra`
    adds a payment nobody asked for (`amount_minor`, `currency`) to every statement."""

    kind: FaultKind
    merchant_ref: Reference
    delta: int = 1
    amount_minor: PositiveMinor = "100"
    currency: Currency = "USD"


class SignatureInvalid(Exception):
    """A signed message was refused; the text says why and is safe to log or return."""


def api_signature(secret: str, timestamp: str, method: str, path: str, body: bytes) -> str:
    prefix = f"{timestamp}\n{method.upper()}\n{path}\n"
    mac = hmac.new(secret.encode(), prefix.encode(), hashlib.sha256)
    mac.update(body)
    return mac.hexdigest()


def callback_signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}\n".encode(), hashlib.sha256)
    mac.update(body)
    return mac.hexdigest()


def api_headers(
    api_key: str, secret: str, method: str, path: str, body: bytes, now: float
) -> dict[str, str]:
    timestamp = str(int(now))
    return {
        "Authorization": f"Bearer {api_key}",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: api_signature(secret, timestamp, method, path, body),
    }


def callback_headers(secret: str, body: bytes, now: float) -> dict[str, str]:
    timestamp = str(int(now))
    return {
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: callback_signature(secret, timestamp, body),
    }


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup that works for a CIMultiDict and for a plain dict alike."""
    value = headers.get(name)
    if value is None:
        wanted = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == wanted), None)
    return value


def verify_api(
    secret: str, headers: Mapping[str, str], method: str, path: str, body: bytes, now: float
) -> None:
    timestamp, given = _fresh(headers, now)
    _compare(api_signature(secret, timestamp, method, path, body), given)


def verify_callback(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> None:
    timestamp, given = _fresh(headers, now)
    _compare(callback_signature(secret, timestamp, body), given)


def _fresh(headers: Mapping[str, str], now: float) -> tuple[str, str]:
    """The timestamp and signature headers, once the timestamp is known to be recent."""
    timestamp = header(headers, TIMESTAMP_HEADER)
    given = header(headers, SIGNATURE_HEADER)
    if not timestamp or not given:
        raise SignatureInvalid(f"{TIMESTAMP_HEADER} and {SIGNATURE_HEADER} are required")
    if not timestamp.isascii() or not timestamp.isdigit():
        raise SignatureInvalid(f"{TIMESTAMP_HEADER} must be unix seconds")
    if abs(now - int(timestamp)) > TOLERANCE_S:
        raise SignatureInvalid(f"{TIMESTAMP_HEADER} is more than {TOLERANCE_S} s off")
    return timestamp, given


def _compare(expected: str, given: str) -> None:
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise SignatureInvalid("signature does not match")
