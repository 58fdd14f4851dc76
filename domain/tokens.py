"""Access tokens (EdDSA-signed JWTs, key id in the header) and opaque refresh tokens.

Access tokens are short-lived and say who the user is, in which realm, and whether MFA was
satisfied; permissions are looked up on every request, so a role change or a disabled account
takes effect at once. Refresh tokens are random, stored only as digests, and rotate on use.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from domain.ids import new_id

ALGORITHM = "EdDSA"
AUDIENCE = "juhe-portal"


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    private_pem: str
    public_pem: str


def new_signing_key() -> SigningKey:
    private = Ed25519PrivateKey.generate()
    return SigningKey(
        kid=new_id("kid"),
        private_pem=private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
        public_pem=private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode(),
    )


def load_public(pem: str) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: str
    realm: str
    org_id: str | None
    mfa: bool
    session: str
    expires_at: int
    step_up: bool = False  # the session must pass MFA whatever the platform's policy


class TokenError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def issue_access_token(
    key: SigningKey,
    *,
    user_id: str,
    realm: str,
    org_id: str | None,
    mfa: bool,
    session: str,
    now: int,
    ttl_s: int,
    issuer: str,
    step_up: bool = False,
) -> str:
    claims = {
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": user_id,
        "realm": realm,
        "org": org_id,
        "mfa": mfa,
        "sid": session,
        "iat": now,
        "exp": now + ttl_s,
        "jti": new_id("jti"),
        "stp": step_up,
    }
    return jwt.encode(claims, key.private_pem, algorithm=ALGORITHM, headers={"kid": key.kid})


def read_access_token(
    token: str, public_keys: Mapping[str, Ed25519PublicKey], *, now: int, issuer: str
) -> AccessClaims:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.InvalidTokenError:
        raise TokenError("invalid_token", "the access token is malformed") from None
    key = public_keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise TokenError("unknown_key", "the access token's signing key is unknown")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=issuer,
            options={"require": ["exp", "iat", "sub", "sid"], "verify_iat": False},
            leeway=0,
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("token_expired", "the access token has expired") from None
    except jwt.InvalidTokenError:
        raise TokenError("invalid_token", "the access token is invalid") from None
    if claims["exp"] <= now:  # pyjwt checks against the wall clock; `now` is authoritative
        raise TokenError("token_expired", "the access token has expired")
    return AccessClaims(
        user_id=claims["sub"],
        realm=claims["realm"],
        org_id=claims.get("org"),
        mfa=bool(claims.get("mfa")),
        session=claims["sid"],
        expires_at=claims["exp"],
        step_up=bool(claims.get("stp")),
    )


def new_secret_token(kind: str) -> tuple[str, str, str]:
    """(token id, the token to hand out: `{id}.{secret}`, the digest to store). Only the digest
    is kept, so the database holds nothing that works as the token."""
    token_id = new_id(kind)
    secret = secrets.token_urlsafe(32)
    return token_id, f"{token_id}.{secret}", token_digest(secret)


def split_secret_token(token: str, kind: str) -> tuple[str, str] | None:
    """(token id, digest of its secret) of a token of this kind, or None if it is not one."""
    token_id, dot, secret = token.partition(".")
    if not dot or not token_id.startswith(kind + "_") or not secret:
        return None
    return token_id, token_digest(secret)


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_refresh_token() -> tuple[str, str, str]:
    return new_secret_token("rt")


def split_refresh_token(token: str) -> tuple[str, str] | None:
    return split_secret_token(token, "rt")
