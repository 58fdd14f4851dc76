"""The OpenAPI document is good enough for a client generator: openapi-python-client (from
PyPI) generates a typed client from the running node's document, and that client, with the
merchant's request signing added as an httpx hook, creates a payment, reads it until it
succeeds, refunds part of it and lists it."""

from __future__ import annotations

import asyncio
import importlib
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.client import signed_headers
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")
GENERATOR = Path(sys.executable).with_name("openapi-python-client")


def generate(spec: Path, out: Path) -> Any:
    command = [str(GENERATOR), "generate", "--meta", "none", "--path", str(spec)]
    run = subprocess.run(
        [*command, "--output-path", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "WARNING" not in run.stdout, run.stdout  # an operation it could not understand
    sys.path.insert(0, str(out.parent))
    try:
        return importlib.import_module(out.name)
    finally:
        sys.path.remove(str(out.parent))


async def test_a_generated_client_drives_a_payment(stack: Stack, merchant, tmp_path: Path) -> None:
    async with httpx.AsyncClient() as plain:
        spec = (await plain.get(stack.url + "/api/v1/openapi.json")).content
    (tmp_path / "openapi.json").write_bytes(spec)
    juhe = await asyncio.to_thread(generate, tmp_path / "openapi.json", tmp_path / "juhe_client")
    payments = importlib.import_module("juhe_client.api.payments")
    models = importlib.import_module("juhe_client.models")
    for name in ("create_payment", "get_payment", "create_refund", "list_payments"):
        importlib.import_module(f"juhe_client.api.payments.{name}")

    async def sign(request: httpx.Request) -> None:
        body = await request.aread()
        path = request.url.raw_path.decode()
        request.headers.update(
            signed_headers(merchant.key_id, merchant.secret, request.method, path, body)
        )

    client = juhe.Client(base_url=stack.url, httpx_args={"event_hooks": {"request": [sign]}})
    async with client:
        order = "gen-" + secrets.token_hex(4)
        created = await payments.create_payment.asyncio_detailed(
            client=client,
            body=models.CreatePayment(amount="7.00", currency="USD", merchant_order_id=order),
            idempotency_key=order,
        )
        assert created.status_code == 201, created.content
        payment = created.parsed
        assert isinstance(payment, models.Payment) and payment.status == "pending"

        for _ in range(200):
            read = await payments.get_payment.asyncio(payment.id, client=client)
            assert isinstance(read, models.Payment)
            if read.status == "succeeded":
                break
            await asyncio.sleep(0.05)
        assert read.status == "succeeded" and read.amount == "7.00"

        refund = await payments.create_refund.asyncio_detailed(
            client=client,
            body=models.CreateRefund(payment_id=payment.id, amount="2.00"),
            idempotency_key=order + "-r",
        )
        assert refund.status_code == 201 and isinstance(refund.parsed, models.Refund)
        listed = await payments.list_payments.asyncio(client=client, merchant_order_id=order)
        assert isinstance(listed, models.PaymentList)
        assert [p.id for p in listed.data] == [payment.id]
        refused = await payments.get_payment.asyncio_detailed("pay_nothing", client=client)
        assert refused.status_code == 404 and isinstance(refused.parsed, models.Error)
