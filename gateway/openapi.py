"""The OpenAPI 3.1 document, with schemas generated from the structs the handlers use."""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec
import orjson

from gateway.schemas import CreatePayment, CreateRefund, Error, Payment, PaymentList, Refund

_REF = "#/components/schemas/{name}"
_SIGNED = [{"juheKey": [], "juheTimestamp": [], "juheSignature": []}]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def _json(name: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": _ref(name)}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): {"description": "Error", **_json("Error")} for c in codes}


_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "maxLength": 255},
}


@cache
def document(server_url: str) -> bytes:
    _, components = msgspec.json.schema_components(
        [CreatePayment, CreateRefund, Payment, Refund, PaymentList, Error], ref_template=_REF
    )
    paths = {
        "/api/v1/payments": {
            "post": {
                "summary": "Create a payment",
                "security": _SIGNED,
                "parameters": [
                    _IDEMPOTENCY,
                    {"name": "wait_ms", "in": "query", "schema": {"type": "integer"}},
                ],
                "requestBody": {"required": True, **_json("CreatePayment")},
                "responses": {
                    "201": {"description": "Accepted", **_json("Payment")},
                    **_errors(400, 401, 403, 409, 503),
                },
            },
            "get": {
                "summary": "List payments, or find one by merchant_order_id",
                "security": _SIGNED,
                "parameters": [
                    {"name": n, "in": "query", "schema": {"type": t}}
                    for n, t in (
                        ("merchant_order_id", "string"),
                        ("limit", "integer"),
                        ("starting_after", "string"),
                    )
                ],
                "responses": {
                    "200": {"description": "A page", **_json("PaymentList")},
                    **_errors(400, 401),
                },
            },
        },
        "/api/v1/payments/{id}": {
            "get": {
                "summary": "Retrieve a payment",
                "security": _SIGNED,
                "parameters": [_ID],
                "responses": {
                    "200": {"description": "The payment", **_json("Payment")},
                    **_errors(401, 404),
                },
            }
        },
        "/api/v1/payments/{id}/cancel": {
            "post": {
                "summary": "Cancel an unpaid payment",
                "security": _SIGNED,
                "parameters": [_ID, _IDEMPOTENCY],
                "responses": {
                    "200": {"description": "Canceled", **_json("Payment")},
                    **_errors(401, 404, 409),
                },
            }
        },
        "/api/v1/refunds": {
            "post": {
                "summary": "Refund a payment, fully or partly",
                "security": _SIGNED,
                "parameters": [_IDEMPOTENCY],
                "requestBody": {"required": True, **_json("CreateRefund")},
                "responses": {
                    "201": {"description": "Accepted", **_json("Refund")},
                    **_errors(400, 401, 404, 409),
                },
            }
        },
        "/api/v1/refunds/{id}": {
            "get": {
                "summary": "Retrieve a refund",
                "security": _SIGNED,
                "parameters": [_ID],
                "responses": {
                    "200": {"description": "The refund", **_json("Refund")},
                    **_errors(401, 404),
                },
            }
        },
        "/api/v1/events/{id}/resend": {
            "post": {
                "summary": "Send a webhook event again",
                "security": _SIGNED,
                "parameters": [_ID],
                "responses": {"202": {"description": "Queued"}, **_errors(401, 404)},
            }
        },
        "/api/v1/payments/callback/{channel}": {
            "post": {
                "summary": "Channel callback (signed by the channel, verified by its adapter)",
                "parameters": [
                    {
                        "name": "channel",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {"200": {"description": "Taken"}, **_errors(400, 401, 404)},
            }
        },
    }
    header = {"type": "apiKey", "in": "header"}
    return orjson.dumps(
        {
            "openapi": "3.1.0",
            "info": {"title": "Juhe payment gateway", "version": "1.0.0"},
            "servers": [{"url": server_url}],
            "paths": paths,
            "components": {
                "schemas": components,
                "securitySchemes": {
                    "juheKey": {**header, "name": "X-Juhe-Key"},
                    "juheTimestamp": {**header, "name": "X-Juhe-Timestamp"},
                    "juheSignature": {
                        **header,
                        "name": "X-Juhe-Signature",
                        "description": "v1=hex(HMAC-SHA256(secret, "
                        "'{timestamp}.{METHOD}.{path_and_query}.{raw_body}'))",
                    },
                },
            },
        }
    )
