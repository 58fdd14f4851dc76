"""Passwords, TOTP and recovery codes (domain/credentials.py)."""

from __future__ import annotations

import pyotp
import pytest

from domain.credentials import (
    PasswordPolicy,
    PasswordRejected,
    check_password,
    hash_password,
    is_common,
    new_recovery_codes,
    new_totp_secret,
    password_matches,
    provisioning_uri,
    recovery_digest,
    totp_step,
)

POLICY = PasswordPolicy()


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("Sh0rt!", "at least 12"),
        ("alllowercaseletters", "mix"),
        ("x" * 200 + "A1!", "at most"),
        ("Alice-Secret-2026", "e-mail"),
        ("Password1234", "too common"),
        ("pASSWORD1234", "too common"),
        ("Qwerty123456!", "too common"),
        ("Summer2024!!", "too common"),
        ("Baseball2024#", "too common"),
    ],
)
def test_policy_rejects(password: str, why: str) -> None:
    with pytest.raises(PasswordRejected, match=why):
        check_password(password, POLICY, "alice@example.com")


def test_policy_accepts_a_good_password() -> None:
    check_password("Correct-Horse-42-battery", POLICY, "alice@example.com")


def test_common_passwords_come_from_a_list_of_thousands() -> None:
    assert is_common("123456") and is_common("DRAGON") and is_common("letmein!")
    assert not is_common("Correct-Horse-42-battery")
    assert not is_common("")


def test_argon2id_hash_round_trip() -> None:
    stored = hash_password("Correct-Horse-42-battery")
    assert stored.startswith("$argon2id$")
    assert password_matches(stored, "Correct-Horse-42-battery")
    assert not password_matches(stored, "correct-horse-42-battery")
    assert not password_matches("not a hash", "anything")


def test_totp_accepts_one_step_of_drift_and_never_a_spent_step() -> None:
    secret = new_totp_secret()
    now = 1_800_000_015.0
    step = int(now) // 30
    totp = pyotp.TOTP(secret)
    assert totp_step(secret, totp.at(now), now, 0) == step
    assert totp_step(secret, totp.at(now - 30), now, 0) == step - 1
    assert totp_step(secret, totp.at(now + 30), now, 0) == step + 1
    assert totp_step(secret, totp.at(now - 60), now, 0) is None
    assert totp_step(secret, totp.at(now), now, step) is None, "spent"
    assert totp_step(secret, "12345", now, 0) is None
    assert totp_step(secret, "abcdef", now, 0) is None


def test_provisioning_uri_names_the_account_and_issuer() -> None:
    uri = provisioning_uri(new_totp_secret(), "alice@example.com", "Juhe")
    assert uri.startswith("otpauth://totp/Juhe:alice%40example.com?")
    assert "issuer=Juhe" in uri


def test_recovery_codes_are_unique_and_digested_loosely() -> None:
    codes = new_recovery_codes(10)
    assert len(set(codes)) == 10
    assert recovery_digest(codes[0]) == recovery_digest(" " + codes[0].upper() + " ")
    assert recovery_digest(codes[0]) != recovery_digest(codes[1])
