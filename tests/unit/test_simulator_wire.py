"""The simulator's signatures and bodies: what both the server and the adapter rely on."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.simulator import wire

SECRET = "sim_secret_test"
NOW = 1_700_000_000.0
PATH = "/v1/orders?merchant_ref=a+b%26c"


def _api(body: bytes = b'{"x":1}', method: str = "POST", path: str = PATH) -> dict[str, str]:
    return wire.api_headers("key", SECRET, method, path, body, NOW)


def test_api_signature_round_trip() -> None:
    headers = _api()
    assert headers["Authorization"] == "Bearer key"
    wire.verify_api(SECRET, headers, "POST", PATH, b'{"x":1}', NOW)


@pytest.mark.parametrize(
    ("secret", "method", "path", "body"),
    [
        ("other_secret", "POST", PATH, b'{"x":1}'),
        (SECRET, "GET", PATH, b'{"x":1}'),
        (SECRET, "POST", "/v1/orders?merchant_ref=a+b%26d", b'{"x":1}'),
        (SECRET, "POST", PATH, b'{"x":2}'),
    ],
)
def test_api_signature_detects_tampering(secret: str, method: str, path: str, body: bytes) -> None:
    with pytest.raises(wire.SignatureInvalid, match="does not match"):
        wire.verify_api(secret, _api(), method, path, body, NOW)


@given(body=st.binary(max_size=256), index=st.integers(min_value=0), bit=st.integers(0, 7))
def test_callback_signature_covers_every_byte(body: bytes, index: int, bit: int) -> None:
    headers = wire.callback_headers(SECRET, body, NOW)
    wire.verify_callback(SECRET, headers, body, NOW)
    if body:
        tampered = bytearray(body)
        tampered[index % len(body)] ^= 1 << bit
        with pytest.raises(wire.SignatureInvalid):
            wire.verify_callback(SECRET, headers, bytes(tampered), NOW)


@pytest.mark.parametrize("skew", [-301, 301, 10_000])
def test_stale_timestamps_are_rejected(skew: int) -> None:
    headers = wire.callback_headers(SECRET, b"{}", NOW)
    with pytest.raises(wire.SignatureInvalid, match="off"):
        wire.verify_callback(SECRET, headers, b"{}", NOW + skew)


@pytest.mark.parametrize("skew", [-300, 0, 300])
def test_timestamps_within_tolerance_are_accepted(skew: int) -> None:
    headers = wire.callback_headers(SECRET, b"{}", NOW)
    wire.verify_callback(SECRET, headers, b"{}", NOW + skew)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {wire.TIMESTAMP_HEADER: str(int(NOW))},
        {wire.TIMESTAMP_HEADER: "soon", wire.SIGNATURE_HEADER: "ab"},
        {wire.TIMESTAMP_HEADER: "-1", wire.SIGNATURE_HEADER: "ab"},
        {wire.TIMESTAMP_HEADER: str(int(NOW)), wire.SIGNATURE_HEADER: "é"},
    ],
)
def test_malformed_signature_headers_are_rejected(headers: dict[str, str]) -> None:
    with pytest.raises(wire.SignatureInvalid):
        wire.verify_callback(SECRET, headers, b"{}", NOW)


def test_header_lookup_ignores_case() -> None:
    headers = {k.lower(): v for k, v in wire.callback_headers(SECRET, b"{}", NOW).items()}
    wire.verify_callback(SECRET, headers, b"{}", NOW)
    assert wire.header({"X-SIM-TIMESTAMP": "1"}, wire.TIMESTAMP_HEADER) == "1"
    assert wire.header({}, wire.TIMESTAMP_HEADER) is None


GOOD_ORDER = {
    "merchant_ref": "pay_1",
    "amount_minor": "123456789012345678901234567890",  # wei: well beyond 64 bits
    "currency": "ETH",
    "notify_url": "http://127.0.0.1:1/cb",
    "expire_at": 1_700_000_900,
}


def test_create_order_decodes_large_amounts_and_optional_fields() -> None:
    order = msgspec.json.decode(msgspec.json.encode(GOOD_ORDER), type=wire.CreateOrder)
    assert order.amount_minor == GOOD_ORDER["amount_minor"]
    assert order.return_url is None and order.subject is None


@pytest.mark.parametrize(
    "change",
    [
        {"amount_minor": "12.5"},
        {"amount_minor": "-1"},
        {"amount_minor": "0"},
        {"amount_minor": "007"},
        {"amount_minor": 100},
        {"currency": "usd"},
        {"merchant_ref": ""},
        {"notify_url": "ftp://example.com/cb"},
        {"expire_at": "tomorrow"},
        {"return_url": "javascript:alert(1)"},
    ],
)
def test_create_order_rejects_bad_fields(change: dict[str, object]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(msgspec.json.encode(GOOD_ORDER | change), type=wire.CreateOrder)


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b'{"merchant_ref": "x"}', b"\xff"])
def test_malformed_bodies_fail_to_decode(body: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(body, type=wire.CreateOrder)


def test_callback_event_rejects_unknown_events() -> None:
    event = {
        "event_id": "evt_1",
        "event": "order.refunded",
        "order_no": "SIM1",
        "merchant_ref": "pay_1",
        "amount_minor": "100",
        "currency": "USD",
        "ts": 1,
    }
    with pytest.raises(msgspec.ValidationError, match="event"):
        msgspec.json.decode(msgspec.json.encode(event), type=wire.CallbackEvent)
    decoded = msgspec.json.decode(
        msgspec.json.encode(event | {"event": "order.paid"}), type=wire.CallbackEvent
    )
    assert decoded.event == "order.paid"


def test_refund_bodies_require_positive_amounts() -> None:
    body = {"order_no": "SIM1", "refund_ref": "ref_1", "amount_minor": "0"}
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(msgspec.json.encode(body), type=wire.CreateRefund)
