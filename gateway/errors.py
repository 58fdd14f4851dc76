"""The one error shape (DESIGN.md): `{"error": {"type", "code", "message", "param"}}`."""

from __future__ import annotations

import re

import msgspec
import orjson
from aiohttp import web

_PATH = re.compile(r"at `\$\.?([^`]*)`")
_MISSING = re.compile(r"missing required field `([^`]*)`")


class ApiError(Exception):
    def __init__(
        self, status: int, type_: str, code: str, message: str, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.code = code
        self.message = message
        self.param = param

    def response(self) -> web.Response:
        return error_response(self.status, self.type, self.code, self.message, self.param)


def error_response(
    status: int, type_: str, code: str, message: str, param: str | None = None
) -> web.Response:
    body = {"error": {"type": type_, "code": code, "message": message, "param": param}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def invalid(code: str, message: str, param: str | None = None, status: int = 400) -> ApiError:
    return ApiError(status, "invalid_request_error", code, message, param)


def email_taken() -> ApiError:
    return invalid("email_taken", "a user with this e-mail address exists", "email", 409)


def from_validation(exc: msgspec.ValidationError | msgspec.DecodeError) -> ApiError:
    """Turn msgspec's message (`Expected `str`, got `int` - at `$.amount``) into our shape, with
    the offending field as `param`."""
    text = str(exc)
    match = _PATH.search(text)
    # Dict keys show as `[...]` and list items as `[0]`; name the field that holds them.
    param = re.sub(r"\[[^\]]*\]", "", match.group(1)) if match else None
    if missing := _MISSING.search(text):
        param = f"{param}.{missing.group(1)}" if param else missing.group(1)
    message = text.split(" - at `", 1)[0]
    if isinstance(exc, msgspec.ValidationError):
        return invalid("invalid_field" if param else "invalid_body", message, param)
    return invalid("invalid_json", "the request body is not valid JSON")
