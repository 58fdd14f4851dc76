"""Users, roles, refresh-token families, MFA state and signing keys in PostgreSQL.

Every state change is a guarded statement (`… WHERE used_at IS NULL`, `… WHERE mfa_last_step
< $n`), so two concurrent requests cannot both spend one refresh token or one TOTP code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from domain.access import BUILTIN_ROLES, PLATFORM_ADMIN, Realm
from domain.credentials import hash_password
from domain.ids import new_id
from domain.tokens import SigningKey, new_signing_key
from infra.sealing import SIGNING_KEY, TOTP_PENDING
from infra.secretbox import SecretBox

Conn = asyncpg.Connection | asyncpg.Pool


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    realm: Realm
    org_id: str | None
    password_hash: str
    status: str
    failed_logins: int  # in a row, from any client: flags a burst (sign-ins are throttled in Redis)
    mfa_secret: str | None  # as stored (sealed): open with `infra.sealing.TOTP`
    mfa_pending: str | None  # as stored (sealed): open with `infra.sealing.TOTP_PENDING`
    mfa_enabled: bool
    mfa_last_step: int
    roles: tuple[str, ...]
    permissions: frozenset[str]
    org_requires_mfa: bool


_USER = """
SELECT u.*,
       coalesce(array_agg(r.id ORDER BY r.id) FILTER (WHERE r.id IS NOT NULL), '{}') AS role_ids,
       coalesce(array_agg(DISTINCT p) FILTER (WHERE p IS NOT NULL), '{}') AS perms,
       coalesce(m.mfa_required, false) AS org_mfa
FROM users u
LEFT JOIN user_roles ur ON ur.user_id = u.id
LEFT JOIN roles r ON r.id = ur.role_id AND r.realm = u.realm
LEFT JOIN LATERAL unnest(r.permissions) AS p ON true
LEFT JOIN merchants m ON u.realm = 'merchant' AND m.id = u.org_id
WHERE $WHERE
GROUP BY u.id, m.mfa_required
"""


def _select_users(where: str) -> str:
    return _USER.replace("$WHERE", where)


def _user(row: asyncpg.Record) -> User:
    return User(
        id=row["id"],
        email=row["email"],
        realm=Realm(row["realm"]),
        org_id=row["org_id"],
        password_hash=row["password_hash"],
        status=row["status"],
        failed_logins=row["failed_logins"],
        mfa_secret=row["mfa_secret"],
        mfa_pending=row["mfa_pending"],
        mfa_enabled=row["mfa_enabled"],
        mfa_last_step=row["mfa_last_step"],
        roles=tuple(dict.fromkeys(row["role_ids"])),
        permissions=frozenset(row["perms"]),
        org_requires_mfa=row["org_mfa"],
    )


async def sign_in_subject(conn: Conn, email: str, ip: str) -> tuple[User | None, bool]:
    """The user an e-mail address names (if any) and whether they signed in from this IP
    before, in one query, so an unknown address costs the same round trips as a known one."""
    row = await conn.fetchrow(
        f"""SELECT q.*, EXISTS (SELECT 1 FROM known_logins k
                                WHERE k.user_id = q.id AND k.ip = $2) AS known_client
            FROM ({_select_users("lower(u.email) = lower($1)")}) q""",
        email,
        ip,
    )
    return (_user(row), row["known_client"]) if row else (None, False)


async def user_by_id(conn: Conn, user_id: str) -> User | None:
    row = await conn.fetchrow(_select_users("u.id = $1"), user_id)
    return _user(row) if row else None


async def list_users(
    conn: Conn, *, realm: Realm | None, org_id: str | None, after: str | None, limit: int
) -> list[User]:
    """Newest first (ids are time-ordered); `after` is the last id of the previous page."""
    rows = await conn.fetch(
        _select_users(
            "($1::text IS NULL OR u.realm = $1) AND ($2::text IS NULL OR u.org_id = $2) "
            "AND ($3::text IS NULL OR u.id < $3)"
        )
        + " ORDER BY u.id DESC LIMIT $4",
        realm.value if realm else None,
        org_id,
        after,
        limit,
    )
    return [_user(r) for r in rows]


async def insert_user(
    conn: Conn, *, user_id: str, email: str, realm: Realm, org_id: str | None, password_hash: str
) -> bool:
    """False when the e-mail address is taken."""
    try:
        await conn.execute(
            "INSERT INTO users (id, email, realm, org_id, password_hash) "
            "VALUES ($1, $2, $3, $4, $5)",
            user_id,
            email,
            realm.value,
            org_id,
            password_hash,
        )
    except asyncpg.UniqueViolationError:
        return False
    return True


async def create_user(
    conn: asyncpg.Connection,
    *,
    email: str,
    realm: Realm,
    org_id: str | None,
    password: str,
    roles: list[str],
) -> str | None:
    """A new user with these roles, in the caller's transaction; None when the e-mail address
    is taken."""
    user_id = new_id("usr")
    created = await insert_user(
        conn,
        user_id=user_id,
        email=email,
        realm=realm,
        org_id=org_id,
        password_hash=hash_password(password),
    )
    if not created:
        return None
    await set_roles(conn, user_id, roles)
    return user_id


async def set_roles(conn: asyncpg.Connection, user_id: str, role_ids: list[str]) -> None:
    await conn.execute("DELETE FROM user_roles WHERE user_id = $1", user_id)
    await conn.executemany(
        "INSERT INTO user_roles (user_id, role_id) VALUES ($1, $2)",
        [(user_id, r) for r in role_ids],
    )


async def other_platform_admins(conn: asyncpg.Connection, user_id: str) -> int:
    """Active platform admins besides this user, counted under a lock held to the end of the
    caller's transaction, so two admins disabling each other cannot both go ahead."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('juhe.platform_admins'))")
    return await conn.fetchval(
        """SELECT count(*) FROM users u JOIN user_roles r ON r.user_id = u.id
           WHERE r.role_id = $2 AND u.realm = 'platform' AND u.status = 'active'
             AND u.id <> $1""",
        user_id,
        PLATFORM_ADMIN,
    )


async def set_status(conn: Conn, user_id: str, status: str) -> None:
    await conn.execute(
        "UPDATE users SET status = $2, failed_logins = 0 WHERE id = $1", user_id, status
    )


async def record_failure(conn: Conn, user_id: str) -> int:
    """Count a failed sign-in; the failures in a row so far."""
    return await conn.fetchval(
        "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = $1 RETURNING failed_logins",
        user_id,
    )


async def record_success(conn: Conn, user_id: str) -> None:
    await conn.execute("UPDATE users SET failed_logins = 0 WHERE id = $1", user_id)


async def note_login_place(
    conn: asyncpg.Pool, user_id: str, ip: str, country: str
) -> tuple[bool, bool]:
    """Remember where a sign-in came from: (new ip for the account, new country for it)."""
    async with conn.acquire() as tx, tx.transaction():
        seen = await tx.fetch("SELECT ip, country FROM known_logins WHERE user_id = $1", user_id)
        await tx.execute(
            "INSERT INTO known_logins (user_id, ip, country) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING",
            user_id,
            ip,
            country,
        )
    if not seen:
        return False, False  # the first sign-in is where the account lives, not an anomaly
    return ip not in {r["ip"] for r in seen}, bool(country) and country not in {
        r["country"] for r in seen
    }


async def note_login_device(conn: asyncpg.Pool, user_id: str, device_digest: str) -> bool:
    """Remember a device an account signed in from: whether it is new to an account that has
    signed in from others (its first device is where it lives, not an anomaly)."""
    async with conn.acquire() as tx, tx.transaction():
        seen = await tx.fetch("SELECT device_digest FROM known_devices WHERE user_id = $1", user_id)
        await tx.execute(
            "INSERT INTO known_devices (user_id, device_digest) VALUES ($1, $2) "
            "ON CONFLICT DO NOTHING",
            user_id,
            device_digest,
        )
    return bool(seen) and device_digest not in {r["device_digest"] for r in seen}


# MFA ---------------------------------------------------------------------------------------


async def start_mfa(
    conn: asyncpg.Pool, box: SecretBox, user_id: str, secret: str, recovery_digests: list[str]
) -> None:
    """A secret (sealed) and recovery codes held pending: until a code from the new secret is
    verified, the current factor (if any) stays the one sign-in asks for."""
    async with conn.acquire() as tx, tx.transaction():
        await tx.execute(
            "UPDATE users SET mfa_pending = $2 WHERE id = $1",
            user_id,
            TOTP_PENDING.seal(box, user_id, secret),
        )
        await tx.execute("DELETE FROM recovery_codes WHERE user_id = $1 AND pending", user_id)
        await tx.executemany(
            "INSERT INTO recovery_codes (user_id, digest) VALUES ($1, $2)",
            [(user_id, d) for d in recovery_digests],
        )


async def confirm_mfa(conn: asyncpg.Pool, user_id: str, pending: str, step: int) -> bool:
    """The pending secret (`pending`, as stored) becomes the factor, its recovery codes replace
    the old ones; False if the enrolment changed meanwhile."""
    async with conn.acquire() as tx, tx.transaction():
        done = await tx.fetchval(
            "UPDATE users SET mfa_secret = mfa_pending, mfa_pending = NULL, mfa_enabled = true, "
            "mfa_last_step = greatest(mfa_last_step, $3) WHERE id = $1 AND mfa_pending = $2 "
            "RETURNING true",
            user_id,
            pending,
            step,
        )
        if not done:
            return False
        await tx.execute("DELETE FROM recovery_codes WHERE user_id = $1 AND NOT pending", user_id)
        await tx.execute("UPDATE recovery_codes SET pending = false WHERE user_id = $1", user_id)
    return True


async def spend_totp_step(conn: Conn, user_id: str, step: int) -> bool:
    """Take a TOTP time step for this user; False if it (or a later one) was used already."""
    return (
        await conn.fetchval(
            "UPDATE users SET mfa_last_step = $2 WHERE id = $1 AND mfa_last_step < $2 "
            "RETURNING true",
            user_id,
            step,
        )
        is not None
    )


async def spend_recovery_code(conn: Conn, user_id: str, digest: str) -> bool:
    return (
        await conn.fetchval(
            "UPDATE recovery_codes SET used_at = now() "
            "WHERE user_id = $1 AND digest = $2 AND used_at IS NULL AND NOT pending "
            "RETURNING true",
            user_id,
            digest,
        )
        is not None
    )


# Refresh tokens ------------------------------------------------------------------------------


async def insert_refresh(
    conn: Conn,
    *,
    token_id: str,
    family_id: str,
    user_id: str,
    digest: str,
    mfa: bool,
    expires_at: datetime,
    step_up: bool = False,
) -> None:
    await conn.execute(
        "INSERT INTO refresh_tokens (id, family_id, user_id, digest, mfa, expires_at, step_up) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7)",
        token_id,
        family_id,
        user_id,
        digest,
        mfa,
        expires_at,
        step_up,
    )


@dataclass(frozen=True, slots=True)
class SpentRefresh:
    outcome: str  # "ok", "unknown", "expired", "revoked", "reused"
    user_id: str | None = None
    family_id: str | None = None
    mfa: bool = False
    step_up: bool = False


async def spend_refresh(conn: Conn, token_id: str, digest: str) -> SpentRefresh:
    """Spend a refresh token. Presenting one already spent means it was stolen or replayed:
    the whole family (that sign-in and every token it led to) is revoked."""
    row = await conn.fetchrow(
        "SELECT family_id, user_id, digest, mfa, step_up, expires_at, used_at, revoked_at "
        "FROM refresh_tokens WHERE id = $1",
        token_id,
    )
    if row is None or row["digest"] != digest:
        return SpentRefresh("unknown")
    known = SpentRefresh("ok", row["user_id"], row["family_id"], row["mfa"], row["step_up"])
    if row["revoked_at"] is not None:
        return SpentRefresh("revoked", known.user_id, known.family_id)
    if row["expires_at"] <= datetime.now(UTC):
        return SpentRefresh("expired", known.user_id, known.family_id)
    spent = await conn.fetchval(
        "UPDATE refresh_tokens SET used_at = now() "
        "WHERE id = $1 AND used_at IS NULL AND revoked_at IS NULL RETURNING true",
        token_id,
    )
    if spent is None:
        await revoke_family(conn, row["family_id"])
        return SpentRefresh("reused", known.user_id, known.family_id)
    return known


async def revoke_family(conn: Conn, family_id: str) -> None:
    await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
        family_id,
    )


async def revoke_user_sessions(conn: Conn, user_id: str) -> None:
    await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
        user_id,
    )


async def session_revoked(conn: Conn, family_id: str) -> bool:
    """An access token's session ends with its family (logout, reuse, a disabled user)."""
    return bool(
        await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM refresh_tokens "
            "WHERE family_id = $1 AND revoked_at IS NOT NULL)",
            family_id,
        )
    )


# Roles ---------------------------------------------------------------------------------------


async def sync_builtin_roles(conn: Conn) -> None:
    """The built-in roles as the code defines them; custom roles are left alone."""
    await conn.executemany(
        """INSERT INTO roles (id, realm, name, permissions, builtin) VALUES ($1, $2, $3, $4, true)
           ON CONFLICT (id) DO UPDATE SET realm = EXCLUDED.realm, name = EXCLUDED.name,
               permissions = EXCLUDED.permissions, builtin = true,
               version = roles.version
                   + (roles.permissions IS DISTINCT FROM EXCLUDED.permissions)::int
           WHERE roles.builtin""",
        [(r.id, r.realm.value, r.name, sorted(r.permissions)) for r in BUILTIN_ROLES],
    )


async def roles(conn: Conn, realm: Realm | None = None) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM roles WHERE $1::text IS NULL OR realm = $1 ORDER BY realm, id",
        realm.value if realm else None,
    )


async def role(conn: Conn, role_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM roles WHERE id = $1", role_id)


async def put_role(
    conn: Conn, *, role_id: str, realm: Realm, name: str, permissions: list[str]
) -> asyncpg.Record:
    return await conn.fetchrow(
        """INSERT INTO roles (id, realm, name, permissions) VALUES ($1, $2, $3, $4)
           ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name,
               permissions = EXCLUDED.permissions, version = roles.version + 1,
               updated_at = now()
           RETURNING *""",
        role_id,
        realm.value,
        name,
        sorted(set(permissions)),
    )


# Signing keys --------------------------------------------------------------------------------


async def signing_keys(
    conn: Conn, box: SecretBox, include_retired_since_s: int
) -> list[SigningKey]:
    """Active keys, newest first, plus keys retired recently enough that tokens they signed
    may still be alive; private keys opened."""
    rows = await conn.fetch(
        "SELECT kid, private_pem, public_pem FROM signing_keys "
        "WHERE retired_at IS NULL OR retired_at > now() - make_interval(secs => $1) "
        "ORDER BY retired_at IS NULL DESC, created_at DESC",
        include_retired_since_s,
    )
    return [
        SigningKey(r["kid"], SIGNING_KEY.open(box, r["kid"], r["private_pem"]), r["public_pem"])
        for r in rows
    ]


async def _insert_signing_key(tx: asyncpg.Connection, box: SecretBox) -> SigningKey:
    """A new key, its private half sealed (the public half stays plain)."""
    key = new_signing_key()
    await tx.execute(
        "INSERT INTO signing_keys (kid, private_pem, public_pem) VALUES ($1, $2, $3)",
        key.kid,
        SIGNING_KEY.seal(box, key.kid, key.private_pem),
        key.public_pem,
    )
    return key


async def rotate_signing_key(conn: asyncpg.Pool, box: SecretBox) -> SigningKey:
    """A new active key; the previous ones are retired (still accepted until their tokens
    expire)."""
    async with conn.acquire() as tx, tx.transaction():
        await tx.execute("UPDATE signing_keys SET retired_at = now() WHERE retired_at IS NULL")
        return await _insert_signing_key(tx, box)


async def ensure_signing_key(conn: asyncpg.Pool, box: SecretBox) -> None:
    """A fresh installation gets its first key; concurrent starters agree through a lock."""
    async with conn.acquire() as tx, tx.transaction():
        await tx.execute("SELECT pg_advisory_xact_lock(hashtext('juhe.signing_keys'))")
        if not await tx.fetchval("SELECT EXISTS (SELECT 1 FROM signing_keys)"):
            await _insert_signing_key(tx, box)
