"""Text PostgreSQL cannot store, refused at the edge before any handler sees the request.

PostgreSQL's text and jsonb refuse NUL (`\\u0000`), and UTF-8 has no unpaired surrogates. Let
either through and the relay or a pool meets it after the merchant was told `201`; so every
body field, path segment, query value and header is checked here, once, with the documented
400 naming where the character is. The check costs a byte search on the common path; only a
body that contains an escaped NUL is parsed to find the field.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from gateway.errors import ApiError, invalid

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def storable(text: str) -> bool:
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _refused(where: str) -> ApiError:
    return invalid(
        "invalid_characters",
        f"{where} contains a character that cannot be stored (NUL or an unpaired surrogate)",
        where,
    )


def _first_unstorable(value: Any, path: str) -> str | None:
    """The dotted path of the first string (or key) in a decoded JSON value that cannot be
    stored."""
    if isinstance(value, str):
        return None if storable(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if not storable(key):
                return path or "body"
            if found := _first_unstorable(item, where):
                return found
    elif isinstance(value, list):
        for item in value:
            if found := _first_unstorable(item, path):
                return found
    return None


def _check_body(body: bytes, content_type: str) -> None:
    if b"\\u0000" in body and "json" in content_type:
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError:
            return  # the handler answers invalid_json
        if found := _first_unstorable(decoded, ""):
            raise _refused(found or "body")
    if b"%00" in body and content_type == "application/x-www-form-urlencoded":
        for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
            if not storable(key) or not storable(value):
                raise _refused(key if storable(key) else "body")
    if b"\x00" in body:
        raise _refused("body")


async def check_request(request: web.Request) -> None:
    """Raise the documented 400 if any part of the request holds text that cannot be stored."""
    if not storable(request.path):
        raise _refused("path")
    for key, value in request.query.items():
        if not storable(key) or not storable(value):
            raise _refused(key if storable(key) else "query")
    for name, value in request.headers.items():
        if not storable(value):
            raise _refused(name)
    if request.method in _BODY_METHODS and request.can_read_body:
        _check_body(await request.read(), request.content_type)
