"""Encryption at rest (infra/secretbox.py): AES-256-GCM bound to its record, keys rotatable."""

from __future__ import annotations

import base64
import os

import pytest

from infra.secretbox import SecretBox, SecretBoxError


def key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


OLD, NEW = key(), key()


def test_round_trip_and_no_plaintext_in_the_sealed_value() -> None:
    box = SecretBox({"k1": OLD}, "k1")
    sealed = box.seal("DE89 3704 0044 0532 0130 00", "mch_1")
    assert "3704" not in sealed and sealed.startswith("v1:k1:")
    assert box.open(sealed, "mch_1") == "DE89 3704 0044 0532 0130 00"
    assert box.seal("same", "mch_1") != box.seal("same", "mch_1"), "a fresh nonce each time"


def test_a_value_moved_to_another_record_or_tampered_does_not_open() -> None:
    box = SecretBox({"k1": OLD}, "k1")
    sealed = box.seal("12345678", "mch_1")
    with pytest.raises(SecretBoxError):
        box.open(sealed, "mch_2")
    head, blob = sealed.rsplit(":", 1)
    raw = bytearray(base64.b64decode(blob))
    raw[-1] ^= 1
    with pytest.raises(SecretBoxError):
        box.open(f"{head}:{base64.b64encode(bytes(raw)).decode()}", "mch_1")
    with pytest.raises(SecretBoxError):
        box.open("plain text", "mch_1")


def test_rotation_keeps_old_values_readable() -> None:
    sealed = SecretBox({"k1": OLD}, "k1").seal("12345678", "mch_1")
    rotated = SecretBox({"k1": OLD, "k2": NEW}, "k2")
    assert rotated.open(sealed, "mch_1") == "12345678"
    assert rotated.seal("x", "m").startswith("v1:k2:")
    with pytest.raises(SecretBoxError):
        SecretBox({"k2": NEW}, "k2").open(sealed, "mch_1")
    with pytest.raises(SecretBoxError):
        SecretBox({"k1": OLD}, "k9")
    with pytest.raises(SecretBoxError):
        SecretBox({"k1": "not base64 of 32 bytes"}, "k1")
