"""The admin API (seed §4.6): users, roles, platform settings, the audit log, merchant API keys.

Platform users with the right permission act on any organisation; a merchant's or agent's
owner manages the users of their own organisation only. Nobody can grant permissions they do
not hold themselves. Every change is audited with its before and after.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import asyncpg
import msgspec
from aiohttp import web

from domain.access import (
    API_KEY_PERMISSIONS,
    PLATFORM_ADMIN,
    PLATFORM_OWNED,
    Denied,
    Owner,
    Principal,
    Realm,
    RoleError,
    check_role_permissions,
    is_platform_admin,
    lacking,
    merchant_owned,
)
from domain.credentials import PasswordRejected, check_password
from domain.policy import PlatformSettings
from gateway.access import actor, denied, identify, require
from gateway.errors import ApiError, email_taken, from_validation, invalid
from gateway.identity_schemas import (
    ApiKeyCreated,
    AssignRoles,
    CreateApiKey,
    CreateUser,
    PutRole,
    PutSettings,
    RoleView,
    SettingsView,
)
from gateway.sessions import user_view
from gateway.state import Edge, decode, edge, int_query, json_answer, page_limit
from infra import audit, identity, policy
from infra.identity import User
from infra.merchants import add_api_key

_ROLE_ID = r"^[a-z][a-z0-9_]{2,63}$"


def _org_owner(realm: Realm, org_id: str | None) -> Owner:
    return PLATFORM_OWNED if realm is Realm.PLATFORM else Owner(realm, org_id)


async def require_strong_password(e: Edge, password: str, email: str) -> None:
    try:
        check_password(password, (await e.policy.get()).password_policy, email)
    except PasswordRejected as exc:
        raise invalid("weak_password", str(exc), "password") from None


async def _caller(request: web.Request, body: bytes = b"") -> Principal:
    return (await identify(request, body)).principal


async def _target_user(request: web.Request, who: Principal, permission: str) -> User:
    e = edge(request)
    user = await identity.user_by_id(e.pg, request.match_info["id"])
    if user is None:
        await require(request, who, permission)
        raise invalid("resource_missing", "no such user", "id", status=404)
    await require(request, who, permission, _org_owner(user.realm, user.org_id))
    return user


async def _escalation(
    request: web.Request,
    who: Principal,
    permissions: Iterable[str],
    message: str,
    needed: str = "users:manage",
) -> None:
    """Nobody gives or takes away a permission they do not hold (domain.access.lacking)."""
    if lacking(who, permissions):
        raise await denied(request, who, needed, Denied("privilege_escalation", message))


async def _check_grantable(
    request: web.Request, who: Principal, realm: Realm, role_ids: list[str]
) -> None:
    """Roles exist, belong to the user's realm, and grant nothing the granter lacks (of what
    the granter's realm can hold: a platform admin grants merchant-only permissions too)."""
    e = edge(request)
    for role_id in role_ids:
        row = await identity.role(e.pg, role_id)
        if row is None:
            raise invalid("unknown_role", f"no role {role_id!r}", "roles")
        if row["realm"] != realm.value:
            raise invalid("role_realm_mismatch", f"{role_id} is not a {realm} role", "roles")
        await _escalation(
            request,
            who,
            row["permissions"],
            f"granting {role_id} would grant permissions you do not hold",
        )


async def _check_actable(request: web.Request, who: Principal, user: User) -> None:
    """Disabling, enabling or re-roling a user who holds more than the actor would let the
    actor take away (or give back) what they could never grant."""
    await _escalation(request, who, user.permissions, "this user holds permissions you do not hold")


async def _keep_a_platform_admin(conn: asyncpg.Connection, user: User) -> None:
    """Refuse to disable or demote the last active platform admin, whoever asks."""
    if await identity.other_platform_admins(conn, user.id) == 0:
        raise invalid(
            "last_platform_admin",
            "this is the last active platform admin; make another one first",
            status=409,
        )


async def list_users(request: web.Request) -> web.Response:
    e = edge(request)
    who = await _caller(request)
    await require(request, who, "users:read")
    realm = request.query.get("realm")
    if realm is not None and realm not in Realm.__members__.values():
        raise invalid("invalid_field", "realm must be platform, merchant or agent", "realm")
    limit = page_limit(request, 20)
    if who.realm is Realm.PLATFORM:
        scope_realm = Realm(realm) if realm else None
        scope_org = request.query.get("org_id")
    else:
        scope_realm, scope_org = who.realm, who.org_id
    users = await identity.list_users(
        e.pg,
        realm=scope_realm,
        org_id=scope_org,
        after=request.query.get("starting_after"),
        limit=limit + 1,
    )
    data = [msgspec.to_builtins(user_view(u)) for u in users[:limit]]
    return json_answer({"object": "list", "data": data, "has_more": len(users) > limit})


async def create_user(request: web.Request) -> web.Response:
    e = edge(request)
    body = await request.read()
    who = await _caller(request, body)
    req = decode(body, CreateUser)
    realm = Realm(req.realm)
    if (realm is Realm.PLATFORM) != (req.org_id is None):
        raise invalid(
            "invalid_field", "org_id is required for merchant and agent users only", "org_id"
        )
    await require(request, who, "users:manage", _org_owner(realm, req.org_id))
    if realm is Realm.MERCHANT and await e.merchants.merchant(req.org_id or "") is None:
        raise invalid("resource_missing", "no such merchant", "org_id", status=404)
    await require_strong_password(e, req.password, req.email)
    await _check_grantable(request, who, realm, req.roles)
    async with e.pg.acquire() as conn, conn.transaction():
        user_id = await identity.create_user(
            conn,
            email=req.email,
            realm=realm,
            org_id=req.org_id,
            password=req.password,
            roles=req.roles,
        )
        if user_id is None:
            raise email_taken()
        await audit.append(
            conn,
            actor(request, who),
            "user.create",
            f"user:{user_id}",
            after={
                "email": req.email,
                "realm": realm.value,
                "org_id": req.org_id,
                "roles": req.roles,
            },
        )
    user = await identity.user_by_id(e.pg, user_id)
    assert user is not None
    return json_answer(user_view(user), 201)


async def _set_status(request: web.Request, status: str) -> web.Response:
    e = edge(request)
    who = await _caller(request, await request.read())
    user = await _target_user(request, who, "users:manage")
    if user.id == who.id:
        raise invalid("cannot_change_self", "you cannot disable or enable yourself", status=409)
    await _check_actable(request, who, user)
    async with e.pg.acquire() as conn, conn.transaction():
        if status == "disabled" and is_platform_admin(user.realm, user.status, user.roles):
            await _keep_a_platform_admin(conn, user)
        await identity.set_status(conn, user.id, status)
        if status == "disabled":
            await identity.revoke_user_sessions(conn, user.id)
        await audit.append(
            conn,
            actor(request, who),
            f"user.{'disable' if status == 'disabled' else 'enable'}",
            f"user:{user.id}",
            before={"status": user.status},
            after={"status": status},
        )
    updated = await identity.user_by_id(e.pg, user.id)
    assert updated is not None
    return json_answer(user_view(updated))


async def disable_user(request: web.Request) -> web.Response:
    return await _set_status(request, "disabled")


async def enable_user(request: web.Request) -> web.Response:
    return await _set_status(request, "active")


async def assign_roles(request: web.Request) -> web.Response:
    e = edge(request)
    body = await request.read()
    who = await _caller(request, body)
    user = await _target_user(request, who, "users:manage")
    req = decode(body, AssignRoles)
    await _check_actable(request, who, user)
    await _check_grantable(request, who, user.realm, req.roles)
    async with e.pg.acquire() as conn, conn.transaction():
        if (
            is_platform_admin(user.realm, user.status, user.roles)
            and PLATFORM_ADMIN not in req.roles
        ):
            await _keep_a_platform_admin(conn, user)
        await identity.set_roles(conn, user.id, sorted(set(req.roles)))
        await audit.append(
            conn,
            actor(request, who),
            "user.roles",
            f"user:{user.id}",
            before={"roles": list(user.roles)},
            after={"roles": sorted(set(req.roles))},
        )
    updated = await identity.user_by_id(e.pg, user.id)
    assert updated is not None
    return json_answer(user_view(updated))


def _role_view(row: Any) -> dict[str, Any]:
    return msgspec.to_builtins(
        RoleView(
            id=row["id"],
            object="role",
            realm=row["realm"],
            name=row["name"],
            permissions=sorted(row["permissions"]),
            builtin=row["builtin"],
            version=row["version"],
        )
    )


async def list_roles(request: web.Request) -> web.Response:
    e = edge(request)
    who = await _caller(request)
    await require(request, who, "users:read")
    rows = await identity.roles(e.pg, None if who.realm is Realm.PLATFORM else who.realm)
    return json_answer({"object": "list", "data": [_role_view(r) for r in rows], "has_more": False})


async def put_role(request: web.Request) -> web.Response:
    """Create or replace a custom role. Built-in roles are defined in code and read-only."""
    e = edge(request)
    body = await request.read()
    who = await _caller(request, body)
    await require(request, who, "roles:manage", PLATFORM_OWNED)
    role_id = request.match_info["id"]
    if not re.fullmatch(_ROLE_ID, role_id):
        raise invalid("invalid_field", "a role id is 3-64 of a-z, 0-9 and _", "roleId")
    req = decode(body, PutRole)
    realm = Realm(req.realm)
    try:
        check_role_permissions(realm, set(req.permissions))
    except RoleError as exc:
        raise invalid("invalid_permissions", str(exc), "permissions") from None
    async with e.pg.acquire() as conn, conn.transaction():
        before = await conn.fetchrow("SELECT * FROM roles WHERE id = $1 FOR UPDATE", role_id)
        if before is not None and before["builtin"]:
            raise invalid("builtin_role", "built-in roles cannot be changed", "roleId", 409)
        if before is not None and before["realm"] != realm.value:
            raise invalid("role_realm_mismatch", "a role's realm cannot change", "realm", 409)
        # A role's change reaches everyone who holds it: only what the changer holds may move.
        await _escalation(
            request,
            who,
            {*req.permissions, *(before["permissions"] if before else ())},
            "the role would give or take away permissions you do not hold",
            "roles:manage",
        )
        row = await identity.put_role(
            conn, role_id=role_id, realm=realm, name=req.name, permissions=req.permissions
        )
        await audit.append(
            conn,
            actor(request, who),
            "role.put",
            f"role:{role_id}",
            before=_role_view(before) if before else None,
            after=_role_view(row),
        )
    return json_answer(_role_view(row), 201 if before is None else 200)


async def get_settings(request: web.Request) -> web.Response:
    e = edge(request)
    who = await _caller(request)
    await require(request, who, "settings:read", PLATFORM_OWNED)
    version, current = await policy.current(e.pg)
    return json_answer(SettingsView("settings", version, msgspec.to_builtins(current)))


async def put_settings(request: web.Request) -> web.Response:
    """Change some or all settings; `version` must be the one read (else 409), so two admins
    cannot overwrite each other unseen."""
    e = edge(request)
    body = await request.read()
    who = await _caller(request, body)
    await require(request, who, "settings:write", PLATFORM_OWNED)
    req = decode(body, PutSettings)
    async with e.pg.acquire() as conn, conn.transaction():
        version, current = await policy.current(conn)
        if req.version != version:
            raise ApiError(
                409,
                "invalid_request_error",
                "version_conflict",
                f"the settings are at version {version}; read them again",
                "version",
            )
        merged = {**msgspec.to_builtins(current), **req.settings}
        try:
            updated = msgspec.convert(merged, PlatformSettings)
        except msgspec.ValidationError as exc:
            error = from_validation(exc)
            error.param = f"settings.{error.param}" if error.param else "settings"
            raise error from None
        if not await policy.save(conn, version, updated, who.actor):
            raise ApiError(
                409, "invalid_request_error", "version_conflict", "changed meanwhile", "version"
            )
        await audit.append(
            conn,
            actor(request, who),
            "settings.update",
            "platform_settings",
            before={"version": version, **msgspec.to_builtins(current)},
            after={"version": version + 1, **msgspec.to_builtins(updated)},
        )
    e.policy.forget()
    return json_answer(SettingsView("settings", version + 1, msgspec.to_builtins(updated)))


async def list_audit(request: web.Request) -> web.Response:
    """Newest first; filter by action (or its prefix, e.g. `auth`), actor, target and time
    (`since`/`until`, unix seconds); page with `starting_after` (a seq)."""
    e = edge(request)
    who = await _caller(request)
    await require(request, who, "audit:read", PLATFORM_OWNED)
    limit = page_limit(request, 20)
    since, until = int_query(request, "since"), int_query(request, "until")
    records = await audit.query(
        e.pg,
        action=request.query.get("action"),
        actor=request.query.get("actor"),
        target=request.query.get("target"),
        since_us=since * 1_000_000 if since is not None else None,
        until_us=until * 1_000_000 if until is not None else None,
        before_seq=int_query(request, "starting_after"),
        limit=limit + 1,
    )
    data = [{"object": "audit_record", **r} for r in records[:limit]]
    return json_answer({"object": "list", "data": data, "has_more": len(records) > limit})


async def verify_audit(request: web.Request) -> web.Response:
    e = edge(request)
    who = await _caller(request)
    await require(request, who, "audit:read", PLATFORM_OWNED)
    broken = await audit.verify(e.pg)
    return json_answer(
        {"object": "audit_verification", "intact": broken is None, "broken_at": broken}
    )


async def create_api_key(request: web.Request) -> web.Response:
    """A new signing key for a merchant; the secret is shown once. A key may be limited to
    some of the permissions a merchant's key can hold."""
    e = edge(request)
    body = await request.read()
    who = await _caller(request, body)
    merchant_id = request.match_info["id"]
    await require(request, who, "keys:manage", merchant_owned(merchant_id))
    if await e.merchants.merchant(merchant_id) is None:
        raise invalid("resource_missing", "no such merchant", "id", status=404)
    req = decode(body, CreateApiKey) if body else CreateApiKey()
    if req.permissions is not None:
        beyond = sorted(set(req.permissions) - API_KEY_PERMISSIONS)
        if beyond:
            raise invalid(
                "invalid_permissions", f"an API key cannot hold: {', '.join(beyond)}", "permissions"
            )
    permissions = sorted(set(req.permissions)) if req.permissions is not None else None
    async with e.pg.acquire() as conn, conn.transaction():
        key_id, secret = await add_api_key(conn, e.box, merchant_id, permissions)
        await audit.append(
            conn,
            actor(request, who),
            "key.create",
            f"api_key:{key_id}",
            after={"merchant_id": merchant_id, "permissions": permissions},
        )
    return json_answer(ApiKeyCreated(key_id, "api_key", merchant_id, secret, permissions), 201)
