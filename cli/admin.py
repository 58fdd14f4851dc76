"""`juhe admin …`: the bootstrap path for the first platform administrator, and key rotation.

Both are audited with the actor `cli:<os user>`, like any change made through the API.
"""

from __future__ import annotations

import getpass
import os
from typing import Any

import asyncpg

from domain.access import Realm
from domain.credentials import check_password
from infra import audit, db, identity, policy, sealing
from infra.secretbox import SecretBox


def _cli_actor() -> audit.Actor:
    return audit.Actor(f"cli:{getpass.getuser()}", "platform")


class AdminError(RuntimeError):
    pass


async def create_superuser(pool: asyncpg.Pool, email: str, password: str) -> str:
    """A platform user with the platform_admin role; MFA enrolment is required at first
    sign-in (every platform user must have it)."""
    _, settings = await policy.current(pool)
    check_password(password, settings.password_policy, email)
    await identity.sync_builtin_roles(pool)
    async with pool.acquire() as conn, conn.transaction():
        user_id = await identity.create_user(
            conn,
            email=email,
            realm=Realm.PLATFORM,
            org_id=None,
            password=password,
            roles=["platform_admin"],
        )
        if user_id is None:
            raise AdminError(f"a user with the e-mail address {email} exists")
        await audit.append(
            conn,
            _cli_actor(),
            "user.create",
            f"user:{user_id}",
            after={"email": email, "realm": "platform", "roles": ["platform_admin"]},
        )
    return user_id


async def rotate_signing_key(pool: asyncpg.Pool, box: SecretBox) -> str:
    """A new JWT signing key, its private half sealed; tokens signed by the old one stay valid
    until they expire."""
    key = await identity.rotate_signing_key(pool, box)
    await audit.append(pool, _cli_actor(), "key.rotate", f"signing_key:{key.kid}")
    return key.kid


async def reseal_secrets(pool: asyncpg.Pool, box: SecretBox) -> dict[str, int]:
    """Every secret sealed at rest moved to the active key, so an old key can be retired."""
    counts = await sealing.reseal(pool, box)
    await audit.append(pool, _cli_actor(), "secrets.reseal", "secrets", after=counts)
    return counts


async def run(dsn: str, box: SecretBox, action: str, email: str | None) -> dict[str, Any]:
    await db.ensure_database(dsn)
    await db.migrate(dsn)
    pool = await db.create_pool(dsn, 1, 2)
    try:
        if action == "create-superuser":
            assert email is not None
            password = os.environ.get("JUHE_ADMIN_PASSWORD") or getpass.getpass("Password: ")
            return {"user_id": await create_superuser(pool, email, password), "email": email}
        if action == "reseal-secrets":
            return {"resealed": await reseal_secrets(pool, box)}
        return {"kid": await rotate_signing_key(pool, box)}
    finally:
        await pool.close()
