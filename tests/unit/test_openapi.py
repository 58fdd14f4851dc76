"""The OpenAPI document made from the route table: valid OpenAPI 3.1, and complete in what a
client generator and a reader need from every operation."""

from __future__ import annotations

import orjson
from openapi_spec_validator import validate

from gateway.openapi import WEBHOOK_TYPES, document
from gateway.routes import ROUTES


def spec() -> dict:
    return orjson.loads(document("http://127.0.0.1:8080", ROUTES))


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = spec()
    validate(doc)
    assert doc["openapi"] == "3.1.0"


def test_every_operation_is_complete() -> None:
    doc = spec()
    ids = []
    for route in ROUTES:
        op = doc["paths"][route.path][route.method.lower()]
        ids.append(op["operationId"])
        assert "security" in op, route.path  # explicit, even when it is none
        ok = op["responses"][str(route.status)]
        if route.status != 204:
            assert ok["content"], route.path
        if route.body is not None:
            assert op["requestBody"]["content"]["application/json"]["schema"], route.path
        for name in {p.name for p in route.query}:
            assert any(p["name"] == name for p in op["parameters"]), (route.path, name)
        if route.auth in ("signed", "bearer"):
            assert {"401", "403"} <= set(op["responses"]), route.path
    assert len(ids) == len(set(ids)), "operationIds must be unique"


def test_webhooks_are_documented() -> None:
    assert set(spec()["webhooks"]) == set(WEBHOOK_TYPES)
