"""Platform settings in PostgreSQL: one row per version, the newest wins."""

from __future__ import annotations

import asyncpg
import msgspec
import orjson

from domain.policy import PlatformSettings, stored


async def current(conn: asyncpg.Connection | asyncpg.Pool) -> tuple[int, PlatformSettings]:
    """(version, settings); version 0 is the built-in defaults, before any change."""
    row = await conn.fetchrow(
        "SELECT version, doc FROM platform_settings ORDER BY version DESC LIMIT 1"
    )
    if row is None:
        return 0, PlatformSettings()
    return row["version"], stored(orjson.loads(row["doc"]))


async def save(
    conn: asyncpg.Connection, expected_version: int, settings: PlatformSettings, changed_by: str
) -> bool:
    """Store the next version; False if another change got there first (the primary key on
    version makes two writers of one version impossible)."""
    try:
        await conn.execute(
            "INSERT INTO platform_settings (version, doc, changed_by) VALUES ($1, $2::jsonb, $3)",
            expected_version + 1,
            orjson.dumps(msgspec.to_builtins(settings)).decode(),
            changed_by,
        )
    except asyncpg.UniqueViolationError:
        return False
    return True
