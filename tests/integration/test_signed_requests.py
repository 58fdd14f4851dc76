"""Signed merchant requests against the running node (issue 12 of the security review): a
signed request that changes something is taken once while its signature is valid, and both
signature schemes work (v2, and the v1 that existing clients send)."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import orjson
import pytest

from domain.signing import request_signature
from gateway.client import MerchantClient, signed_headers
from tests.conftest import wait_status
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _send(
    stack: Stack, http, method: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, Any]:
    async with http.request(method, stack.url + path, data=body, headers=headers) as response:
        return response.status, await response.json()


async def _paid(merchant: MerchantClient, amount: str = "20.00") -> str:
    status, created = await merchant.create_payment(
        amount=amount, currency="USD", merchant_order_id="ord_" + secrets.token_hex(6)
    )
    assert status == 201, created
    await wait_status(merchant, created["id"], {"succeeded"})
    return created["id"]


async def _refunded(merchant: MerchantClient, payment_id: str, amount: str) -> None:
    """Wait until the payment shows `amount` refunded (every refund taken has succeeded)."""
    deadline = time.monotonic() + 15
    while True:
        _, body = await merchant.get_payment(payment_id)
        if body["amount_refunded"] == amount or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert body["amount_refunded"] == amount, body


async def test_the_same_signed_refund_sent_twice_refunds_once(stack: Stack, http, merchant) -> None:
    payment_id = await _paid(merchant)
    path, body = "/api/v1/refunds", orjson.dumps({"payment_id": payment_id, "amount": "1.00"})
    headers = signed_headers(merchant.key_id, merchant.secret, "POST", path, body)
    status, first = await _send(stack, http, "POST", path, body, headers)
    assert status == 201, first
    status, again = await _send(stack, http, "POST", path, body, headers)
    assert status == 401 and again["error"]["code"] == "replayed_request", again
    assert again["error"]["type"] == "authentication_error"
    # Dropping or adding a scheme does not make the repeat new: it is the same request.
    v1 = request_signature(
        merchant.secret.encode(), headers["X-Juhe-Timestamp"], "POST", path, body, "v1"
    )
    for signature in (f"v1={v1}", f"v1={v1},{headers['X-Juhe-Signature']}"):
        status, again = await _send(
            stack, http, "POST", path, body, {**headers, "X-Juhe-Signature": signature}
        )
        assert status == 401 and again["error"]["code"] == "replayed_request", signature
    # The same body signed again (a fresh timestamp) is a new request, as it always was.
    fresh = signed_headers(merchant.key_id, merchant.secret, "POST", path, body, time.time() + 1)
    status, second = await _send(stack, http, "POST", path, body, fresh)
    assert status == 201 and second["id"] != first["id"], second
    await _refunded(merchant, payment_id, "2.00")
    await asyncio.sleep(0.5)
    _, payment = await merchant.get_payment(payment_id)
    assert payment["amount_refunded"] == "2.00", "two refunds, not three"


async def test_a_repeat_with_its_idempotency_key_gets_the_first_answer(
    stack: Stack, http, merchant
) -> None:
    """A client retrying with the same Idempotency-Key within the same second sends the same
    signature: it gets the first answer, as idempotency promises. Swapping the (unsigned)
    key of a captured request does not make it new."""
    payment_id = await _paid(merchant)
    path, body = "/api/v1/refunds", orjson.dumps({"payment_id": payment_id, "amount": "1.00"})
    headers = {
        **signed_headers(merchant.key_id, merchant.secret, "POST", path, body),
        "Idempotency-Key": "refund-" + secrets.token_hex(4),
    }
    status, first = await _send(stack, http, "POST", path, body, headers)
    assert status == 201, first
    status, again = await _send(stack, http, "POST", path, body, headers)
    assert status == 201 and again == first
    for key in ("another-" + secrets.token_hex(4), None):
        changed = {k: v for k, v in headers.items() if k != "Idempotency-Key"}
        if key:
            changed["Idempotency-Key"] = key
        status, body_ = await _send(stack, http, "POST", path, body, changed)
        assert status == 401 and body_["error"]["code"] == "replayed_request", key
    await _refunded(merchant, payment_id, "1.00")

    # Creates and cancels alike.
    create = orjson.dumps(
        {"amount": "3.56", "currency": "USD", "merchant_order_id": "ord_" + secrets.token_hex(6)}
    )
    signed = signed_headers(merchant.key_id, merchant.secret, "POST", "/api/v1/payments", create)
    status, created = await _send(stack, http, "POST", "/api/v1/payments", create, signed)
    assert status == 201, created
    status, body_ = await _send(stack, http, "POST", "/api/v1/payments", create, signed)
    assert status == 401 and body_["error"]["code"] == "replayed_request"
    cancel = f"/api/v1/payments/{created['id']}/cancel"
    signed = signed_headers(merchant.key_id, merchant.secret, "POST", cancel, b"")
    status, canceled = await _send(stack, http, "POST", cancel, b"", signed)
    assert status == 200 and canceled["status"] == "canceled", canceled
    status, body_ = await _send(stack, http, "POST", cancel, b"", signed)
    assert status == 401 and body_["error"]["code"] == "replayed_request"


async def test_every_unsafe_method_is_taken_once_and_reads_are_not(
    stack: Stack, http, merchant
) -> None:
    payment_id = await _paid(merchant, "2.00")
    path = f"/api/v1/payments/{payment_id}"
    read = signed_headers(merchant.key_id, merchant.secret, "GET", path, b"")
    for _ in range(2):
        status, body = await _send(stack, http, "GET", path, b"", read)
        assert status == 200 and body["id"] == payment_id
    # A key may not change its merchant's configuration; a repeat is refused before that.
    config = f"/api/v1/merchants/{merchant.merchant_id}/payment-config"
    body = orjson.dumps({"return_url": "https://shop.example/done"})
    change = signed_headers(merchant.key_id, merchant.secret, "PUT", config, body)
    status, answer = await _send(stack, http, "PUT", config, body, change)
    assert status == 403, answer
    status, answer = await _send(stack, http, "PUT", config, body, change)
    assert status == 401 and answer["error"]["code"] == "replayed_request", answer


async def test_v1_signatures_still_work_and_v2_decides_when_both_are_sent(
    stack: Stack, http, merchant
) -> None:
    path = "/api/v1/payments"
    secret = merchant.secret.encode()

    def create() -> tuple[bytes, dict[str, str], str, str]:
        body = orjson.dumps(
            {
                "amount": "1.00",
                "currency": "USD",
                "merchant_order_id": "ord_" + secrets.token_hex(6),
            }
        )
        headers = signed_headers(merchant.key_id, merchant.secret, "POST", path, body)
        ts = headers["X-Juhe-Timestamp"]
        return body, headers, request_signature(secret, ts, "POST", path, body, "v1"), ts

    body, headers, v1, _ = create()
    status, created = await _send(
        stack, http, "POST", path, body, {**headers, "X-Juhe-Signature": f"v1={v1}"}
    )
    assert status == 201, created
    body, headers, v1, _ = create()
    both = f"v1={v1},{headers['X-Juhe-Signature']}"
    status, created = await _send(
        stack, http, "POST", path, body, {**headers, "X-Juhe-Signature": both}
    )
    assert status == 201, created
    body, headers, v1, _ = create()
    status, refused = await _send(
        stack, http, "POST", path, body, {**headers, "X-Juhe-Signature": f"v1={v1},v2={'0' * 64}"}
    )
    assert status == 401 and refused["error"]["code"] == "invalid_signature", refused
