"""HMAC request and webhook signatures (domain/signing.py)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.signing import (
    SignatureError,
    request_signature,
    signer,
    verify_request,
    verify_webhook,
    webhook_signature,
)

SECRET = b"whsec_test_secret"
NOW = 1_700_000_000
TS = str(NOW)
METHOD = "POST"
PATH = "/v1/payments?expand=refunds"
BODY = b'{"amount":"12.34","currency":"USD"}'


def _header(**changes: object) -> str:
    args: dict[str, object] = {
        "timestamp": TS,
        "method": METHOD,
        "path_qs": PATH,
        "body": BODY,
    }
    args.update(changes)
    return "v1=" + request_signature(SECRET, **args)  # type: ignore[arg-type]


def _verify(header: str, **changes: object) -> None:
    args: dict[str, object] = {
        "key": SECRET,
        "timestamp": TS,
        "method": METHOD,
        "path_qs": PATH,
        "body": BODY,
        "header": header,
        "now": float(NOW),
        "tolerance_s": 300,
    }
    args.update(changes)
    verify_request(**args)  # type: ignore[arg-type]


def test_request_signature_is_hmac_sha256_of_documented_message() -> None:
    expected = hmac.new(SECRET, f"{TS}.POST.{PATH}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert request_signature(SECRET, TS, "POST", PATH, BODY) == expected
    assert len(expected) == 64


@given(
    st.binary(min_size=1, max_size=64),
    st.integers(min_value=0, max_value=2**40).map(str),
    st.sampled_from(["GET", "POST", "delete", "Patch"]),
    st.text(max_size=40),
    st.binary(max_size=200),
)
def test_bytes_secret_and_prekeyed_signer_agree(
    secret: bytes, ts: str, method: str, path: str, body: bytes
) -> None:
    keyed = signer(secret)
    first = request_signature(keyed, ts, method, path, body)
    assert first == request_signature(secret, ts, method, path, body)
    # the pre-keyed signer is copied, never consumed: it gives the same answer again
    assert request_signature(keyed, ts, method, path, body) == first


def test_method_is_case_insensitive() -> None:
    assert request_signature(SECRET, TS, "post", PATH, BODY) == request_signature(
        SECRET, TS, "POST", PATH, BODY
    )


@pytest.mark.parametrize("key", [SECRET, signer(SECRET)], ids=["bytes", "signer"])
def test_verify_request_accepts_good_signature(key: object) -> None:
    _verify(_header(), key=key)
    # still inside the window on either side
    _verify(_header(), key=key, now=float(NOW + 300))
    _verify(_header(), key=key, now=float(NOW - 300))


@pytest.mark.parametrize(
    "changes",
    [
        {"body": BODY + b" "},
        {"body": b""},
        {"method": "PUT"},
        {"path_qs": "/v1/payments"},
        {"path_qs": PATH + "&x=1"},
        {"timestamp": str(NOW + 1)},
        {"key": b"another secret"},
    ],
    ids=["body", "empty-body", "method", "path", "query", "timestamp", "key"],
)
def test_verify_request_rejects_tampering(changes: dict[str, object]) -> None:
    with pytest.raises(SignatureError) as info:
        _verify(_header(), **changes)
    assert info.value.code == "invalid_signature"


@pytest.mark.parametrize("now", [NOW + 301, NOW - 301, NOW + 10**6])
def test_verify_request_rejects_stale_timestamp(now: int) -> None:
    with pytest.raises(SignatureError) as info:
        _verify(_header(), now=float(now))
    assert info.value.code == "stale_timestamp"


@pytest.mark.parametrize("timestamp", ["", "abc", "1.5", "1e9", "0x10"])
def test_verify_request_rejects_invalid_timestamp(timestamp: str) -> None:
    with pytest.raises(SignatureError) as info:
        _verify(_header(timestamp=timestamp), timestamp=timestamp)
    assert info.value.code == "invalid_timestamp"


@pytest.mark.parametrize(
    "header",
    [
        request_signature(SECRET, TS, METHOD, PATH, BODY),  # no scheme
        "v2=" + request_signature(SECRET, TS, METHOD, PATH, BODY),
        "V1=" + request_signature(SECRET, TS, METHOD, PATH, BODY),
        "v1=",
        "",
        "v1=" + "0" * 64,
        "v1=" + request_signature(SECRET, TS, METHOD, PATH, BODY).upper(),
        "v1=" + request_signature(SECRET, TS, METHOD, PATH, BODY)[:-1],
    ],
)
def test_verify_request_rejects_bad_header(header: str) -> None:
    with pytest.raises(SignatureError) as info:
        _verify(header)
    assert info.value.code == "invalid_signature"


def test_verify_request_non_ascii_header_is_invalid_signature() -> None:
    with pytest.raises(SignatureError) as info:
        _verify("v1=\u00e9")
    assert info.value.code == "invalid_signature"


def test_timestamp_checked_before_header_format() -> None:
    with pytest.raises(SignatureError) as info:
        _verify("garbage", now=float(NOW + 10_000))
    assert info.value.code == "stale_timestamp"


# ---------------------------------------------------------------------------- webhooks


def test_webhook_signature_format() -> None:
    header = webhook_signature(SECRET, NOW, BODY)
    expected = hmac.new(SECRET, f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header == f"t={NOW},v1={expected}"


@given(st.binary(min_size=1, max_size=64), st.binary(max_size=300), st.integers(0, 2**40))
def test_webhook_round_trip(secret: bytes, body: bytes, ts: int) -> None:
    verify_webhook(secret, webhook_signature(secret, ts, body), body, float(ts), 300)


def test_webhook_accepts_reordered_fields_and_edges_of_window() -> None:
    header = webhook_signature(SECRET, NOW, BODY)
    t, v1 = header.split(",")
    verify_webhook(SECRET, f"{v1},{t}", BODY, float(NOW), 300)
    verify_webhook(SECRET, header, BODY, float(NOW + 300), 300)
    verify_webhook(SECRET, header, BODY, float(NOW - 300), 300)


@pytest.mark.parametrize(
    ("secret", "body"),
    [(SECRET, BODY + b"x"), (SECRET, b""), (b"other", BODY)],
    ids=["body", "empty-body", "secret"],
)
def test_webhook_rejects_tampering(secret: bytes, body: bytes) -> None:
    header = webhook_signature(SECRET, NOW, BODY)
    with pytest.raises(SignatureError) as info:
        verify_webhook(secret, header, body, float(NOW), 300)
    assert info.value.code == "invalid_signature"


def test_webhook_rejects_changed_timestamp() -> None:
    header = webhook_signature(SECRET, NOW, BODY)
    forged = header.replace(f"t={NOW}", f"t={NOW + 1}")
    with pytest.raises(SignatureError) as info:
        verify_webhook(SECRET, forged, BODY, float(NOW), 300)
    assert info.value.code == "invalid_signature"


@pytest.mark.parametrize("now", [NOW + 301, NOW - 301])
def test_webhook_rejects_stale(now: int) -> None:
    header = webhook_signature(SECRET, NOW, BODY)
    with pytest.raises(SignatureError) as info:
        verify_webhook(SECRET, header, BODY, float(now), 300)
    assert info.value.code == "stale_timestamp"


@pytest.mark.parametrize(
    "header",
    ["", "garbage", f"t={NOW}", "v1=abcd", "t=abc,v1=abcd", f"t={NOW};v1=abcd"],
)
def test_webhook_rejects_malformed_header(header: str) -> None:
    with pytest.raises(SignatureError) as info:
        verify_webhook(SECRET, header, BODY, float(NOW), 300)
    assert info.value.code == "invalid_signature"


def test_webhook_non_ascii_signature_is_invalid_signature() -> None:
    with pytest.raises(SignatureError) as info:
        verify_webhook(SECRET, f"t={NOW},v1=\u00e9", BODY, float(NOW), 300)
    assert info.value.code == "invalid_signature"
