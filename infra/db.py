"""PostgreSQL pool and migrations.

Migrations are the numbered plain-SQL files in `sql/`, applied in order under an advisory lock,
each in its own transaction and recorded with its checksum, so running twice (or from two
processes at once) is safe and an edited, already-applied file is refused loudly.
"""

from __future__ import annotations

import hashlib
import os
from decimal import Decimal
from pathlib import Path

import asyncpg

MIGRATIONS = Path(os.environ.get("JUHE_SQL_DIR", Path(__file__).resolve().parent.parent / "sql"))
_LOCK_KEY = 0x4A554845  # "JUHE"


def _numeric(text: str) -> int | Decimal:
    """Amounts are integral numerics; return them as exact ints, anything else as Decimal."""
    return int(text) if text.lstrip("-").isdigit() else Decimal(text)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "numeric", encoder=str, decoder=_numeric, schema="pg_catalog", format="text"
    )
    await conn.set_type_codec(
        "jsonb", encoder=lambda v: v, decoder=lambda v: v, schema="pg_catalog", format="text"
    )


async def create_pool(dsn: str, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection
    )


async def connect(dsn: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn


class MigrationError(RuntimeError):
    pass


def migration_files(directory: Path = MIGRATIONS) -> list[tuple[str, str, str]]:
    """(version, checksum, sql) for each `NNN_name.sql`, in order."""
    found = []
    for path in sorted(directory.glob("[0-9][0-9][0-9]_*.sql")):
        text = path.read_text()
        found.append((path.stem, hashlib.sha256(text.encode()).hexdigest(), text))
    return found


async def migrate(dsn: str, directory: Path = MIGRATIONS) -> list[str]:
    """Apply what is missing; return the versions applied by this call."""
    conn = await asyncpg.connect(dsn)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version text PRIMARY KEY,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {
            r["version"]: r["checksum"]
            for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        for version, checksum, sql in migration_files(directory):
            if version in done:
                if done[version] != checksum:
                    raise MigrationError(f"migration {version} changed after it was applied")
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
                    version,
                    checksum,
                )
            applied_now.append(version)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
        await conn.close()
    return applied_now


async def ensure_database(dsn: str) -> None:
    """Create the target database if the server lacks it (a fresh machine, a test run)."""
    name = dsn.rsplit("/", 1)[1].split("?", 1)[0]
    admin_dsn = dsn.rsplit("/", 1)[0] + "/postgres"
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
