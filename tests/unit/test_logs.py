"""Structured logs: JSON lines, the request id, and secrets masked whoever logs them."""

from __future__ import annotations

import logging

import orjson

from infra.logs import JsonFormatter, request_id


def _line(**extra: object) -> dict:
    record = logging.makeLogRecord(
        {
            "name": "t",
            "levelno": 30,
            "levelname": "WARNING",
            "msg": "hello %s",
            "args": ("world",),
            **extra,
        }
    )
    return orjson.loads(JsonFormatter("test").format(record))


def test_line_is_json_with_request_id() -> None:
    token = request_id.set("req_abc12345")
    try:
        line = _line(payment_id="pay_1")
    finally:
        request_id.reset(token)
    assert line["msg"] == "hello world" and line["level"] == "warning"
    assert line["request_id"] == "req_abc12345" and line["payment_id"] == "pay_1"


def test_secret_fields_are_masked_at_any_depth() -> None:
    line = _line(
        secret="sk_live",
        webhook_secret="whsec",
        authorization="Bearer x",
        context={"password": "p", "card_number": "4242424242424242", "ok": 1},
    )
    assert line["secret"] == line["webhook_secret"] == line["authorization"] == "***"
    assert line["context"] == {"password": "***", "card_number": "***4242", "ok": 1}
    assert "4242424242424242" not in orjson.dumps(line).decode()


def test_card_numbers_in_messages_and_fields_are_masked() -> None:
    line = _line(note="paid with 5555 5555 5555 4444", args=("card 4000056655665556",))
    assert line["note"] == "paid with ***4444"
    assert line["msg"] == "hello card ***5556"
    assert "5555 5555" not in orjson.dumps(line).decode()
