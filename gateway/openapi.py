"""The OpenAPI 3.1 document, rendered from the route table (gateway.routes): every operation with
its operationId, security, parameters, request body, answer and error statuses; schemas
generated from the structs the handlers decode and encode; the webhooks Juhe sends."""

from __future__ import annotations

import re
import types
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import orjson

from gateway.schemas import Error, Payment, Refund
from gateway.settlement_schemas import StatementView
from gateway.withdrawal_schemas import Withdrawal

if TYPE_CHECKING:  # the table is handed in: it names the handlers, one of which serves this
    from gateway.routes import Route, Schema

_REF = "#/components/schemas/{name}"
_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    # a merchant's signed request (API key) or a portal user's bearer token
    "signed": [{"juheKey": [], "juheTimestamp": [], "juheSignature": []}, {"bearer": []}],
    "bearer": [{"bearer": []}],
    "none": [],
    "channel": [],
}
_DESCRIPTIONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No content",
    400: "Invalid request: the documented error shape, naming the parameter",
    401: "Not authenticated (missing_credentials, invalid_key, invalid_signature, "
    "stale_timestamp, replayed_request, …)",
    403: "Not permitted",
    404: "No such object (or not yours)",
    409: "Conflict with the object's state, or an Idempotency-Key reused with another body",
    429: "Too many requests (see Retry-After)",
    502: "The channel refused what Juhe asked of it, or answered what Juhe cannot read",
    503: "A service Juhe needs is unavailable; retry (see Retry-After)",
}
_IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "the first answer is replayed for the same key and body (≥ 24 h)",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
_SIGNING = (
    "Signed requests carry `X-Juhe-Key` (key id), `X-Juhe-Timestamp` (unix seconds, ±300 s) and "
    "`X-Juhe-Signature: v2=<hex>`: the hex HMAC-SHA256, keyed with the key's secret, of "
    "`v2\\n{timestamp}\\n{METHOD}\\n{path_and_query}\\n{hex sha256(raw_body)}` (newlines "
    "between the parts, the body by its hash, so no part can move into another). The older "
    "`v1=<hex>` over `{timestamp}.{METHOD}.{path_and_query}.{raw_body}` still verifies; a "
    "header may carry both (`v1=…,v2=…`), and then v2 decides; other schemes are ignored. A "
    "request that changes something (POST, PUT, PATCH, DELETE) is taken once while its "
    "timestamp is valid: the same signed request again is `401 replayed_request`, unless it "
    "carries an Idempotency-Key on record for that very request, which then answers it (the "
    "first answer, or `409 request_in_progress` while the first still runs). Two identical "
    "requests signed in the same second are one request: sign a later timestamp to repeat one."
)
WEBHOOK_TYPES = (
    "payment.succeeded",
    "payment.failed",
    "payment.expired",
    "payment.canceled",
    "payment.rejected",
    "payment.reversed",
    "payment.review_opened",
    "payment.review_closed",
    "refund.succeeded",
    "refund.failed",
    "withdrawal.succeeded",
    "withdrawal.failed",
    "settlement.closed",
)


def _resolve(schema: Any) -> Any:
    """Short references (`{"$ref": "Name"}`) in hand-written schemas become full ones."""
    if isinstance(schema, dict):
        return {
            k: (_REF.format(name=v) if k == "$ref" and "/" not in v else _resolve(v))
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_resolve(v) for v in schema]
    return schema


def _schema(schema: Schema) -> dict[str, Any]:
    if isinstance(schema, type):
        return {"$ref": _REF.format(name=schema.__name__)}
    if isinstance(schema, types.UnionType):  # tagged structs: one of them, by their tag
        return {"oneOf": [_schema(t) for t in schema.__args__]}
    return _resolve(schema)


def _structs(routes: Sequence[Route]) -> list[type]:
    found: dict[str, type] = {t.__name__: t for t in (Error, Payment, Refund)}
    for route in routes:
        for schema in (route.answer, route.body):
            for struct in schema.__args__ if isinstance(schema, types.UnionType) else (schema,):
                if isinstance(struct, type):
                    found[struct.__name__] = struct
    return list(found.values())


def _operation(route: Route) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string", "maxLength": 64}}
        for n in re.findall(r"\{(\w+)\}", route.path)
    ]
    params += [
        {
            "name": p.name,
            "in": "query",
            "required": False,
            "schema": dict(p.schema),
            **({"description": p.description} if p.description else {}),
        }
        for p in route.query
    ]
    if route.idempotent:
        params.append(_IDEMPOTENCY)
    answer: dict[str, Any] = {"description": _DESCRIPTIONS.get(route.status, "OK")}
    if route.answer is not None:
        answer["content"] = {route.content_type: {"schema": _schema(route.answer)}}
    elif route.status != 204:
        answer["content"] = {route.content_type: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {str(route.status): answer}
    errors = set(route.errors)
    if route.query or params:
        errors.add(400)
    for code in sorted(errors):
        responses[str(code)] = {
            "description": _DESCRIPTIONS[code],
            "content": {"application/json": {"schema": _schema(Error)}},
        }
    op: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
        "security": _SECURITY[route.auth],
        "responses": responses,
    }
    if route.description:
        op["description"] = route.description
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _schema(route.body)}},
        }
    return op


_WEBHOOK_DATA: dict[str, type] = {
    "payment": Payment,
    "refund": Refund,
    "withdrawal": Withdrawal,
    "settlement": StatementView,
}


def _webhooks() -> dict[str, Any]:
    """What Juhe POSTs to a merchant's notify_url: one signed event per change."""
    hooks = {}
    for event_type in WEBHOOK_TYPES:
        data = _WEBHOOK_DATA[event_type.split(".", 1)[0]]
        hooks[event_type] = {
            "post": {
                "summary": f"`{event_type}`, at least once, the same event id on every attempt",
                "parameters": [
                    {
                        "name": "Juhe-Signature",
                        "in": "header",
                        "required": True,
                        "description": "t=<unix>,v1=<hex HMAC-SHA256(webhook_secret, "
                        "'{t}.{raw_body}')>",
                        "schema": {"type": "string"},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "id": {"type": "string"},
                                    "object": {"const": "event"},
                                    "type": {"const": event_type},
                                    "created": {"type": "integer"},
                                    "data": _schema(data),
                                },
                                "required": ["id", "object", "type", "created", "data"],
                            }
                        }
                    },
                },
                "responses": {"200": {"description": "Any 2xx counts as delivered"}},
            }
        }
    return hooks


_documents: dict[str, bytes] = {}


def document(server_url: str, routes: Sequence[Route]) -> bytes:
    if server_url in _documents:
        return _documents[server_url]
    _, components = msgspec.json.schema_components(_structs(routes), ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    header = {"type": "apiKey", "in": "header"}
    doc = orjson.dumps(
        {
            "openapi": "3.1.0",
            "info": {
                "title": "Juhe payment gateway",
                "version": "1.0.0",
                "description": _SIGNING,
            },
            "servers": [{"url": server_url}],
            "paths": paths,
            "webhooks": _webhooks(),
            "components": {
                "schemas": components,
                "securitySchemes": {
                    "bearer": {
                        "type": "http",
                        "scheme": "bearer",
                        "bearerFormat": "JWT",
                        "description": "A portal user's access token. Until the user has "
                        "enrolled MFA (required in every realm by default), it reaches only "
                        "/auth/mfa/enroll, /auth/mfa/verify, /auth/me and /auth/logout; anything "
                        "else is 403 mfa_required.",
                    },
                    "juheKey": {**header, "name": "X-Juhe-Key"},
                    "juheTimestamp": {**header, "name": "X-Juhe-Timestamp"},
                    "juheSignature": {
                        **header,
                        "name": "X-Juhe-Signature",
                        "description": _SIGNING,
                    },
                },
            },
        }
    )
    _documents[server_url] = doc
    return doc
