"""Stripe's wire details without a server: webhook signatures, form bodies, statuses, events."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any, cast
from urllib.parse import parse_qsl

import aiohttp
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.base import CallbackRejected
from adapters.stripe import StripeAdapter, wire
from domain.channels import ChannelSpec, Credentials

SECRET = "whsec_test_secret"
NOW = 1_700_000_000.0
BODY = b'{"id": "evt_1", "type": "payment_intent.succeeded"}'


def _signed(body: bytes = BODY, secret: str = SECRET, now: float = NOW) -> dict[str, str]:
    return {wire.SIGNATURE_HEADER: wire.signature_header(secret, body, now)}


def _intent(**overrides: Any) -> dict[str, Any]:
    intent: dict[str, Any] = {
        "id": "pi_123",
        "object": "payment_intent",
        "status": "succeeded",
        "amount": 1999,
        "currency": "eur",
        "metadata": {"juhe_payment_id": "pay_abc"},
        "last_payment_error": None,
        "latest_charge": {"id": "ch_1", "object": "charge"},  # localstripe nests it; ignored
    }
    return intent | overrides


def _event(kind: str, obj: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {"id": "evt_1", "object": "event", "type": kind, "data": {"object": obj}, "created": 1}
    )


# Signatures


def test_signature_round_trip_and_format() -> None:
    value = wire.signature_header(SECRET, BODY, NOW)
    timestamp, v1 = value.split(",")
    assert timestamp == f"t={int(NOW)}"
    assert v1.startswith("v1=") and len(v1) == 3 + 64
    wire.verify_signature(SECRET, {wire.SIGNATURE_HEADER: value}, BODY, NOW)


def test_signature_is_hmac_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), b"1700000000.{}", hashlib.sha256).hexdigest()
    assert wire.signature(SECRET, 1_700_000_000, b"{}") == expected


@given(body=st.binary(max_size=256), index=st.integers(min_value=0), bit=st.integers(0, 7))
def test_signature_covers_every_byte(body: bytes, index: int, bit: int) -> None:
    headers = _signed(body)
    wire.verify_signature(SECRET, headers, body, NOW)
    if body:
        tampered = bytearray(body)
        tampered[index % len(body)] ^= 1 << bit
        with pytest.raises(wire.SignatureInvalid, match="does not match"):
            wire.verify_signature(SECRET, headers, bytes(tampered), NOW)


def test_tampered_body_is_rejected() -> None:
    with pytest.raises(wire.SignatureInvalid, match="does not match"):
        wire.verify_signature(SECRET, _signed(), BODY.replace(b"evt_1", b"evt_2"), NOW)


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(wire.SignatureInvalid, match="does not match"):
        wire.verify_signature("whsec_other", _signed(), BODY, NOW)


def test_timestamp_is_part_of_the_signed_text() -> None:
    good = wire.signature(SECRET, int(NOW), BODY)
    moved = {wire.SIGNATURE_HEADER: f"t={int(NOW) + 1},v1={good}"}
    with pytest.raises(wire.SignatureInvalid, match="does not match"):
        wire.verify_signature(SECRET, moved, BODY, NOW)


@pytest.mark.parametrize("skew", [-301, 301, 10_000])
def test_timestamps_outside_tolerance_are_rejected(skew: int) -> None:
    with pytest.raises(wire.SignatureInvalid, match="300 s off"):
        wire.verify_signature(SECRET, _signed(), BODY, NOW + skew)


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_timestamps_within_tolerance_are_accepted(skew: int) -> None:
    wire.verify_signature(SECRET, _signed(), BODY, NOW + skew)


def test_any_of_several_v1_entries_may_match() -> None:
    """While Stripe rolls an endpoint's secret it signs with the old and the new one."""
    good = wire.signature(SECRET, int(NOW), BODY)
    old = wire.signature("whsec_old", int(NOW), BODY)
    for value in (
        f"t={int(NOW)},v1={old},v1={good}",
        f"t={int(NOW)}, v1={good}, v1={old}, v0=ignored",
        f"v1={good},t={int(NOW)}",
    ):
        wire.verify_signature(SECRET, {wire.SIGNATURE_HEADER: value}, BODY, NOW)
    with pytest.raises(wire.SignatureInvalid, match="does not match"):
        value = f"t={int(NOW)},v1={old},v0={good}"  # only v1 counts
        wire.verify_signature(SECRET, {wire.SIGNATURE_HEADER: value}, BODY, NOW)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "required"),
        ("garbage", "t="),
        ("v1=abc", "t="),
        (f"t=,v1={'0' * 64}", "t="),
        (f"t=soon,v1={'0' * 64}", "t="),
        (f"t=-1,v1={'0' * 64}", "t="),
        (f"t=١٧٠٠٠٠٠٠٠٠,v1={'0' * 64}", "t="),  # non-ASCII digits
        (f"t={int(NOW)}", "no v1"),
        (f"t={int(NOW)},v0=abc", "no v1"),
        (f"t={int(NOW)},v1=é", "does not match"),
    ],
)
def test_malformed_headers_are_rejected(value: str, reason: str) -> None:
    with pytest.raises(wire.SignatureInvalid, match=reason):
        wire.verify_signature(SECRET, {wire.SIGNATURE_HEADER: value}, BODY, NOW)


def test_missing_header_is_rejected_and_lookup_ignores_case() -> None:
    with pytest.raises(wire.SignatureInvalid, match="required"):
        wire.verify_signature(SECRET, {}, BODY, NOW)
    lower = {"stripe-signature": wire.signature_header(SECRET, BODY, NOW)}
    wire.verify_signature(SECRET, lower, BODY, NOW)


# Form bodies


def test_form_encoding_nests_mappings_and_sequences() -> None:
    body = wire.form_encode(
        {
            "amount": 1999,
            "confirm": False,
            "livemode": True,
            "currency": "eur",
            "metadata": {"juhe_payment_id": "pay_1", "note": "a&b=c ü"},
            "payment_method_types": ["card", "sepa_debit"],
            "deep": {"a": {"b": [{"c": "d"}]}},
            "skipped": None,
        }
    )
    assert parse_qsl(body.decode(), strict_parsing=True) == [
        ("amount", "1999"),
        ("confirm", "false"),
        ("livemode", "true"),
        ("currency", "eur"),
        ("metadata[juhe_payment_id]", "pay_1"),
        ("metadata[note]", "a&b=c ü"),
        ("payment_method_types[0]", "card"),
        ("payment_method_types[1]", "sepa_debit"),
        ("deep[a][b][0][c]", "d"),
    ]


def test_create_intent_form() -> None:
    params = wire.CreateIntent(
        amount=500, currency="usd", metadata={wire.PAYMENT_ID_KEY: "pay_1"}, description="Tea"
    )
    assert dict(parse_qsl(wire.form(params).decode())) == {
        "amount": "500",
        "currency": "usd",
        "metadata[juhe_payment_id]": "pay_1",
        "capture_method": "automatic",
        "payment_method_types[0]": "card",
        "description": "Tea",
    }
    without = wire.CreateIntent(amount=500, currency="usd", metadata={})
    assert "description" not in dict(parse_qsl(wire.form(without).decode()))


def test_search_query_escapes_quotes() -> None:
    assert wire.search_query("pay_1") == "metadata['juhe_payment_id']:'pay_1'"
    assert wire.search_query("a'b\\c") == "metadata['juhe_payment_id']:'a\\'b\\\\c'"


def test_confirm_keys_differ_per_step_and_card() -> None:
    attach, confirm = wire.confirm_keys("pi_1", "pm_1")
    assert attach != confirm
    assert wire.confirm_keys("pi_1", "pm_2") != (attach, confirm)


# Statuses and errors


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("succeeded", "paid"),
        ("canceled", "failed"),
        ("requires_payment_method", "pending"),
        ("requires_confirmation", "pending"),
        ("requires_action", "pending"),
        ("requires_capture", "pending"),
        ("processing", "pending"),
        ("some_future_status", "pending"),
    ],
)
def test_status_mapping(status: str, outcome: str) -> None:
    assert wire.order_status(status) == outcome


def test_error_bodies() -> None:
    raw = b'{"error": {"type": "card_error", "code": "card_declined", "decline_code": "x"}}'
    error = wire.decode_error(raw)
    assert error is not None
    assert (error.type, error.code, error.decline_code, error.message) == (
        "card_error",
        "card_declined",
        "x",
        "",
    )
    assert wire.decode_error(b"<html>bad gateway</html>") is None
    assert wire.decode_error(b'{"no": "error"}') is None


# Events


@pytest.mark.parametrize(
    ("kind", "outcome"),
    [
        ("payment_intent.succeeded", "paid"),
        ("payment_intent.payment_failed", "failed"),
        ("payment_intent.processing", "pending"),
    ],
)
def test_handled_events(kind: str, outcome: str) -> None:
    event = wire.decode_event(_event(kind, _intent()))
    assert event is not None
    assert (event.event_id, event.outcome, event.payment_id) == ("evt_1", outcome, "pay_abc")
    assert (event.intent.id, event.intent.amount, event.intent.currency) == ("pi_123", 1999, "eur")


@pytest.mark.parametrize(
    "kind",
    ["charge.succeeded", "payment_intent.created", "payment_intent.canceled", "customer.created"],
)
def test_other_event_types_are_ignored(kind: str) -> None:
    # The object need not even be an intent: it is never decoded.
    assert wire.decode_event(_event(kind, {"id": "cus_1", "object": "customer"})) is None


@pytest.mark.parametrize("metadata", [{}, {"other": "x"}, {"juhe_payment_id": ""}])
def test_intents_we_did_not_open_are_ignored(metadata: dict[str, str]) -> None:
    body = _event("payment_intent.succeeded", _intent(metadata=metadata))
    assert wire.decode_event(body) is None


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"id": "evt_1"}',
        _event("payment_intent.succeeded", {"id": "pi_1"}),  # no status, amount, currency
        _event("payment_intent.succeeded", _intent(amount="12")),
    ],
)
def test_unreadable_events_are_invalid(body: bytes) -> None:
    with pytest.raises(wire.PayloadInvalid):
        wire.decode_event(body)


# The adapter's translation of a verified webhook (no HTTP involved)


def _adapter() -> StripeAdapter:
    spec = ChannelSpec(
        code="stripe",
        adapter="stripe",
        base_url="http://127.0.0.1:1",
        credentials=Credentials({"secret_key": "sk_test_x", "webhook_secret": SECRET}),
    )
    return StripeAdapter(spec, cast(aiohttp.ClientSession, None))  # parse_callback makes no call


def test_parse_callback_paid() -> None:
    body = _event("payment_intent.succeeded", _intent())
    callback = _adapter().parse_callback(_signed(body, now=time.time()), body)
    assert callback is not None
    assert (callback.channel, callback.event_id, callback.payment_id) == (
        "stripe",
        "evt_1",
        "pay_abc",
    )
    assert (callback.channel_order_id, callback.outcome) == ("pi_123", "paid")
    assert (callback.amount, callback.currency) == ("1999", "EUR")
    assert callback.failure_code is None and callback.failure_message is None


def test_parse_callback_failed_carries_the_decline() -> None:
    error = {"code": "card_declined", "decline_code": "insufficient_funds", "message": "No."}
    intent = _intent(status="requires_payment_method", last_payment_error=error)
    body = _event("payment_intent.payment_failed", intent)
    callback = _adapter().parse_callback(_signed(body, now=time.time()), body)
    assert callback is not None and callback.outcome == "failed"
    assert (callback.failure_code, callback.failure_message) == ("card_declined", "No.")


def test_parse_callback_ignores_what_is_not_ours() -> None:
    body = _event("charge.refunded", {"id": "ch_1"})
    assert _adapter().parse_callback(_signed(body, now=time.time()), body) is None


def test_parse_callback_rejects_bad_signatures_before_reading() -> None:
    body = b"not even json"
    with pytest.raises(CallbackRejected) as rejected:
        _adapter().parse_callback(_signed(body, secret="whsec_other", now=time.time()), body)
    assert rejected.value.code == "invalid_signature"
    with pytest.raises(CallbackRejected) as stale:
        _adapter().parse_callback(_signed(body, now=time.time() - 3600), body)
    assert stale.value.code == "invalid_signature"
    with pytest.raises(CallbackRejected) as malformed:
        _adapter().parse_callback(_signed(body, now=time.time()), body)
    assert malformed.value.code == "invalid_payload"


def test_ack_and_credentials() -> None:
    ack = _adapter().callback_ack()
    assert (ack.status, orjson.loads(ack.body), ack.content_type) == (
        200,
        {"received": True},
        "application/json",
    )
    spec = ChannelSpec(
        code="stripe",
        adapter="stripe",
        base_url="http://x",
        credentials=Credentials({"secret_key": "sk_live_do_not_print"}),
    )
    with pytest.raises(ValueError, match="webhook_secret") as missing:
        StripeAdapter(spec, cast(aiohttp.ClientSession, None))
    assert "sk_live_do_not_print" not in str(missing.value)
