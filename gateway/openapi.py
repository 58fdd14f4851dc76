"""The OpenAPI 3.1 document, with schemas generated from the structs the handlers use."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import msgspec
import orjson

from domain.fees import MAX_PRICE_BPS, MAX_PRICE_FIXED
from gateway import agent_schemas as ags
from gateway import channel_schemas as chs
from gateway import identity_schemas as ids
from gateway import merchant_schemas as mss
from gateway.schemas import CreatePayment, CreateRefund, Error, Payment, PaymentList, Refund

_REF = "#/components/schemas/{name}"
# Merchant endpoints take a signed request (API key) or a portal user's bearer token.
_SIGNED = [{"juheKey": [], "juheTimestamp": [], "juheSignature": []}, {"bearer": []}]
_BEARER = [{"bearer": []}]
# Said on every operation that changes money terms.
_PRICING = (
    f"the platform, or an agent above with `set_rates` (else 403 `grant_missing`); "
    f"bps at most {MAX_PRICE_BPS} (20 %), fixed parts at most {MAX_PRICE_FIXED} minor units"
)
_IDENTITY_SCHEMAS = [
    ids.Login,
    ids.Refresh,
    ids.Logout,
    ids.MfaCode,
    ids.Session,
    ids.MfaEnrolment,
    ids.Me,
    ids.UserView,
    ids.CreateUser,
    ids.AssignRoles,
    ids.PutRole,
    ids.RoleView,
    ids.SettingsView,
    ids.PutSettings,
    ids.CreateApiKey,
    ids.ApiKeyCreated,
    ags.RegisterAgent,
    ags.UpdateAgent,
    ags.AgentView,
    ags.SubAgent,
    ags.SubMerchant,
    ags.PutPolicy,
    ags.PolicyView,
    ags.MerchantPricing,
    mss.RegisterMerchant,
    mss.UpdateMerchant,
    mss.PaymentConfig,
    mss.RotateKey,
    chs.CreateChannel,
    chs.UpdateChannel,
    chs.ChannelView,
    chs.SwitchOver,
    chs.SwitchOverView,
]
# (method, path, summary, request body, answer status, answer schema, bearer-only)
_IDENTITY_OPS = [
    (
        "post",
        "/api/v1/auth/login",
        "Sign in (with `totp` when MFA applies)",
        "Login",
        200,
        "Session",
        False,
    ),
    ("post", "/api/v1/auth/refresh", "Rotate a refresh token", "Refresh", 200, "Session", False),
    ("post", "/api/v1/auth/logout", "End the session", "Logout", 204, None, True),
    ("post", "/api/v1/auth/mfa/enroll", "Start TOTP enrolment", None, 200, "MfaEnrolment", True),
    (
        "post",
        "/api/v1/auth/mfa/verify",
        "Confirm enrolment; a new session",
        "MfaCode",
        200,
        "Session",
        True,
    ),
    ("get", "/api/v1/auth/me", "The signed-in user", None, 200, "Me", True),
    ("get", "/api/v1/admin/users", "List users (filters: realm, org_id)", None, 200, None, True),
    ("post", "/api/v1/admin/users", "Create a user", "CreateUser", 201, "UserView", True),
    ("post", "/api/v1/admin/users/{id}/disable", "Disable a user", None, 200, "UserView", True),
    ("post", "/api/v1/admin/users/{id}/enable", "Enable a user", None, 200, "UserView", True),
    ("put", "/api/v1/admin/users/{id}/roles", "Assign roles", "AssignRoles", 200, "UserView", True),
    ("get", "/api/v1/admin/roles", "List roles", None, 200, None, True),
    (
        "put",
        "/api/v1/admin/roles/{id}",
        "Create or replace a custom role",
        "PutRole",
        200,
        "RoleView",
        True,
    ),
    ("get", "/api/v1/admin/settings", "Platform settings", None, 200, "SettingsView", True),
    (
        "put",
        "/api/v1/admin/settings",
        "Change platform settings",
        "PutSettings",
        200,
        "SettingsView",
        True,
    ),
    (
        "get",
        "/api/v1/admin/audit",
        "Query the audit log (action, actor, target, since, until)",
        None,
        200,
        None,
        True,
    ),
    ("get", "/api/v1/admin/audit/verify", "Verify the audit hash chain", None, 200, None, True),
    (
        "post",
        "/api/v1/agents/register",
        "Apply as an agent",
        "RegisterAgent",
        201,
        "AgentView",
        False,
    ),
    ("get", "/api/v1/agents/{id}", "Retrieve an agent", None, 200, "AgentView", True),
    (
        "put",
        "/api/v1/agents/{id}",
        "Update, review, suspend or re-grant an agent",
        "UpdateAgent",
        200,
        "AgentView",
        True,
    ),
    (
        "post",
        "/api/v1/agents/{id}/subordinates",
        "Open or attach a sub-agent (`type: agent`) or a merchant (`type: merchant`); "
        f"a merchant's fees, when given: {_PRICING}",
        None,
        201,
        None,
        True,
    ),
    (
        "put",
        "/api/v1/agents/{id}/policies/{currency}",
        f"Set an agent's commission policy: {_PRICING}",
        "PutPolicy",
        200,
        "PolicyView",
        True,
    ),
    (
        "put",
        "/api/v1/agents/{id}/merchants/{merchantId}/pricing",
        f"Price a merchant under the agent: {_PRICING}",
        "MerchantPricing",
        200,
        None,
        True,
    ),
    (
        "get",
        "/api/v1/agents/{id}/commissions",
        "Commission records and totals (filters: currency, since, until; format=csv)",
        None,
        200,
        None,
        True,
    ),
    ("get", "/api/v1/admin/channels", "List channels and switch-overs", None, 200, None, True),
    (
        "post",
        "/api/v1/admin/channels",
        "Create a channel (credentials are stored encrypted and never returned)",
        "CreateChannel",
        201,
        "ChannelView",
        True,
    ),
    (
        "get",
        "/api/v1/admin/channels/{code}",
        "A channel, with today's routed volume and whether routing may use it",
        None,
        200,
        "ChannelView",
        True,
    ),
    (
        "patch",
        "/api/v1/admin/channels/{code}",
        "Change a channel (only the fields given)",
        "UpdateChannel",
        200,
        "ChannelView",
        True,
    ),
    ("post", "/api/v1/admin/channels/{code}/enable", "Enable", None, 200, "ChannelView", True),
    (
        "post",
        "/api/v1/admin/channels/{code}/disable",
        "Disable: routing stops at once; work already on the channel finishes",
        None,
        200,
        "ChannelView",
        True,
    ),
    (
        "post",
        "/api/v1/admin/channels/{code}/switch-over",
        "Move a merchant's (or everyone's) traffic for this channel to another",
        "SwitchOver",
        201,
        "SwitchOverView",
        True,
    ),
    (
        "delete",
        "/api/v1/admin/channels/{code}/switch-over",
        "End a switch-over (`merchant_id` query, default `*`)",
        None,
        200,
        "SwitchOverView",
        True,
    ),
    (
        "post",
        "/api/v1/admin/merchants/{id}/keys",
        "Create a merchant API key",
        "CreateApiKey",
        201,
        "ApiKeyCreated",
        True,
    ),
]


_MERCHANT_OPS = [
    ("post", "/api/v1/fx/quotes", "Quote and lock a conversion", None, 201, None, False),
    (
        "get",
        "/api/v1/fx/quotes/{id}",
        "Retrieve a quote while it is locked",
        None,
        200,
        None,
        False,
    ),
    (
        "get",
        "/api/v1/payments/{id}/attempts",
        "The channels a payment was tried at",
        None,
        200,
        None,
        False,
    ),
    (
        "post",
        "/api/v1/merchants/register",
        "Apply as a merchant, with KYC",
        "RegisterMerchant",
        201,
        None,
        False,
    ),
    ("get", "/api/v1/merchants/{id}", "Retrieve a merchant", None, 200, None, True),
    (
        "put",
        "/api/v1/merchants/{id}",
        "Update or review a merchant",
        "UpdateMerchant",
        200,
        None,
        True,
    ),
    (
        "put",
        "/api/v1/merchants/{id}/payment-config",
        f"Payment configuration; fees, currencies, methods, channels, routing: {_PRICING}",
        "PaymentConfig",
        200,
        None,
        True,
    ),
    (
        "get",
        "/api/v1/merchants/{id}/transactions",
        "Payments (status, currency, since, until; format=csv)",
        None,
        200,
        None,
        True,
    ),
    ("get", "/api/v1/merchants/{id}/keys", "API keys", None, 200, None, True),
    (
        "post",
        "/api/v1/merchants/{id}/keys/{keyId}/rotate",
        "Rotate a key with an overlap",
        "RotateKey",
        201,
        None,
        True,
    ),
    ("post", "/api/v1/merchants/{id}/keys/{keyId}/revoke", "Revoke a key", None, 200, None, True),
]


def _identity_paths() -> dict[str, dict[str, Any]]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path, summary, request, status, answer, bearer in _IDENTITY_OPS + _MERCHANT_OPS:
        op: dict[str, Any] = {
            "summary": summary,
            "responses": {
                str(status): {"description": "OK", **(_json(answer) if answer else {})},
                **_errors(400, 401, 403, 404, 409, 429),
            },
        }
        if bearer:
            op["security"] = _BEARER
        if names := re.findall(r"\{(\w+)\}", path):
            op["parameters"] = [
                {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                for n in names
            ]
        if request:
            op["requestBody"] = {"required": True, **_json(request)}
        paths.setdefault(path, {})[method] = op
    return paths


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
        [CreatePayment, CreateRefund, Payment, Refund, PaymentList, Error, *_IDENTITY_SCHEMAS],
        ref_template=_REF,
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
        **_identity_paths(),
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
                    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
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
