"""Object ids: a type prefix and 26 Crockford base32 characters, time-ordered like a ULID, so ids
sort by creation and index well, and carry 80 random bits so they cannot be guessed."""

from __future__ import annotations

import os
import time

# Crockford's base32 alphabet in lower case (no i, l, o, u); ids are encoded ten bits, two
# characters, at a time.
_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)
_SHIFTS = tuple(range(120, -1, -10))
_BLOCK = 4096


class _Entropy:
    """Bytes from the OS's CSPRNG, read a block at a time: one getrandom call per id was a
    measurable share of the create path. A forked child starts empty, so no two processes can
    hand out the same bytes."""

    def __init__(self) -> None:
        self._buffer = b""
        self._at = 0

    def take(self, n: int) -> bytes:
        if self._at + n > len(self._buffer):
            self._buffer, self._at = os.urandom(_BLOCK), 0
        chunk = self._buffer[self._at : self._at + n]
        self._at += n
        return chunk

    def forget(self) -> None:
        self._buffer, self._at = b"", 0


_entropy = _Entropy()
os.register_at_fork(after_in_child=_entropy.forget)


def random_hex(nbytes: int) -> str:
    return _entropy.take(nbytes).hex()


def new_id(prefix: str, now_ms: int | None = None) -> str:
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(_entropy.take(10), "big")
    # 48 bits of time and 80 random bits fill 128 of the 130 bits 26 characters hold.
    return prefix + "_" + "".join([_PAIRS[(value >> shift) & 0x3FF] for shift in _SHIFTS])
