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
    purpose: str | None  # the context's first part; None: the row id alone

    def context(self, row_id: str) -> str:
        return row_id if self.purpose is None else f"{self.purpose}:{row_id}"

    def seal(self, box: SecretBox, row_id: str, plaintext: str) -> str:
        return box.seal(plaintext, self.context(row_id))

    def seal_optional(self, box: SecretBox, row_id: str, plaintext: str | None) -> str | None:
        return None if plaintext is None else self.seal(box, row_id, plaintext)

    def open(self, box: SecretBox, row_id: str, stored: str) -> str:
        return box.open_or_plain(stored, self.context(row_id))


TOTP = SealedColumn("users", "id", "mfa_secret", "totp")
# The same context as TOTP: confirming an enrolment copies the sealed value across in SQL.
TOTP_PENDING = SealedColumn("users", "id", "mfa_pending", "totp")
SIGNING_KEY = SealedColumn("signing_keys", "kid", "private_pem", "signing_key")
API_KEY = SealedColumn("api_keys", "key_id", "secret", "api_key")
WEBHOOK = SealedColumn("merchants", "id", "webhook_secret", "webhook")
# The customer's personal data a payment carries, sealed by the gateway before the intent is
# written anywhere (Redis, RabbitMQ, PostgreSQL); opened only by the risk pool (lists, velocity).
CUSTOMER_EMAIL = SealedColumn("payments", "id", "customer_email", "customer_email")
CUSTOMER_IP = SealedColumn("payments", "id", "customer_ip", "customer_ip")
COLUMNS = (TOTP, TOTP_PENDING, SIGNING_KEY, API_KEY, WEBHOOK, CUSTOMER_EMAIL, CUSTOMER_IP)
# Sealed since they were first stored: never plaintext, but resealed with the rest.
BANK_ACCOUNT = SealedColumn("merchant_kyc", "merchant_id", "bank_account", None)
CHANNEL_CREDENTIALS = SealedColumn("channels", "code", "credentials", "channel")
PAYOUT_ACCOUNT = SealedColumn("payout_accounts", "id", "details", "payout_account")
EVERY_COLUMN = (*COLUMNS, BANK_ACCOUNT, CHANNEL_CREDENTIALS, PAYOUT_ACCOUNT)


Conn = asyncpg.Connection | asyncpg.Pool


async def _rewrite(conn: Conn, box: SecretBox, c: SealedColumn, skip_prefix: str) -> int:
    """Seal again, with the active key, every value of the column not starting with
    `skip_prefix`; the number rewritten. Each update is guarded by the value it replaces, so a
    concurrent run or a concurrent change to the row is never overwritten."""
    rows = await conn.fetch(
        f"SELECT {c.id_column} AS id, {c.column} AS value FROM {c.table} "
        f"WHERE {c.column} IS NOT NULL AND NOT starts_with({c.column}, $1)",
        skip_prefix,
    )
    if not rows:
        return 0
    status = await conn.execute(
        f"UPDATE {c.table} t SET {c.column} = u.sealed "
        "FROM unnest($1::text[], $2::text[], $3::text[]) AS u(id, old, sealed) "
        f"WHERE t.{c.id_column} = u.id AND t.{c.column} = u.old",
        [r["id"] for r in rows],
        [r["value"] for r in rows],
        [c.seal(box, r["id"], c.open(box, r["id"], r["value"])) for r in rows],
    )
    return int(status.rsplit(" ", 1)[1])


async def seal_legacy(conn: Conn, box: SecretBox) -> int:
    """Seal every value still in plaintext; the number sealed. Idempotent: sealed values are
    left alone."""
    return sum([await _rewrite(conn, box, c, SEALED_PREFIX) for c in COLUMNS])


async def reseal(conn: Conn, box: SecretBox) -> dict[str, int]:
    """After a key rotation (every process has the new key, and it is active): every sealed
    value not under the active key is sealed again with it, so the old key can be retired.
    The number rewritten per column."""
    return {
        f"{c.table}.{c.column}": await _rewrite(conn, box, c, box.active_prefix)
        for c in EVERY_COLUMN
    }
