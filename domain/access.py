"""Who may do what: permissions, the built-in roles, and the one authorization decision.

Every endpoint asks the same question through `authorize`: does this principal hold the
permission, has it passed MFA where its realm demands it, and does the resource belong to it
(a merchant sees only its own data, an agent only its own subtree, the platform everything)?
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class Realm(StrEnum):
    PLATFORM = "platform"
    MERCHANT = "merchant"
    AGENT = "agent"


# Each permission and the realms whose roles may hold it.
PERMISSIONS: dict[str, frozenset[Realm]] = {
    "payments:read": frozenset(Realm),
    "payments:create": frozenset({Realm.MERCHANT}),
    "payments:cancel": frozenset({Realm.PLATFORM, Realm.MERCHANT}),
    "refunds:read": frozenset(Realm),
    "refunds:create": frozenset({Realm.PLATFORM, Realm.MERCHANT}),
    "events:resend": frozenset({Realm.PLATFORM, Realm.MERCHANT}),
    "merchants:read": frozenset(Realm),
    "merchants:write": frozenset(Realm),
    "agents:read": frozenset({Realm.PLATFORM, Realm.AGENT}),
    "agents:write": frozenset({Realm.PLATFORM, Realm.AGENT}),
    "commission:read": frozenset({Realm.PLATFORM, Realm.AGENT}),
    "channels:read": frozenset({Realm.PLATFORM}),
    "channels:write": frozenset({Realm.PLATFORM}),
    "settlements:read": frozenset(Realm),
    "settlements:approve": frozenset({Realm.PLATFORM}),
    "withdrawals:create": frozenset(Realm),
    "risk:read": frozenset({Realm.PLATFORM}),
    "risk:write": frozenset({Realm.PLATFORM}),
    "keys:manage": frozenset({Realm.PLATFORM, Realm.MERCHANT}),
    "users:read": frozenset(Realm),
    "users:manage": frozenset(Realm),
    "roles:manage": frozenset({Realm.PLATFORM}),
    "settings:read": frozenset({Realm.PLATFORM}),
    "settings:write": frozenset({Realm.PLATFORM}),
    "audit:read": frozenset({Realm.PLATFORM}),
}


@dataclass(frozen=True, slots=True)
class RoleSpec:
    id: str
    realm: Realm
    name: str
    permissions: frozenset[str]


def _role(role_id: str, realm: Realm, name: str, *permissions: str) -> RoleSpec:
    return RoleSpec(role_id, realm, name, frozenset(permissions))


_READ_MONEY = ("payments:read", "refunds:read", "settlements:read")
_MERCHANT_READ = (*_READ_MONEY, "merchants:read")

BUILTIN_ROLES: tuple[RoleSpec, ...] = (
    _role(
        "platform_admin",
        Realm.PLATFORM,
        "Platform administrator",
        *(p for p, realms in PERMISSIONS.items() if Realm.PLATFORM in realms),
    ),
    _role(
        "operations",
        Realm.PLATFORM,
        "Operations",
        *_READ_MONEY,
        "payments:cancel",
        "refunds:create",
        "events:resend",
        "merchants:read",
        "merchants:write",
        "agents:read",
        "channels:read",
        "channels:write",
    ),
    _role(
        "finance",
        Realm.PLATFORM,
        "Finance",
        *_READ_MONEY,
        "refunds:create",
        "settlements:approve",
        "withdrawals:create",
        "merchants:read",
        "agents:read",
        "commission:read",
        "audit:read",
    ),
    _role(
        "risk_analyst",
        Realm.PLATFORM,
        "Risk analyst",
        *_READ_MONEY,
        "merchants:read",
        "risk:read",
        "risk:write",
        "audit:read",
    ),
    _role(
        "merchant_owner",
        Realm.MERCHANT,
        "Merchant owner",
        *_MERCHANT_READ,
        "merchants:write",
        "payments:create",
        "payments:cancel",
        "refunds:create",
        "events:resend",
        "withdrawals:create",
        "keys:manage",
        "users:read",
        "users:manage",
    ),
    _role("merchant_staff", Realm.MERCHANT, "Merchant staff (read-only)", *_MERCHANT_READ),
    _role(
        "agent_owner",
        Realm.AGENT,
        "Agent owner",
        *_READ_MONEY,
        "merchants:read",
        "merchants:write",
        "agents:read",
        "agents:write",
        "commission:read",
        "withdrawals:create",
        "users:read",
        "users:manage",
    ),
    _role(
        "agent_staff",
        Realm.AGENT,
        "Agent staff",
        *_READ_MONEY,
        "merchants:read",
        "agents:read",
        "commission:read",
    ),
)

# What a merchant's API key may do unless the key is limited to fewer.
API_KEY_PERMISSIONS = frozenset(
    {
        "payments:read",
        "payments:create",
        "payments:cancel",
        "refunds:read",
        "refunds:create",
        "events:resend",
    }
)


class RoleError(ValueError):
    pass


def check_role_permissions(realm: Realm, permissions: set[str] | frozenset[str]) -> None:
    """A role holds only known permissions that its realm may hold."""
    unknown = sorted(p for p in permissions if p not in PERMISSIONS)
    if unknown:
        raise RoleError(f"unknown permissions: {', '.join(unknown)}")
    foreign = sorted(p for p in permissions if realm not in PERMISSIONS[p])
    if foreign:
        raise RoleError(f"a {realm} role cannot hold: {', '.join(foreign)}")


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose a resource is. `agents` are the merchant's agent chain (its subtree's roots up to
    the top), empty until the merchant is placed under an agent."""

    realm: Realm
    org_id: str | None
    agents: frozenset[str] = frozenset()


PLATFORM_OWNED = Owner(Realm.PLATFORM, None)


def merchant_owned(merchant_id: str, agents: frozenset[str] = frozenset()) -> Owner:
    return Owner(Realm.MERCHANT, merchant_id, agents)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a portal user (bearer token) or a merchant's API key (signed request)."""

    kind: str  # "user" or "api_key"
    id: str
    realm: Realm
    org_id: str | None
    permissions: frozenset[str]
    mfa: bool = False
    mfa_required: bool = False
    session: str | None = None
    email: str | None = field(default=None, repr=False)
    grants: frozenset[str] = frozenset()  # an agent's, from its parent (domain.agents.Grant)

    @property
    def actor(self) -> str:
        return f"{self.kind}:{self.id}"


class Denied(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def owns(principal: Principal, owner: Owner) -> bool:
    if principal.realm is Realm.PLATFORM:
        return True
    if principal.realm is Realm.MERCHANT:
        return owner.realm is Realm.MERCHANT and owner.org_id == principal.org_id
    if owner.realm is Realm.AGENT and owner.org_id == principal.org_id:
        return True
    # Below itself, an agent sees only what its parent granted it to see.
    return principal.org_id in owner.agents and "view_children" in principal.grants


def authorize(principal: Principal, permission: str, owner: Owner | None = None) -> None:
    """Raise Denied unless the principal may use `permission` on what `owner` owns."""
    if permission not in PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")
    if principal.mfa_required and not principal.mfa:
        raise Denied("mfa_required", "multi-factor authentication is required first")
    if permission not in principal.permissions:
        raise Denied("permission_denied", f"missing permission {permission}")
    if owner is not None and not owns(principal, owner):
        raise Denied("not_owner", "this resource belongs to another organisation")


PLATFORM_ADMIN = "platform_admin"


def lacking(principal: Principal, permissions: Iterable[str]) -> frozenset[str]:
    """Of these permissions, those the principal's realm could hold but the principal does not:
    what it may neither grant nor take away (a platform admin still manages merchants' users,
    whose merchant-only permissions no platform user can hold)."""
    return (
        frozenset(p for p in permissions if principal.realm in PERMISSIONS.get(p, ()))
        - principal.permissions
    )


def is_platform_admin(realm: Realm, status: str, roles: Iterable[str]) -> bool:
    """An active platform user with the platform_admin role: the platform must keep one, or
    nobody could manage users, roles and settings any more."""
    return realm is Realm.PLATFORM and status == "active" and PLATFORM_ADMIN in roles
