"""Who is calling, and may they: the one check every endpoint makes.

A caller is a portal user (`Authorization: Bearer <access token>`) or a merchant's API key (a
signed request). Either way it becomes a `Principal`, and `require` asks `domain.access` whether
it holds the permission, passed MFA where required, and owns the resource. Denials are 403 in
the documented shape and are audited.
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass

import asyncpg
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from domain.access import (
    Denied,
    Owner,
    Principal,
    Realm,
    authorize,
    merchant_owned,
    owns,
)
from domain.agents import Grant, check_grant, check_pricing
from domain.policy import PlatformSettings
from domain.settlement import Entity
from domain.tokens import SigningKey, TokenError, load_public, read_access_token
from gateway.auth import authenticate
from gateway.errors import ApiError, invalid
from gateway.state import REQUEST_ID, Edge, edge
from infra import agents, audit, identity, policy, settlement
from infra.merchants import Merchant
from infra.secretbox import SecretBox

_KEY_MISS_REFRESH_S = 5.0
_POLICY_CACHE_S = 5.0


class Keyring:
    """The JWT signing keys, cached per process: the newest active key signs, every key not
    retired longer than a token lives verifies. Private keys are opened once per load."""

    def __init__(self, pg: asyncpg.Pool, box: SecretBox, cache_s: float, token_ttl_s: int) -> None:
        self._pg = pg
        self._box = box
        self._cache_s = cache_s
        self._token_ttl_s = token_ttl_s
        self._loaded_at = -1e9
        self._signing: SigningKey | None = None
        self._public: dict[str, Ed25519PublicKey] = {}
        self._lock = asyncio.Lock()

    async def _load(self, max_age_s: float) -> None:
        async with self._lock:
            if time.monotonic() - self._loaded_at < max_age_s:
                return
            keys = await identity.signing_keys(self._pg, self._box, self._token_ttl_s)
            if not keys:
                await identity.ensure_signing_key(self._pg, self._box)
                keys = await identity.signing_keys(self._pg, self._box, self._token_ttl_s)
            self._signing = keys[0]
            self._public = {k.kid: load_public(k.public_pem) for k in keys}
            self._loaded_at = time.monotonic()

    async def signing(self) -> SigningKey:
        await self._load(self._cache_s)
        assert self._signing is not None
        return self._signing

    async def public(self, refresh: bool = False) -> dict[str, Ed25519PublicKey]:
        await self._load(_KEY_MISS_REFRESH_S if refresh else self._cache_s)
        return self._public


class PolicyCache:
    def __init__(self, pg: asyncpg.Pool) -> None:
        self._pg = pg
        self._value: tuple[int, PlatformSettings] | None = None
        self._at = -1e9

    async def get(self) -> PlatformSettings:
        if self._value is None or time.monotonic() - self._at > _POLICY_CACHE_S:
            self._value = await policy.current(self._pg)
            self._at = time.monotonic()
        return self._value[1]

    def forget(self) -> None:
        self._value = None


@dataclass(frozen=True, slots=True)
class Caller:
    principal: Principal
    merchant: Merchant | None  # the caller's own merchant, for merchant-realm callers


def sees(who: Principal, merchant_id: str) -> bool:
    """Whether a merchant's data is visible to this principal, for callers outside the agent
    tree (the platform, the merchant itself); agents need `visible`."""
    return who.realm is not Realm.AGENT and owns(who, merchant_owned(merchant_id))


async def merchant_owner(e: Edge, merchant_id: str) -> Owner:
    """A merchant as a resource: itself, and every agent above it."""
    return merchant_owned(merchant_id, await agents.merchant_agents(e.pg, merchant_id))


async def visible(e: Edge, who: Principal, merchant_id: str) -> bool:
    """Whether a merchant's data is visible to this principal, agents included: an agent sees
    the merchants below it when its parent granted it that."""
    if who.realm is not Realm.AGENT:
        return owns(who, merchant_owned(merchant_id))
    return owns(who, await merchant_owner(e, merchant_id))


def idempotency_scope(who: Principal) -> str:
    """Idempotency keys are kept per merchant; callers outside a merchant get their own."""
    return who.org_id if who.realm is Realm.MERCHANT and who.org_id else who.actor


def unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, "authentication_error", code, message)


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def user_principal(e: Edge, token: str, *, allow_mfa_pending: bool = False) -> Principal:
    return (await session_user(e, token, allow_mfa_pending=allow_mfa_pending))[0]


async def session_user(
    e: Edge, token: str, *, allow_mfa_pending: bool = False
) -> tuple[Principal, identity.User]:
    """The user behind an access token, as of now: disabled users, revoked sessions and
    role changes take effect on the next request. `allow_mfa_pending` is for the endpoints a
    user without MFA yet must reach (enrolment, who am I, logout)."""
    read = functools.partial(
        read_access_token, token, now=int(time.time()), issuer=e.settings.auth.issuer
    )
    try:
        try:
            claims = read(await e.keyring.public())
        except TokenError as exc:
            if exc.code != "unknown_key":
                raise
            claims = read(await e.keyring.public(refresh=True))  # rotated in another process
    except TokenError as exc:
        raise unauthorized(
            "invalid_token" if exc.code == "unknown_key" else exc.code, str(exc)
        ) from None
    user = await identity.user_by_id(e.pg, claims.user_id)
    if user is None or user.status != "active":
        raise unauthorized("invalid_token", "the account is disabled")
    if await identity.session_revoked(e.pg, claims.session):
        raise unauthorized("session_revoked", "this session has ended; sign in again")
    settings = await e.policy.get()
    permissions, grants = user.permissions, frozenset[str]()
    if user.realm is Realm.AGENT:
        agent = await agents.agent(e.pg, user.org_id or "")
        if agent is None or agent["status"] != "active":
            permissions = frozenset()  # signed in, but nothing to do until the agent is active
        else:
            grants = frozenset(agent["grants"])
    principal = Principal(
        kind="user",
        id=user.id,
        realm=user.realm,
        org_id=user.org_id,
        permissions=permissions,
        mfa=claims.mfa,
        mfa_required=(
            settings.mfa_required(user.realm.value, user.org_requires_mfa) or claims.step_up
        )
        and not allow_mfa_pending,
        session=claims.session,
        email=user.email,
        grants=grants,
    )
    return principal, user


async def identify(request: web.Request, body: bytes) -> Caller:
    e = edge(request)
    token = bearer(request)
    if token is None:
        merchant, key = await authenticate(request, body, e)
        return Caller(key.principal, merchant)
    principal = await user_principal(e, token)
    merchant = None
    if principal.realm is Realm.MERCHANT and principal.org_id:
        # Its users may read and manage an inactive merchant; taking payments checks `active`.
        merchant = await e.merchants.merchant(principal.org_id)
    return Caller(principal, merchant)


def client_ip(request: web.Request) -> str:
    return request.remote or ""


def actor(request: web.Request, principal: Principal) -> audit.Actor:
    return audit.Actor.of(principal, client_ip(request), request.get(REQUEST_ID))


async def require(
    request: web.Request, principal: Principal, permission: str, owner: Owner | None = None
) -> None:
    try:
        authorize(principal, permission, owner)
    except Denied as exc:
        raise await denied(request, principal, permission, exc) from None


async def require_grant(request: web.Request, principal: Principal, grant: Grant) -> None:
    try:
        check_grant(principal, grant)
    except Denied as exc:
        raise await denied(request, principal, grant.value, exc) from None


async def require_pricing(
    request: web.Request, principal: Principal, *, own_rate: bool = False
) -> None:
    """Before any change to money terms, on every path that makes one (domain.agents)."""
    try:
        check_pricing(principal, own_rate=own_rate)
    except Denied as exc:
        raise await denied(request, principal, Grant.SET_RATES.value, exc) from None


async def denied(request: web.Request, principal: Principal, needed: str, exc: Denied) -> ApiError:
    """A denial: audited, and answered 403 in the documented shape."""
    await audit.append(
        edge(request).pg,
        actor(request, principal),
        "access.denied",
        f"{request.method} {request.path}",
        after={"permission": needed, "code": exc.code},
    )
    return ApiError(403, "permission_error", exc.code, exc.message)


async def entity_target(
    request: web.Request, who: Principal, entity_id: str, permission: str, param: str
) -> Entity:
    """The merchant or agent named (balances, statements, withdrawals), once the caller may act
    on it: the permission first, so an unknown id tells nothing to someone who could not read
    it anyway."""
    e = edge(request)
    found = await settlement.entity(e.pg, entity_id)
    if found is None:
        await require(request, who, permission)
        raise invalid("resource_missing", "no such merchant or agent", param, status=404)
    owner = (
        await merchant_owner(e, entity_id)
        if found.kind == "merchant"
        else Owner(Realm.AGENT, entity_id)
    )
    await require(request, who, permission, owner)
    return found
