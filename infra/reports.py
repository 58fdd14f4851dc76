"""The rows the platform's reports are computed from (domain/reports.py): postings summed per
account, payments posted per channel and method, refunds posted, over a time window."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from domain.reports import AccountBalance, RefundRow, VolumeRow

_MOVEMENTS = """SELECT a.name, a.currency, sum(p.amount) AS total
    FROM postings p JOIN ledger_accounts a ON a.id = p.account_id
    JOIN journal_entries e ON e.id = p.entry_id
    WHERE ($1::timestamptz IS NULL OR e.created_at >= $1) AND e.created_at < $2
      AND ($3::text IS NULL OR a.currency = $3)
    GROUP BY a.name, a.currency"""


async def movements(
    pg: asyncpg.Pool, since: datetime | None, until: datetime, currency: str | None = None
) -> list[AccountBalance]:
    """Each account's net posted amount in [since, until): its balance when `since` is None."""
    rows = await pg.fetch(_MOVEMENTS, since, until, currency)
    return [AccountBalance(r["name"], r["currency"], int(r["total"])) for r in rows]


async def volumes(
    pg: asyncpg.Pool, since: datetime, until: datetime, currency: str | None
) -> list[VolumeRow]:
    """Payments whose capture was posted in [since, until), by channel and method."""
    rows = await pg.fetch(
        """SELECT COALESCE(p.channel, '') AS channel, COALESCE(p.method, '') AS method,
                  p.currency, count(*) AS n, sum(p.amount) AS volume
           FROM journal_entries e JOIN payments p ON p.id = e.ref
           WHERE e.kind = 'payment' AND e.created_at >= $1 AND e.created_at < $2
             AND ($3::text IS NULL OR p.currency = $3)
           GROUP BY 1, 2, 3""",
        since,
        until,
        currency,
    )
    return [
        VolumeRow(r["channel"], r["method"], r["currency"], r["n"], int(r["volume"])) for r in rows
    ]


async def refunds(
    pg: asyncpg.Pool, since: datetime, until: datetime, currency: str | None
) -> list[RefundRow]:
    """Refunds whose reversal was posted in [since, until)."""
    rows = await pg.fetch(
        """SELECT r.currency, count(*) AS n, sum(r.amount) AS amount
           FROM journal_entries e JOIN refunds r ON r.id = e.ref
           WHERE e.kind = 'refund' AND e.created_at >= $1 AND e.created_at < $2
             AND ($3::text IS NULL OR r.currency = $3)
           GROUP BY r.currency""",
        since,
        until,
        currency,
    )
    return [RefundRow(r["currency"], r["n"], int(r["amount"])) for r in rows]
