"""Structured JSON logs with a request id that follows a payment across processes.

The request id lives in a context variable: the gateway sets it per request, workers set it from
the message they are handling. Secrets, card and bank numbers are masked
(domain.redaction) before a line is written, whoever logged them.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from typing import Any

import orjson

from domain.redaction import mask_text, redact

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def __init__(self, process_name: str) -> None:
        super().__init__()
        self.process_name = process_name

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(time.time(), 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "process": self.process_name,
            "msg": mask_text(record.getMessage()),
        }
        if rid := request_id.get():
            line["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                line[key] = redact(key, value)
        if record.exc_info:
            line["exc"] = mask_text(self.formatException(record.exc_info))
        return orjson.dumps(line, default=str).decode()


def setup_logging(process_name: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(process_name))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiormq").setLevel(logging.WARNING)
    logging.getLogger("aio_pika").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
