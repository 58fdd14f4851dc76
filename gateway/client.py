"""A minimal signed client for the merchant API, used by tests, benchmarks and locust, and a
reference for merchants writing their own."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import orjson

from domain.signing import request_signature


def signed_headers(
    key_id: str, secret: str, method: str, path_qs: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    ts = str(int(time.time() if now is None else now))
    return {
        "X-Juhe-Key": key_id,
        "X-Juhe-Timestamp": ts,
        "X-Juhe-Signature": "v2=" + request_signature(secret.encode(), ts, method, path_qs, body),
        "Content-Type": "application/json",
    }


class MerchantClient:
    def __init__(self, base_url: str, key_id: str, secret: str, session: aiohttp.ClientSession):
        self.base_url = base_url.rstrip("/")
        self.key_id = key_id
        self.secret = secret
        self.session = session

    async def request(
        self,
        method: str,
        path_qs: str,
        payload: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        body = raw if raw is not None else (b"" if payload is None else orjson.dumps(payload))
        sent = {
            **signed_headers(self.key_id, self.secret, method, path_qs, body),
            **(headers or {}),
        }
        async with self.session.request(
            method, self.base_url + path_qs, data=body, headers=sent
        ) as response:
            data = await response.read()
            try:
                return response.status, orjson.loads(data)
            except orjson.JSONDecodeError:
                return response.status, data.decode(errors="replace")

    async def create_payment(self, idempotency_key: str | None = None, **fields: Any):
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return await self.request("POST", "/api/v1/payments", fields, headers=headers)

    async def get_payment(self, payment_id: str) -> tuple[int, Any]:
        return await self.request("GET", f"/api/v1/payments/{payment_id}")
