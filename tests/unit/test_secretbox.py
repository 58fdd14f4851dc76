"""Encryption at rest (infra/secretbox.py, infra/sealing.py): AES-256-GCM bound to its record,
keys rotatable, legacy plaintext read until it is sealed."""

from __future__ import annotations

import base64
import os

import pytest

from infra.sealing import API_KEY, WEBHOOK
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


def test_open_or_plain_takes_legacy_plaintext_but_never_a_broken_sealed_value() -> None:
    box = SecretBox({"k1": OLD}, "k1")
    assert box.open_or_plain("sk_from_before", "api_key:key_1") == "sk_from_before"
    sealed = box.seal("sk_new", "api_key:key_1")
    assert box.open_or_plain(sealed, "api_key:key_1") == "sk_new"
    with pytest.raises(SecretBoxError):
        box.open_or_plain(sealed, "api_key:key_2")
    with pytest.raises(SecretBoxError):
        box.open_or_plain(sealed[:-4] + "AAAA", "api_key:key_1")


def test_a_sealed_column_binds_its_purpose_and_row() -> None:
    box = SecretBox({"k1": OLD}, "k1")
    sealed = API_KEY.seal(box, "key_1", "sk_1")
    assert API_KEY.open(box, "key_1", sealed) == "sk_1"
    for column, row_id in ((API_KEY, "key_2"), (WEBHOOK, "key_1")):
        with pytest.raises(SecretBoxError):
            column.open(box, row_id, sealed)
