"""Request and response shapes. Handlers decode with these structs and the OpenAPI document is
generated from them, so the contract and the code cannot drift apart."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

OrderId = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-.:/]+$")]
AmountText = Annotated[
    str,
    Meta(
        description='Decimal string in major units, e.g. "12.34"; at most the currency\'s '
        "configured maximum (payments.max_amount; above it 400 amount_too_large)",
        examples=["12.34"],
    ),
]
CurrencyCode = Annotated[str, Meta(min_length=3, max_length=5, pattern=r"^[A-Z]{3,5}$")]
Url = Annotated[str, Meta(max_length=2048, pattern=r"^https?://")]
# Where the notify pool POSTs webhooks. `gateway.state.decode` checks every top-level field of
# this type with `domain.targets.check_target` (the `webhook_target` mark), so no handler can
# forget to.
NotifyUrl = Annotated[
    str,
    Meta(
        max_length=2048,
        pattern=r"^https?://",
        description="Where webhooks are POSTed: http(s) to a public host, without credentials; "
        "loopback, private, link-local and cloud-metadata hosts are refused (unsafe_url)",
        extra={"webhook_target": True},
    ),
]


DeviceId = Annotated[
    str,
    Meta(
        pattern=r"^[A-Za-z0-9_\-]{8,128}$",
        description="The device id `/checkout/device.js` computes in the customer's browser (a "
        "hash of stable browser signals); risk rules count and list by it",
    ),
]


class Customer(msgspec.Struct, forbid_unknown_fields=True):
    email: Annotated[str, Meta(max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")] | None = None
    ip: Annotated[str, Meta(max_length=45)] | None = None
    country: Annotated[str, Meta(pattern=r"^[A-Z]{2}$")] | None = None  # ISO 3166-1 alpha-2
    device_id: DeviceId | None = None
    id: (
        Annotated[
            str,
            Meta(
                pattern=r"^[A-Za-z0-9_.:\-]{1,64}$",
                description="The merchant's own id for its customer (risk velocity and lists)",
            ),
        ]
        | None
    ) = None


class Card(msgspec.Struct, forbid_unknown_fields=True):
    """What the merchant's card tokenisation (or the channel) tells of the card before the
    payment is judged: never the card number. Risk rules read these; `country` absent is
    looked up from the BIN in the local table."""

    fingerprint: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.:\-]{1,128}$")] | None = None
    bin: Annotated[str, Meta(pattern=r"^[0-9]{6,8}$")] | None = None
    country: Annotated[str, Meta(pattern=r"^[A-Z]{2}$")] | None = None


class CreatePayment(msgspec.Struct, forbid_unknown_fields=True):
    amount: AmountText
    currency: CurrencyCode
    merchant_order_id: OrderId
    method: Literal["card", "ewallet", "bank_transfer", "crypto"] | None = None
    description: Annotated[str, Meta(max_length=500)] | None = None
    customer: Customer | None = None
    card: Card | None = None
    notify_url: NotifyUrl | None = None
    return_url: Url | None = None
    metadata: (
        Annotated[dict[str, Annotated[str, Meta(max_length=500)]], Meta(max_length=20)] | None
    ) = None
    expires_in: (
        Annotated[int, Meta(ge=60, description="Seconds until an unpaid payment expires")] | None
    ) = None


class CreateRefund(msgspec.Struct, forbid_unknown_fields=True):
    payment_id: Annotated[str, Meta(min_length=1, max_length=64)]
    amount: AmountText | None = None
    reason: Annotated[str, Meta(max_length=500)] | None = None
    destination: (
        Annotated[
            str,
            Meta(
                max_length=128,
                description="Where a crypto payment's refund is sent (an address on its "
                "chain): required for those, refused for others",
            ),
        ]
        | None
    ) = None


class Payment(msgspec.Struct):
    id: str
    object: Literal["payment"]
    status: Literal[
        "pending",
        "in_review",
        "processing",
        "awaiting_payment",
        "succeeded",
        "failed",
        "expired",
        "canceled",
        "rejected",
        "partially_refunded",
        "refunded",
        "reversed",
    ]
    amount: str
    currency: str
    method: str | None
    merchant_order_id: str
    description: str | None
    metadata: dict[str, str] | None
    channel: str | None
    pay_url: str | None
    qr_payload: str | None
    checkout_url: str
    amount_refunded: str
    failure_code: str | None
    failure_message: str | None
    created: int
    expires_at: int
    fx: dict[str, Any] | None = None  # the locked quote, when charged in another currency
    # the risk decision: outcome, score, rule version, fired rules with the values they saw
    risk: dict[str, Any] | None = None
    bank_transfer: dict[str, str] | None = None  # bank_code, account_number, reference
    crypto: CryptoDeposit | None = None  # where to pay on a crypto channel, and the progress


class CryptoDeposit(msgspec.Struct):
    """A crypto payment's own deposit address, what is due there (in major units of `asset`)
    and the chain watcher's progress: `processing` once a transfer is in a block, with its
    confirmations, `confirmed` at the required depth."""

    network: str  # CAIP-2, e.g. eip155:1
    asset: Literal["ETH", "USDT"]
    address: str
    amount: str
    token_contract: str | None
    uri: str  # EIP-681
    state: Literal["awaiting", "processing", "confirmed"]
    amount_received: str
    confirmations: int
    confirmations_required: int | None


class Refund(msgspec.Struct):
    id: str
    object: Literal["refund"]
    payment_id: str
    status: Literal["pending", "processing", "succeeded", "failed"]
    amount: str
    currency: str
    reason: str | None
    destination: str | None  # a crypto refund's address
    failure_code: str | None
    failure_message: str | None
    created: int


class PaymentList(msgspec.Struct):
    object: Literal["list"]
    data: list[Payment]
    has_more: bool


class ErrorDetail(msgspec.Struct):
    type: Literal[
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "idempotency_error",
        "rate_limit_error",
        "api_error",
    ]
    code: str
    message: str
    param: str | None


class Error(msgspec.Struct):
    error: ErrorDetail
