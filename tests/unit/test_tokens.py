"""Access and refresh tokens (domain/tokens.py)."""

from __future__ import annotations

import time

import jwt
import pytest

from domain.tokens import (
    TokenError,
    issue_access_token,
    load_public,
    new_refresh_token,
    new_secret_token,
    new_signing_key,
    read_access_token,
    split_refresh_token,
    split_secret_token,
    token_digest,
)

KEY = new_signing_key()
OTHER = new_signing_key()
NOW = int(time.time())
# pyjwt also checks expiry against the wall clock, and these tokens are made when the module is
# collected, perhaps many minutes before a slow suite reaches them: a day keeps them valid.
DAY = 86_400


def token(key=KEY, now: int = NOW, ttl: int = DAY, issuer: str = "juhe") -> str:
    return issue_access_token(
        key,
        user_id="usr_1",
        realm="merchant",
        org_id="mch_1",
        mfa=True,
        session="ses_1",
        now=now,
        ttl_s=ttl,
        issuer=issuer,
    )


def test_a_step_up_demand_travels_in_the_token() -> None:
    claims = read_access_token(token(), keys(KEY), now=NOW, issuer="juhe")
    assert claims.step_up is False
    demanded = issue_access_token(
        KEY,
        user_id="usr_1",
        realm="merchant",
        org_id="mch_1",
        mfa=False,
        session="ses_1",
        now=NOW,
        ttl_s=DAY,
        issuer="juhe",
        step_up=True,
    )
    assert read_access_token(demanded, keys(KEY), now=NOW, issuer="juhe").step_up is True


def keys(*signing) -> dict:
    return {k.kid: load_public(k.public_pem) for k in signing}


def test_round_trip_with_key_id_and_eddsa() -> None:
    value = token()
    header = jwt.get_unverified_header(value)
    assert header["kid"] == KEY.kid and header["alg"] == "EdDSA"
    claims = read_access_token(value, keys(KEY, OTHER), now=NOW, issuer="juhe")
    assert (claims.user_id, claims.realm, claims.org_id, claims.mfa, claims.session) == (
        "usr_1",
        "merchant",
        "mch_1",
        True,
        "ses_1",
    )


@pytest.mark.parametrize(
    ("value", "verifier_keys", "code"),
    [
        (token(now=NOW - 1000, ttl=600), keys(KEY), "token_expired"),
        (token(), keys(OTHER), "unknown_key"),
        (token(issuer="someone-else"), keys(KEY), "invalid_token"),
        ("a.b.c", keys(KEY), "invalid_token"),
    ],
)
def test_refused(value: str, verifier_keys: dict, code: str) -> None:
    with pytest.raises(TokenError) as refused:
        read_access_token(value, verifier_keys, now=NOW, issuer="juhe")
    assert refused.value.code == code


def test_a_signature_from_another_key_under_our_kid_is_refused() -> None:
    impostor = type(OTHER)(KEY.kid, OTHER.private_pem, OTHER.public_pem)
    with pytest.raises(TokenError) as refused:
        read_access_token(token(impostor), keys(KEY), now=NOW, issuer="juhe")
    assert refused.value.code == "invalid_token"


def test_expiry_is_judged_by_the_given_clock() -> None:
    with pytest.raises(TokenError):
        read_access_token(token(ttl=60), keys(KEY), now=NOW + 61, issuer="juhe")


def test_refresh_tokens_split_into_id_and_digest() -> None:
    token_id, value, digest = new_refresh_token()
    assert split_refresh_token(value) == (token_id, digest)
    assert token_digest(value.split(".", 1)[1]) == digest
    for bad in ("", "rt_only", "xx_1.secret", "rt_1.", "inv_1.secret"):
        assert split_refresh_token(bad) is None
    invitation_id, value, digest = new_secret_token("inv")
    assert invitation_id.startswith("inv_") and digest not in value
    assert split_secret_token(value, "inv") == (invitation_id, digest)
    assert split_secret_token(value, "rt") is None
