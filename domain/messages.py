"""Messages between processes, on Redis streams and RabbitMQ queues (msgpack via msgspec).

Amounts travel as decimal strings of the minor-unit integer: msgpack integers stop at 64 bits and
an ETH amount in wei does not fit.
"""

from __future__ import annotations

from typing import Literal, TypeVar

import msgspec

T = TypeVar("T")


class Message(msgspec.Struct, frozen=True, omit_defaults=True):
    request_id: str = ""


class PaymentIntent(Message, frozen=True, kw_only=True):
    id: str
    merchant_id: str
    merchant_order_id: str
    amount: str
    currency: str
    method: str | None = None  # card, ewallet, bank_transfer, crypto
    description: str | None = None
    # Sealed (infra.sealing CUSTOMER_EMAIL, CUSTOMER_IP, bound to the payment id) by the gateway:
    # an intent sits in Redis (the hot copy, the stream) and RabbitMQ, so never in clear text.
    customer_email: str | None = None
    customer_ip: str | None = None
    customer_country: str | None = None
    customer_device: str | None = None  # the cashier page's device id (risk velocity, lists)
    customer_id: str | None = None  # the merchant's id for its customer
    card_fingerprint: str | None = None  # the card as the merchant's tokenisation knows it
    card_bin: str | None = None
    card_country: str | None = None
    notify_url: str | None = None
    return_url: str | None = None
    metadata: dict[str, str] | None = None
    created_at: float
    expires_at: float


class RefundIntent(Message, frozen=True, kw_only=True):
    id: str
    payment_id: str
    merchant_id: str
    channel: str
    amount: str
    currency: str
    reason: str | None = None
    destination: str | None = None  # for a channel that refunds to an address
    created_at: float


class ChannelCallback(Message, frozen=True, kw_only=True):
    """A channel's notification, already verified and translated by its adapter."""

    channel: str
    event_id: str
    payment_id: str
    channel_order_id: str
    # reversed: paid, then taken back by the network (a reorg dropped a confirmed deposit)
    outcome: Literal["paid", "failed", "pending", "reversed"]
    amount: str | None = None
    currency: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    # What the channel took when it differs from `amount` (minor units): a crypto deposit
    # within its tolerance, or one short of it that operations accepted (domain.chain)
    received: str | None = None
    # Set only by a reconciliation resolution (`accept_channel`), never by an adapter: the
    # channel's word may then move a payment Juhe ended without its money to succeeded.
    reconciled: bool = False


class ChannelTask(Message, frozen=True, kw_only=True):
    kind: Literal["create", "refund", "confirm", "check", "cancel", "payout"]
    id: str
    channel: str
    # For a create: where the payment goes next if this channel declines it or has no order.
    fallbacks: tuple[str, ...] = ()
    # For a confirm: the customer's card, as the channel's client-side library tokenised it.
    payment_method: str | None = None


class RefundOutcome(Message, frozen=True, kw_only=True):
    refund_id: str
    succeeded: bool
    channel_refund_id: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    # what the channel's network charged to send it (a chain's gas, in minor units of
    # `network_fee_currency`): the channel's cost
    network_fee: str | None = None
    network_fee_currency: str | None = None


class LedgerCommand(Message, frozen=True, kw_only=True):
    callback: ChannelCallback | None = None
    refund: RefundOutcome | None = None


class NotifyTask(Message, frozen=True, kw_only=True):
    event_id: str
    attempt: int = 0


_encoder = msgspec.msgpack.Encoder()
encode = _encoder.encode


def decoder(kind: type[T]) -> msgspec.msgpack.Decoder[T]:
    return msgspec.msgpack.Decoder(kind)


def envelope_decoder(kind: type[T]) -> msgspec.msgpack.Decoder[list[T]]:
    """Queue messages are envelopes: arrays of items of the queue's one type."""
    return msgspec.msgpack.Decoder(list[kind])  # type: ignore[valid-type]
