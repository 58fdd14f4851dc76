"""HMAC request and webhook signatures (domain/signing.py)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.signing import (
    SignatureError,
    replay_window_s,
    request_digest,
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


def _header(scheme: str = "v2", **changes: object) -> str:
    args: dict[str, object] = {
        "timestamp": TS,
        "method": METHOD,
        "path_qs": PATH,
        "body": BODY,
    }
    args.update(changes)
    return f"{scheme}=" + request_signature(SECRET, **args, scheme=scheme)  # type: ignore[arg-type]


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
    body_hash = hashlib.sha256(BODY).hexdigest()
    v2 = f"v2\n{TS}\nPOST\n{PATH}\n{body_hash}".encode()
    assert request_signature(SECRET, TS, "POST", PATH, BODY) == (
        hmac.new(SECRET, v2, hashlib.sha256).hexdigest()
    )
    v1 = f"{TS}.POST.{PATH}.".encode() + BODY
    assert request_signature(SECRET, TS, "POST", PATH, BODY, "v1") == (
        hmac.new(SECRET, v1, hashlib.sha256).hexdigest()
    )


def test_v1_lets_a_dot_move_between_path_and_body_and_v2_does_not() -> None:
    """The ambiguity v2 removes: `{ts}.{METHOD}.{path}.{body}` signs (/a.b, c) and (/a, b.c)
    alike, so a v1 signature of one verifies for the other."""
    signed, resplit = ("/api/v1/x.y", b"z"), ("/api/v1/x", b"y.z")
    v1 = "v1=" + request_signature(SECRET, TS, METHOD, *signed, "v1")
    _verify(v1, path_qs=resplit[0], body=resplit[1])
    v2 = "v2=" + request_signature(SECRET, TS, METHOD, *signed)
    _verify(v2, path_qs=signed[0], body=signed[1])
    with pytest.raises(SignatureError) as info:
        _verify(v2, path_qs=resplit[0], body=resplit[1])
    assert info.value.code == "invalid_signature"
    assert request_digest(TS, METHOD, *signed) != request_digest(TS, METHOD, *resplit)


def test_a_header_may_carry_both_and_v2_decides() -> None:
    v1, v2 = _header("v1"), _header("v2")
    _verify(f"{v1},{v2}")
    _verify(f"{v2}, {v1}")
    _verify(f"{v2},v1={'0' * 64}")  # a wrong v1 beside a good v2 does no harm
    _verify(f"{v1},v3=future")  # schemes we do not know are ignored
    for header in (f"{v1},v2={'0' * 64}", f"{v2},{v2}", f"{v1},", "v3=future"):
        with pytest.raises(SignatureError) as info:
            _verify(header)
        assert info.value.code == "invalid_signature", header


def test_a_request_is_remembered_until_its_timestamp_leaves_the_window() -> None:
    assert replay_window_s(NOW, NOW, 300) == 301
    assert replay_window_s(NOW, NOW - 300, 300) == 601, "signed ahead of our clock"
    assert replay_window_s(NOW, NOW + 299.5, 300) == 2
    assert replay_window_s(NOW, NOW + 300, 300) == 1


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
    for scheme in ("v1", "v2"):
        first = request_signature(keyed, ts, method, path, body, scheme)
        assert first == request_signature(secret, ts, method, path, body, scheme)
        # the pre-keyed signer is copied, never consumed: it gives the same answer again
        assert request_signature(keyed, ts, method, path, body, scheme) == first


def test_method_is_case_insensitive() -> None:
    assert request_signature(SECRET, TS, "post", PATH, BODY) == request_signature(
        SECRET, TS, "POST", PATH, BODY
    )


@pytest.mark.parametrize("scheme", ["v1", "v2"])
@pytest.mark.parametrize("key", [SECRET, signer(SECRET)], ids=["bytes", "signer"])
def test_verify_request_accepts_good_signature(key: object, scheme: str) -> None:
    _verify(_header(scheme), key=key)
    # still inside the window on either side
    _verify(_header(scheme), key=key, now=float(NOW + 300))
    _verify(_header(scheme), key=key, now=float(NOW - 300))


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
@pytest.mark.parametrize("scheme", ["v1", "v2"])
def test_verify_request_rejects_tampering(changes: dict[str, object], scheme: str) -> None:
    with pytest.raises(SignatureError) as info:
        _verify(_header(scheme), **changes)
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


_V1 = request_signature(SECRET, TS, METHOD, PATH, BODY, "v1")
_V2 = request_signature(SECRET, TS, METHOD, PATH, BODY)


@pytest.mark.parametrize(
    "header",
    [
        _V2,  # no scheme
        "v2=" + _V1,
        "v1=" + _V2,
        "V2=" + _V2,
        "v2=",
        "",
        "v2=" + "0" * 64,
        "v2=" + _V2.upper(),
        "v2=" + _V2[:-1],
        "v1=" + _V1.upper(),
    ],
)
def test_verify_request_rejects_bad_header(header: str) -> None:
    with pytest.raises(SignatureError) as info:
        _verify(header)
    assert info.value.code == "invalid_signature"


def test_verify_request_non_ascii_header_is_invalid_signature() -> None:
    with pytest.raises(SignatureError) as info:
        _verify("v2=\u00e9")
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
