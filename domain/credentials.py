"""Passwords, one-time codes and recovery codes: policy and checks, no storage.

Passwords are hashed with argon2id and must not be common ones; TOTP follows RFC 6238 (30 s
steps, 6 digits) and a code's time step is remembered so the same code cannot be used twice;
recovery codes are single-use and stored only as SHA-256 digests (they are random, so a fast
hash is enough).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from functools import cache

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn.frequency_lists import FREQUENCY_LISTS

TOTP_STEP_S = 30
_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters


class PasswordRejected(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    min_length: int = 12
    max_length: int = 128
    min_classes: int = 3  # of lower case, upper case, digits, other


def check_password(password: str, policy: PasswordPolicy, email: str = "") -> None:
    if len(password) < policy.min_length:
        raise PasswordRejected(f"the password must have at least {policy.min_length} characters")
    if len(password) > policy.max_length:
        raise PasswordRejected(f"the password must have at most {policy.max_length} characters")
    classes = sum(
        (
            any(c.islower() for c in password),
            any(c.isupper() for c in password),
            any(c.isdigit() for c in password),
            any(not c.isalnum() for c in password),
        )
    )
    if classes < policy.min_classes:
        raise PasswordRejected(
            f"the password must mix at least {policy.min_classes} of: lower case, upper case, "
            "digits, other characters"
        )
    local = email.split("@", 1)[0].lower()
    if len(local) >= 4 and local in password.lower():
        raise PasswordRejected("the password must not contain the e-mail address")
    if is_common(password):
        raise PasswordRejected("the password is too common: it is among the first guesses")


# What people add to a common word to pass a mix rule: symbols, or digits and symbols, at the end.
_SYMBOLS = re.compile(r"[\W_]+$")
_DIGITS_AND_SYMBOLS = re.compile(r"[\W\d_]+$")


@cache
def _common_passwords() -> frozenset[str]:
    """The 30,000 most common passwords, lower case, as zxcvbn ships them (ranked from Xato's
    corpus of ten million leaked passwords)."""
    return frozenset(FREQUENCY_LISTS["passwords"])


def is_common(password: str) -> bool:
    """A common password whatever its case, or one with only digits and symbols added
    (`Password1234`, `Summer2024!!`, `Qwerty123456!`)."""
    lowered = password.lower()
    forms = {lowered, _SYMBOLS.sub("", lowered), _DIGITS_AND_SYMBOLS.sub("", lowered)}
    return not forms.isdisjoint(_common_passwords())


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def password_matches(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# Compared against when the account does not exist, so both paths cost one argon2 verify.
DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def new_totp_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, email: str, issuer: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def totp_step(secret: str, code: str, now: float, last_step: int) -> int | None:
    """The time step a valid, unused code belongs to (one step of clock drift either way), or
    None. A step at or before `last_step` was used already."""
    if not code.isdigit() or len(code) != 6:
        return None
    totp = pyotp.TOTP(secret)
    current = int(now) // TOTP_STEP_S
    for step in (current - 1, current, current + 1):
        if step > last_step and hmac.compare_digest(totp.at(step * TOTP_STEP_S), code):
            return step
    return None


def new_recovery_codes(count: int) -> list[str]:
    return [f"{secrets.token_hex(4)}-{secrets.token_hex(4)}" for _ in range(count)]


def recovery_digest(code: str) -> str:
    return hashlib.sha256(code.strip().lower().encode()).hexdigest()
