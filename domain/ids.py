"""Object ids: a type prefix and 26 Crockford base32 characters, time-ordered like a ULID, so ids
sort by creation and index well, and carry 80 random bits so they cannot be guessed."""

from __future__ import annotations

import base64
import secrets
import time

# RFC 4648's base32 alphabet, mapped onto Crockford's (lower case, no i, l, o, u).
_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789abcdefghjkmnpqrstvwxyz")


def new_id(prefix: str, now_ms: int | None = None) -> str:
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    value = (ms << 80) | secrets.randbits(80)
    # 130 bits in 20 bytes: the first 6 of the 32 characters encode the zero padding.
    encoded = base64.b32encode(value.to_bytes(20, "big")).decode()[6:]
    return f"{prefix}_{encoded.translate(_CROCKFORD)}"
