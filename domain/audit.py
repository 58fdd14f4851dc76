"""The audit log's hash chain: each record's hash covers its content and the hash before it,
so editing, removing or reordering any record breaks every link after it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import orjson

from domain.redaction import redact

GENESIS = "0" * 64
_FIELDS = (
    "seq",
    "at_us",
    "actor",
    "actor_realm",
    "action",
    "target",
    "before",
    "after",
    "ip",
    "request_id",
)


def prepare(detail: dict[str, Any] | None) -> Any:
    """A before/after document as it is stored: secrets masked, JSON-normal (what is hashed
    is what PostgreSQL gives back)."""
    if detail is None:
        return None
    return orjson.loads(orjson.dumps(redact("detail", detail)))


def link(prev_hash: str, record: dict[str, Any]) -> str:
    body = orjson.dumps({k: record.get(k) for k in _FIELDS}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev_hash.encode() + b"\n" + body).hexdigest()


def first_broken(records: Iterable[dict[str, Any]], prev_hash: str = GENESIS) -> int | None:
    """The seq of the first record whose link does not hold, or None if the chain is whole.
    Records come in seq order with their `prev_hash` and `hash`."""
    expected_seq = None
    for record in records:
        if expected_seq is not None and record["seq"] != expected_seq:
            return expected_seq  # a record is missing
        if record["prev_hash"] != prev_hash or link(prev_hash, record) != record["hash"]:
            return record["seq"]
        prev_hash = record["hash"]
        expected_seq = record["seq"] + 1
    return None
