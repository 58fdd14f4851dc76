"""The secrets older versions stored in plaintext, now sealed at rest: where each lives, the
context it is sealed to, and the `juhe migrate` step that seals what is still plaintext.

Each value is sealed to its purpose and row (`totp:<user id>`, `api_key:<key id>`, …), so one
copied to another row, or another column, does not open there. Readers open with
`SecretBox.open_or_plain`: until the migration step has run, a plaintext value still works.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from infra.secretbox import SEALED_PREFIX, SecretBox


@dataclass(frozen=True, slots=True)
class SealedColumn:
    table: str
    id_column: str
    column: str
    purpose: str  # the context's first part

    def context(self, row_id: str) -> str:
        return f"{self.purpose}:{row_id}"

    def seal(self, box: SecretBox, row_id: str, plaintext: str) -> str:
        return box.seal(plaintext, self.context(row_id))

    def open(self, box: SecretBox, row_id: str, stored: str) -> str:
        return box.open_or_plain(stored, self.context(row_id))


TOTP = SealedColumn("users", "id", "mfa_secret", "totp")
# The same context as TOTP: confirming an enrolment copies the sealed value across in SQL.
TOTP_PENDING = SealedColumn("users", "id", "mfa_pending", "totp")
SIGNING_KEY = SealedColumn("signing_keys", "kid", "private_pem", "signing_key")
API_KEY = SealedColumn("api_keys", "key_id", "secret", "api_key")
WEBHOOK = SealedColumn("merchants", "id", "webhook_secret", "webhook")
COLUMNS = (TOTP, TOTP_PENDING, SIGNING_KEY, API_KEY, WEBHOOK)


async def seal_legacy(conn: asyncpg.Connection | asyncpg.Pool, box: SecretBox) -> int:
    """Seal every value still in plaintext; the number sealed. Idempotent: sealed values are
    left alone, and each update is guarded by the plaintext it replaces, so a concurrent run
    or a concurrent change to the row is never overwritten."""
    sealed = 0
    for c in COLUMNS:
        rows = await conn.fetch(
            f"SELECT {c.id_column} AS id, {c.column} AS value FROM {c.table} "
            f"WHERE {c.column} IS NOT NULL AND NOT starts_with({c.column}, $1)",
            SEALED_PREFIX,
        )
        if not rows:
            continue
        status = await conn.execute(
            f"UPDATE {c.table} t SET {c.column} = u.sealed "
            "FROM unnest($1::text[], $2::text[], $3::text[]) AS u(id, plain, sealed) "
            f"WHERE t.{c.id_column} = u.id AND t.{c.column} = u.plain",
            [r["id"] for r in rows],
            [r["value"] for r in rows],
            [c.seal(box, r["id"], r["value"]) for r in rows],
        )
        sealed += int(status.rsplit(" ", 1)[1])
    return sealed
