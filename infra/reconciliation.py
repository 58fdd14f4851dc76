"""Reconciliation runs in PostgreSQL: Juhe's side of a channel's day, the run and its
discrepancies (the matching itself is `domain.reconciliation`).

A run is named by (channel, day, the file's SHA-256): the same file again answers the run it
made and writes nothing; the insert's unique key settles two at once.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import asyncpg
import orjson

from adapters.base import ChannelError, Statement, StatementPublishing
from domain.fx import Conversion
from domain.ids import new_id
from domain.ledger import Posting, channel_cost
from domain.reconciliation import Action, Kind, Line, Outcome, due_days, outcome_of, reconcile
from infra import audit, store
from infra.channels import ChannelRegistry

Conn = asyncpg.Connection | asyncpg.Pool
log = logging.getLogger("juhe.reconciliation")
_FOLLOW_FROM_END = frozenset({Kind.STATUS, Kind.FEE})
ADJUSTMENT = "recon_adjustment"  # journal entry kind; its ref is the discrepancy id


class StatementUnavailable(ChannelError):
    """No statement to reconcile: an unknown channel, or one that publishes none."""


async def fetch(registry: ChannelRegistry, channel: str, day: date) -> Statement:
    """The channel's statement for the day, through its adapter."""
    adapter = registry.adapter(channel)
    if adapter is None:
        raise StatementUnavailable("unknown_channel", f"no channel {channel!r}")
    if not isinstance(adapter, StatementPublishing):
        raise StatementUnavailable(
            "statements_unsupported", f"channel {channel!r} publishes no statements"
        )
    return await adapter.statement(day)


async def juhe_lines(conn: Conn, channel: str, day: date, lines: Sequence[Line]) -> list[Line]:
    """Juhe's payments and refunds through `channel` created on `day` (UTC), and any other a
    statement line names (by the channel's reference or Juhe's id, whatever its day or status,
    so that "failed here, paid there" is found). A payment's fee is the cost Juhe posted. The
    money a resolution returned at the channel (`refund`) is a refund of Juhe's: its id is the
    discrepancy's."""
    start = datetime.combine(day, time(), UTC)
    end = start + timedelta(days=1)
    refs = [line.reference for line in lines]
    ids = [line.juhe_id for line in lines]
    rows = await conn.fetch(
        """SELECT 'payment' AS type, p.id, p.channel_order_id AS reference, p.amount, p.currency,
                  p.status, p.created_at, p.fx, p.amount AS whole, NULL AS reserved_before,
                  coalesce((SELECT po.amount FROM journal_entries e
                              JOIN postings po ON po.entry_id = e.id
                              JOIN ledger_accounts a ON a.id = po.account_id
                             WHERE e.kind = 'payment' AND e.ref = p.id AND a.name = $6), 0) AS fee
             FROM payments p
            WHERE p.channel = $1 AND ((p.created_at >= $2 AND p.created_at < $3)
                  OR p.channel_order_id = ANY($4) OR p.id = ANY($5))
           UNION ALL
           SELECT 'refund', r.id, r.channel_refund_id, r.amount, r.currency, r.status,
                  r.created_at, p.fx, p.amount, r.reserved_before, 0
             FROM refunds r JOIN payments p ON p.id = r.payment_id
            WHERE p.channel = $1 AND ((r.created_at >= $2 AND r.created_at < $3)
                  OR r.channel_refund_id = ANY($4) OR r.id = ANY($5))""",
        channel,
        start,
        end,
        refs,
        ids,
        channel_cost(channel),
    )
    out = [
        Line(
            type="refund",
            reference=r["channel_ref"],
            juhe_id=r["id"],
            amount=int(r["returned_amount"]),
            currency=r["returned_currency"],
            status="succeeded",
            expected=start <= r["resolved_at"] < end,
        )
        for r in await conn.fetch(
            """SELECT id, channel_ref, returned_amount, returned_currency, resolved_at
                 FROM recon_discrepancies
                WHERE channel = $1 AND action = 'refund'
                  AND ((resolved_at >= $2 AND resolved_at < $3)
                       OR channel_ref = ANY($4) OR id = ANY($5))""",
            channel,
            start,
            end,
            refs,
            ids,
        )
    ]
    for r in rows:
        status = outcome_of(r["status"])
        amount, currency = _charged(r)
        out.append(
            Line(
                type=r["type"],
                reference=r["reference"] or "",
                juhe_id=r["id"],
                amount=amount,
                currency=currency,
                status=status,
                fee=int(r["fee"]),
                expected=status == "succeeded" and start <= r["created_at"] < end,
            )
        )
    return out


def _charged(r: asyncpg.Record) -> tuple[int, str]:
    """What the channel moved: a converted payment's amount in the charged currency, a refund
    of one as the channel pool refunded it."""
    amount = int(r["amount"])
    if r["fx"] is None:
        return amount, r["currency"]
    conversion = Conversion.from_doc(orjson.loads(r["fx"]))
    if r["type"] == "payment":
        return conversion.converted, conversion.target
    before = None if r["reserved_before"] is None else int(r["reserved_before"])
    return conversion.refund_at_channel(before, amount, int(r["whole"])), conversion.target


def _sums(amounts: dict[str, int]) -> str:
    return orjson.dumps({c: str(v) for c, v in sorted(amounts.items())}).decode()


async def run(
    pg: asyncpg.Pool, channel: str, day: date, statement: Statement, actor: audit.Actor
) -> tuple[asyncpg.Record, bool]:
    """Reconcile one statement file and audit it (`reconciliation.run`): (the run, True) when
    this call made it, (the earlier run of the same file, False) otherwise. A payment already
    recorded as `paid_after_end` is not recorded again for its status, nor for the fee that
    Juhe, having ended it, never posted."""
    digest = hashlib.sha256(statement.content).hexdigest()
    same = "SELECT * FROM recon_runs WHERE channel = $1 AND day = $2 AND file_sha256 = $3"
    earlier = await pg.fetchrow(same, channel, day, digest)
    if earlier is not None:
        return earlier, False
    async with pg.acquire() as conn, conn.transaction():
        # The day's lookup is costed high enough to be JIT-compiled, which takes longer than
        # the query (0.8 s of a 5 s run of 100,000 lines).
        await conn.execute("SET LOCAL jit = off")
        juhe = await juhe_lines(conn, channel, day, statement.lines)
        out: Outcome = reconcile(statement.lines, juhe)
        known = await _paid_after_end(conn, [d.juhe_id for d in out.discrepancies])
        out.discrepancies = [
            d for d in out.discrepancies if not (d.kind in _FOLLOW_FROM_END and d.juhe_id in known)
        ]
        row = await conn.fetchrow(
            """INSERT INTO recon_runs (id, channel, day, file_sha256, status, channel_count,
                   juhe_count, matched_count, channel_sums, juhe_sums, matched_sums,
                   discrepancies, actor)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
               ON CONFLICT (channel, day, file_sha256) DO NOTHING RETURNING *""",
            new_id("rcn"),
            channel,
            day,
            digest,
            "discrepancies" if out.discrepancies else "matched",
            out.channel.count,
            out.juhe.count,
            out.matched.count,
            _sums(out.channel.amounts),
            _sums(out.juhe.amounts),
            _sums(out.matched.amounts),
            len(out.discrepancies),
            actor.id,
        )
        if row is None:  # another run of this file committed first
            return await conn.fetchrow(same, channel, day, digest), False
        await conn.executemany(
            """INSERT INTO recon_discrepancies (id, run_id, channel, kind, type, reference,
                   juhe_id, channel_value, juhe_value)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
            [
                (
                    new_id("rcd"),
                    row["id"],
                    channel,
                    d.kind.value,
                    d.type,
                    d.reference,
                    d.juhe_id,
                    d.channel_value,
                    d.juhe_value,
                )
                for d in out.discrepancies
            ],
        )
        summary = {"channel": channel, "day": day.isoformat(), "file_sha256": digest}
        summary |= {"lines": out.channel.count, "discrepancies": len(out.discrepancies)}
        await audit.append(conn, actor, "reconciliation.run", row["id"], after=summary)
    return row, True


async def _paid_after_end(conn: Conn, payment_ids: Sequence[str]) -> set[str]:
    rows = await conn.fetch(
        """SELECT juhe_id FROM recon_discrepancies
            WHERE kind = 'paid_after_end' AND juhe_id = ANY($1::text[])""",
        list(payment_ids),
    )
    return {r["juhe_id"] for r in rows}


async def record_paid_after_end(
    conn: asyncpg.Connection, found: Sequence[tuple[str, str, str, str]]
) -> None:
    """Discrepancies for payments the channel says were paid after Juhe ended them
    (channel, payment id, channel order id, Juhe's status); one per payment, however often
    the channel's word comes again."""
    if not found:
        return
    await conn.executemany(
        """INSERT INTO recon_discrepancies (id, channel, kind, type, reference, juhe_id,
               channel_value, juhe_value)
           VALUES ($1, $2, 'paid_after_end', 'payment', $3, $4, 'succeeded', $5)
           ON CONFLICT (juhe_id) WHERE kind = 'paid_after_end' DO NOTHING""",
        [(new_id("rcd"), channel, order, pid, status) for channel, pid, order, status in found],
    )


async def get_discrepancy(conn: Conn, discrepancy_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM recon_discrepancies WHERE id = $1", discrepancy_id)


async def runs(conn: Conn, after: str | None, limit: int) -> list[asyncpg.Record]:
    """Runs, newest first (ids are time-ordered)."""
    return await conn.fetch(
        "SELECT * FROM recon_runs WHERE $1::text IS NULL OR id < $1 ORDER BY id DESC LIMIT $2",
        after,
        limit,
    )


async def get_run(conn: Conn, run_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM recon_runs WHERE id = $1", run_id)


async def discrepancies(
    conn: Conn, after: str | None, limit: int, status: str | None, run_id: str | None
) -> list[asyncpg.Record]:
    """Discrepancies in id order, optionally of one status or one run."""
    return await conn.fetch(
        """SELECT * FROM recon_discrepancies
            WHERE ($1::text IS NULL OR id > $1) AND ($2::text IS NULL OR status = $2)
              AND ($3::text IS NULL OR run_id = $3)
            ORDER BY id LIMIT $4""",
        after,
        status,
        run_id,
        limit,
    )


class NotOpen(Exception):
    """The discrepancy was resolved or ignored already."""


@dataclass(frozen=True, slots=True)
class AtChannel:
    """What a resolution did at the channel: the refund's id there and the money returned
    (`refund`), or the event that carried the channel's word to the ledger (`accept_channel`)."""

    ref: str
    amount: int | None = None
    currency: str | None = None


async def resolve(
    pg: asyncpg.Pool,
    discrepancy_id: str,
    action: Action,
    reason: str,
    postings: Sequence[Posting],
    actor: audit.Actor,
    at_channel: AtChannel | None = None,
) -> asyncpg.Record | None:
    """Close an open discrepancy (`ignore`: ignored; the others resolved: `adjust` with its
    balanced entry, `refund` and `accept_channel` with what they did at the channel), audited,
    in one transaction; None when there is no such discrepancy."""
    async with pg.acquire() as conn, conn.transaction():
        found = await conn.fetchrow(
            "SELECT status FROM recon_discrepancies WHERE id = $1 FOR UPDATE", discrepancy_id
        )
        if found is None:
            return None
        if found["status"] != "open":
            raise NotOpen(found["status"])
        entry_id = None
        if postings:
            ids = await store.post_entries(conn, [(ADJUSTMENT, discrepancy_id, postings)])
            entry_id = ids[(ADJUSTMENT, discrepancy_id)]
        done = at_channel or AtChannel("")
        row = await conn.fetchrow(
            """UPDATE recon_discrepancies
                  SET status = $2, action = $3, reason = $4, resolved_by = $5,
                      resolved_at = now(), entry_id = $6, channel_ref = $7,
                      returned_amount = $8, returned_currency = $9
                WHERE id = $1 AND status = 'open' RETURNING *""",
            discrepancy_id,
            "ignored" if action is Action.IGNORE else "resolved",
            action.value,
            reason,
            actor.id,
            entry_id,
            done.ref or None,
            done.amount,
            done.currency,
        )
        after = {"status": row["status"], "action": action.value, "reason": reason}
        after |= {
            "entry_id": entry_id,
            "postings": [[p.account, p.currency, str(p.amount)] for p in postings],
        }
        if at_channel is not None:
            after["at_channel"] = {
                "ref": at_channel.ref,
                "amount": None if at_channel.amount is None else str(at_channel.amount),
                "currency": at_channel.currency,
            }
        await audit.append(
            conn, actor, "reconciliation.resolve", discrepancy_id, {"status": "open"}, after
        )
        return row


SCHEDULER = audit.Actor("system:scheduler", "platform")


async def reconcile_due(
    pg: asyncpg.Pool, registry: ChannelRegistry, now: datetime, due_after_s: int, lookback: int
) -> list[asyncpg.Record]:
    """The scheduler's daily runs: for each channel that publishes statements, each day whose
    file is due and has no run yet (`domain.reconciliation.due_days`). A channel that cannot
    answer is logged and asked again at the next tick, without holding up the others."""
    days = due_days(now, due_after_s, lookback)
    channels = [
        code
        for code in sorted(registry.specs)
        if isinstance(registry.adapter(code), StatementPublishing)
    ]
    if not days or not channels:
        return []
    done = {
        (r["channel"], r["day"])
        for r in await pg.fetch(
            """SELECT DISTINCT channel, day FROM recon_runs
                WHERE channel = ANY($1) AND day = ANY($2)""",
            channels,
            days,
        )
    }
    made = []
    for channel in channels:
        for day in days:
            if (channel, day) in done:
                continue
            try:
                statement = await fetch(registry, channel, day)
            except ChannelError as exc:
                log.warning(
                    "a channel's statement could not be had; asking again at the next tick",
                    extra={"channel": channel, "day": day.isoformat(), "code": exc.code},
                )
                break
            row, _ = await run(pg, channel, day, statement, SCHEDULER)
            made.append(row)
    return made
