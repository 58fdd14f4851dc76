"""The authorization decision (domain/access.py): permissions, realms, ownership, MFA."""

from __future__ import annotations

from dataclasses import replace

import pytest

from domain.access import (
    API_KEY_PERMISSIONS,
    BUILTIN_ROLES,
    PERMISSIONS,
    PLATFORM_ADMIN,
    PLATFORM_OWNED,
    Denied,
    Owner,
    Principal,
    Realm,
    RoleError,
    authorize,
    check_role_permissions,
    is_platform_admin,
    lacking,
    merchant_owned,
)

ROLES = {r.id: r for r in BUILTIN_ROLES}


def principal(realm: Realm, org: str | None, *perms: str, mfa: bool = True) -> Principal:
    return Principal("user", "usr_1", realm, org, frozenset(perms), mfa=mfa, mfa_required=True)


def test_every_builtin_role_fits_its_realm() -> None:
    assert set(ROLES) == {
        "platform_admin",
        "operations",
        "finance",
        "risk_analyst",
        "merchant_owner",
        "merchant_staff",
        "agent_owner",
        "agent_staff",
    }
    for role in BUILTIN_ROLES:
        check_role_permissions(role.realm, role.permissions)


def test_platform_admin_holds_every_platform_permission() -> None:
    platform = {p for p, realms in PERMISSIONS.items() if Realm.PLATFORM in realms}
    assert ROLES["platform_admin"].permissions == platform


@pytest.mark.parametrize(
    ("role", "allowed", "denied"),
    [
        ("merchant_staff", "payments:read", "refunds:create"),
        ("merchant_owner", "refunds:create", "settings:write"),
        ("finance", "settlements:approve", "channels:write"),
        ("risk_analyst", "risk:write", "refunds:create"),
        ("operations", "channels:write", "settlements:approve"),
        ("agent_staff", "commission:read", "agents:write"),
        ("agent_owner", "agents:write", "payments:create"),
    ],
)
def test_builtin_roles_by_hand(role: str, allowed: str, denied: str) -> None:
    assert allowed in ROLES[role].permissions
    assert denied not in ROLES[role].permissions


def test_roles_cannot_hold_foreign_or_unknown_permissions() -> None:
    with pytest.raises(RoleError, match="cannot hold"):
        check_role_permissions(Realm.MERCHANT, {"settings:write"})
    with pytest.raises(RoleError, match="unknown"):
        check_role_permissions(Realm.PLATFORM, {"payments:teleport"})


def test_permission_and_ownership() -> None:
    staff = principal(Realm.MERCHANT, "mch_a", "payments:read")
    authorize(staff, "payments:read", merchant_owned("mch_a"))
    with pytest.raises(Denied) as denied:
        authorize(staff, "payments:read", merchant_owned("mch_b"))
    assert denied.value.code == "not_owner"
    with pytest.raises(Denied) as denied:
        authorize(staff, "payments:cancel", merchant_owned("mch_a"))
    assert denied.value.code == "permission_denied"
    with pytest.raises(Denied):
        authorize(staff, "payments:read", PLATFORM_OWNED)


def test_platform_sees_everything_it_has_permission_for() -> None:
    ops = principal(Realm.PLATFORM, None, "payments:read")
    authorize(ops, "payments:read", merchant_owned("mch_any"))
    authorize(ops, "payments:read", Owner(Realm.AGENT, "agt_x"))


def test_agent_sees_its_subtree_only_and_only_when_granted() -> None:
    agent = replace(
        principal(Realm.AGENT, "agt_top", "payments:read", "agents:read"),
        grants=frozenset({"view_children"}),
    )
    authorize(agent, "payments:read", merchant_owned("mch_a", frozenset({"agt_top", "agt_mid"})))
    authorize(agent, "agents:read", Owner(Realm.AGENT, "agt_top"))
    authorize(agent, "agents:read", Owner(Realm.AGENT, "agt_leaf", frozenset({"agt_top"})))
    with pytest.raises(Denied):
        authorize(agent, "payments:read", merchant_owned("mch_b", frozenset({"agt_other"})))
    with pytest.raises(Denied):
        authorize(agent, "agents:read", Owner(Realm.AGENT, "agt_other"))
    blind = replace(agent, grants=frozenset())
    authorize(blind, "agents:read", Owner(Realm.AGENT, "agt_top"))
    with pytest.raises(Denied):
        authorize(blind, "agents:read", Owner(Realm.AGENT, "agt_leaf", frozenset({"agt_top"})))


def test_mfa_is_checked_before_anything_else() -> None:
    pending = principal(Realm.PLATFORM, None, "payments:read", mfa=False)
    with pytest.raises(Denied) as denied:
        authorize(pending, "payments:read")
    assert denied.value.code == "mfa_required"
    key = Principal("api_key", "key_1", Realm.MERCHANT, "mch_a", API_KEY_PERMISSIONS)
    authorize(key, "payments:create", merchant_owned("mch_a"))


def test_unknown_permission_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        authorize(principal(Realm.PLATFORM, None), "payments:teleport")


def test_lacking_names_what_a_principal_may_neither_grant_nor_take_away() -> None:
    desk = principal(Realm.PLATFORM, None, "users:read", "users:manage")
    admin_permissions = ROLES["platform_admin"].permissions
    assert lacking(desk, admin_permissions) == admin_permissions - {"users:read", "users:manage"}
    assert not lacking(desk, {"users:read"})
    # A platform user holds no merchant-only permission, so those never count against it.
    admin = principal(Realm.PLATFORM, None, *admin_permissions)
    assert not lacking(admin, ROLES["merchant_owner"].permissions)
    owner = principal(Realm.MERCHANT, "mch_a", *ROLES["merchant_owner"].permissions)
    assert not lacking(owner, ROLES["merchant_staff"].permissions)
    assert lacking(principal(Realm.MERCHANT, "mch_a"), {"refunds:create"}) == {"refunds:create"}


def test_a_platform_admin_is_an_active_platform_user_with_the_role() -> None:
    assert is_platform_admin(Realm.PLATFORM, "active", ("operations", PLATFORM_ADMIN))
    assert not is_platform_admin(Realm.PLATFORM, "disabled", (PLATFORM_ADMIN,))
    assert not is_platform_admin(Realm.PLATFORM, "active", ("operations",))
    assert not is_platform_admin(Realm.MERCHANT, "active", (PLATFORM_ADMIN,))
