"""The audit log in PostgreSQL: appended under a lock so the hash chain has one order, never
updated (a trigger refuses UPDATE, DELETE and TRUNCATE), read by admins with filters."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from domain import audit
from domain.access import Principal

_LOCK = "juhe.audit_log"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it, from where: a principal, or the system / a command-line operator."""

    id: str
    realm: str
    ip: str | None = None
    request_id: str | None = None

    @classmethod
    def of(cls, principal: Principal, ip: str | None, request_id: str | None) -> Actor:
        return cls(principal.actor, principal.realm.value, ip, request_id)


async def append(
    conn: asyncpg.Connection | asyncpg.Pool,
    actor: Actor,
    action: str,
    target: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> int:
    """Append one record; returns its seq. Inside the caller's transaction when given a
    connection, so the record and the change it describes commit together."""
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as held, held.transaction():
            return await _append(held, actor, action, target, before, after)
    return await _append(conn, actor, action, target, before, after)


async def _append(
    conn: asyncpg.Connection,
    actor: Actor,
    action: str,
    target: str | None,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> int:
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", _LOCK)
    last = await conn.fetchrow("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
    record = {
        "seq": last["seq"] + 1 if last else 1,
        "at_us": time.time_ns() // 1000,
        "actor": actor.id,
        "actor_realm": actor.realm,
        "action": action,
        "target": target,
        "before": audit.prepare(before),
        "after": audit.prepare(after),
        "ip": actor.ip,
        "request_id": actor.request_id,
    }
    prev_hash = last["hash"] if last else audit.GENESIS
    await conn.execute(
        """INSERT INTO audit_log (seq, at_us, actor, actor_realm, action, target, before, after,
                                  ip, request_id, prev_hash, hash)
           VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9, $10, $11, $12)""",
        record["seq"],
        record["at_us"],
        record["actor"],
        record["actor_realm"],
        record["action"],
        record["target"],
        _json(record["before"]),
        _json(record["after"]),
        record["ip"],
        record["request_id"],
        prev_hash,
        audit.link(prev_hash, record),
    )
    return record["seq"]


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _record(row: asyncpg.Record) -> dict[str, Any]:
    record = dict(row)
    for key in ("before", "after"):
        record[key] = orjson.loads(record[key]) if record[key] is not None else None
    return record


async def query(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    action: str | None = None,
    actor: str | None = None,
    target: str | None = None,
    since_us: int | None = None,
    until_us: int | None = None,
    before_seq: int | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Newest first; `before_seq` is the cursor (the last seq of the previous page)."""
    rows = await conn.fetch(
        """SELECT * FROM audit_log
           WHERE ($1::text IS NULL OR action = $1 OR action LIKE $1 || '.%')
             AND ($2::text IS NULL OR actor = $2)
             AND ($3::text IS NULL OR target = $3)
             AND ($4::bigint IS NULL OR at_us >= $4)
             AND ($5::bigint IS NULL OR at_us < $5)
             AND ($6::bigint IS NULL OR seq < $6)
           ORDER BY seq DESC LIMIT $7""",
        action,
        actor,
        target,
        since_us,
        until_us,
        before_seq,
        limit,
    )
    return [_record(r) for r in rows]


async def verify(conn: asyncpg.Connection | asyncpg.Pool, page: int = 5000) -> int | None:
    """Walk the whole chain; the seq of the first record that does not hold, or None."""
    prev_hash, after = audit.GENESIS, 0
    while True:
        rows = await conn.fetch(
            "SELECT * FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2", after, page
        )
        if not rows:
            return None
        records = [_record(r) for r in rows]
        if records[0]["seq"] != after + 1:
            return after + 1
        broken = audit.first_broken(records, prev_hash)
        if broken is not None:
            return broken
        prev_hash, after = records[-1]["hash"], records[-1]["seq"]
