"""What must never be written down in full: secrets by field name, card and bank numbers by shape.

Applied to every log line and every audit record, whoever produced them.
"""

from __future__ import annotations

import re
from typing import Any

SECRET_WORDS = (
    "secret",
    "password",
    "signature",
    "authorization",
    "token",
    "totp",
    "recovery",
    "private",
    "api_key",
    "credential",
)
_NUMBER_WORDS = ("card", "pan", "account_number", "iban", "bank")
MASK = "***"
# 12–19 digits, optionally grouped by spaces or dashes: card numbers and most bank accounts.
_LONG_NUMBER = re.compile(r"(?<![\w])(?:\d[ -]?){11,18}\d(?![\w])")


def _keep_last4(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return MASK + digits[-4:]


def mask_text(text: str) -> str:
    return _LONG_NUMBER.sub(_keep_last4, text)


def redact(key: str, value: Any) -> Any:
    """The value as it may be written under `key`. Secrets are text; a number or flag under a
    secret-sounding name (`password_min_length`) is policy, not a secret."""
    lowered = key.lower()
    if any(word in lowered for word in SECRET_WORDS) and isinstance(value, str | bytes):
        return MASK
    if isinstance(value, dict):
        return {k: redact(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(key, v) for v in value]
    if isinstance(value, str):
        if any(word in lowered for word in _NUMBER_WORDS):
            digits = re.sub(r"\D", "", value)
            return MASK + digits[-4:] if len(digits) >= 8 else MASK
        return mask_text(value)
    return value
