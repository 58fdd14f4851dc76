"""Encryption at rest for what must be stored but never shown (bank accounts, channel
credentials, and the secrets in `infra/sealing.py`): AES-256-GCM, a fresh 96-bit nonce per
value, the key id stored with the value so keys can rotate (new values use the active key;
older keys still decrypt)."""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = "v1"
SEALED_PREFIX = f"{_VERSION}:"  # how every sealed value begins: `v1:<key id>:<base64>`


class SecretBoxError(ValueError):
    pass


class SecretBox:
    def __init__(self, keys: dict[str, str], active: str) -> None:
        try:
            self._keys = {kid: AESGCM(base64.b64decode(k)) for kid, k in keys.items()}
        except ValueError as exc:
            raise SecretBoxError("secret keys must be base64 of 32 bytes") from exc
        if active not in self._keys:
            raise SecretBoxError(f"the active key {active!r} is not among the keys")
        self._active = active

    def seal(self, plaintext: str, context: str) -> str:
        """`context` (e.g. the merchant id) is bound to the value: a sealed value copied to
        another record does not open there."""
        nonce = os.urandom(12)
        sealed = self._keys[self._active].encrypt(nonce, plaintext.encode(), context.encode())
        return ":".join((_VERSION, self._active, base64.b64encode(nonce + sealed).decode()))

    def open(self, value: str, context: str) -> str:
        try:
            version, kid, blob = value.split(":", 2)
            raw = base64.b64decode(blob)
            key = self._keys[kid]
        except (ValueError, KeyError) as exc:
            raise SecretBoxError("not a sealed value, or sealed with an unknown key") from exc
        if version != _VERSION:
            raise SecretBoxError(f"unknown sealed format {version!r}")
        try:
            return key.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except Exception as exc:  # cryptography raises InvalidTag
            raise SecretBoxError("the value does not open: tampered or wrong context") from exc

    @property
    def active_prefix(self) -> str:
        """How every value sealed with the active key begins: what a reseal leaves alone."""
        return f"{_VERSION}:{self._active}:"

    def open_or_plain(self, value: str, context: str) -> str:
        """Open a value of a column that older versions stored in plaintext: one not in the
        sealed format is such a legacy value and is taken as it is, so a database from before
        keeps working until `juhe migrate` seals it. A value in the sealed format that does
        not open is an error, never taken for plaintext."""
        return self.open(value, context) if value.startswith(SEALED_PREFIX) else value
