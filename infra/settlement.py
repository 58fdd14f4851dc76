"""Settlement's SQL: the job that releases funds and closes statements, and the reads behind
the balance and statement routes. The decisions are `domain.settlement`'s; this module fetches
plain data for it and writes what it returns.

The job runs in one transaction under a PostgreSQL advisory lock taken with `try`, so two
schedulers (or a scheduler and an operator's run) never run it at once: the second returns None
and changes nothing. Every write is also guarded by a unique key (a release per entity and
source entry, a statement per entity, currency and period, a line per entity, currency and
entry), so a re-run for the same clock is a no-op.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from config import Settings
from domain.ids import new_id
from domain.risk import EMPTY
from domain.settlement import (
    INTERNAL,
    RELEASE,
    TOTALS,
    W_HOLD,
    W_PAID,
    W_RELEASE,
    W_RETURN,
    Balance,
    Draft,
    Entity,
    Line,
    Movement,
    Previous,
    Release,
    Source,
    StatementStatus,
    Terms,
    account_of,
    balances,
    close,
    due,
    line_of,
    release,
    reserve_release,
)
from domain.views import statement_view
from domain.withdrawals import Refused, WithdrawalStatus
from infra import audit, risk, store, withdrawals
from infra.fx import rate_source, usd_equivalent

Conn = asyncpg.Connection | asyncpg.Pool
log = logging.getLogger("juhe.settlement")
WITHDRAWAL_KINDS = frozenset({W_HOLD, W_PAID, W_RELEASE, W_RETURN})
LOCK = "juhe.settlement"
_ENTITY = "split_part(a.name, ':', 2)"


@dataclass
class RunResult:
    released: int = 0
    reserve_released: int = 0
    statements: list[str] = field(default_factory=list)
    # auto-settlement: the withdrawals made for closed statements, and those waiting for no
    # approval (to hand to the channel pool; the scheduler re-drives any whose hand-over is lost)
    withdrawals: list[str] = field(default_factory=list)
    to_pay: list[str] = field(default_factory=list)

    def doc(self) -> dict[str, object]:
        return {
            "released": self.released,
            "reserve_released": self.reserve_released,
            "statements": self.statements,
            "withdrawals": self.withdrawals,
        }


async def entity(conn: Conn, entity_id: str) -> Entity | None:
    """A merchant or an agent by id."""
    row = await conn.fetchrow(
        """SELECT 'merchant' AS kind FROM merchants WHERE id = $1
           UNION ALL SELECT 'agent' FROM agents WHERE id = $1 LIMIT 1""",
        entity_id,
    )
    return Entity(row["kind"], entity_id) if row else None


async def terms(conn: Conn, entities: Iterable[Entity], settings: Settings) -> dict[Entity, Terms]:
    """Each entity's cycle and reserve: the terms row, else the merchant's own configured cycle,
    else the configured default for its kind."""
    wanted = sorted(set(entities))
    if not wanted:
        return {}
    rows = await conn.fetch(
        """SELECT u.kind, u.id,
                  COALESCE(t.cycle, m.config -> 'settlement' ->> 'cycle') AS cycle,
                  COALESCE(t.reserve_bps, 0) AS bps, COALESCE(t.reserve_days, 0) AS days
           FROM unnest($1::text[], $2::text[]) AS u(kind, id)
           LEFT JOIN settlement_terms t ON t.entity_id = u.id
           LEFT JOIN merchants m ON u.kind = 'merchant' AND m.id = u.id""",
        [e.kind for e in wanted],
        [e.id for e in wanted],
    )
    s = settings.settlement
    default = {"merchant": s.merchant_cycle, "agent": s.agent_cycle}
    return {
        Entity(r["kind"], r["id"]): Terms(r["cycle"] or default[r["kind"]], r["bps"], r["days"])
        for r in rows
    }


async def _sources(conn: asyncpg.Connection, entity_id: str | None) -> list[Source]:
    """Postings to entities' pending accounts not yet released, each with the capture time of
    the payment it belongs to (a refund's is its payment's)."""
    rows = await conn.fetch(
        f"""SELECT e.id, a.name, a.currency, p.amount,
                   COALESCE(pe.created_at, e.created_at) AS anchor
            FROM ledger_accounts a
            JOIN postings p ON p.account_id = a.id
            JOIN journal_entries e ON e.id = p.entry_id
            LEFT JOIN refunds r ON e.kind = 'refund' AND r.id = e.ref
            LEFT JOIN journal_entries pe ON pe.kind = 'payment' AND pe.ref = r.payment_id
            WHERE (a.name LIKE 'merchant:%:pending' OR a.name LIKE 'agent:%:commission')
              AND e.kind <> ALL($2::text[])
              AND ($1::text IS NULL OR {_ENTITY} = $1)
              AND NOT EXISTS (SELECT 1 FROM settlement_releases s
                              WHERE s.source_entry_id = e.id AND s.entity_id = {_ENTITY})
            ORDER BY e.id""",
        entity_id,
        list(INTERNAL),
    )
    out = []
    for r in rows:
        owner = account_of(r["name"])
        if owner is not None:
            out.append(Source(r["id"], owner[0], r["currency"], r["amount"], r["anchor"]))
    return out


async def _due_holds(
    conn: asyncpg.Connection, entity_id: str | None, now: datetime
) -> list[Release]:
    rows = await conn.fetch(
        """SELECT entry_id, entity_kind, entity_id, currency, held FROM settlement_releases
           WHERE held > 0 AND hold_released_by IS NULL AND hold_until <= $1
             AND ($2::text IS NULL OR entity_id = $2)
           ORDER BY entry_id""",
        now,
        entity_id,
    )
    return [
        reserve_release(
            Entity(r["entity_kind"], r["entity_id"]), r["currency"], r["entry_id"], r["held"]
        )
        for r in rows
    ]


async def _movements(
    conn: asyncpg.Connection, entity_id: str | None
) -> dict[tuple[Entity, str], list[Movement]]:
    """Entries that moved an entity's available or reserve and are in none of its statements."""
    rows = await conn.fetch(
        f"""SELECT e.id, e.kind, e.ref, e.created_at, a.name, a.currency, p.amount,
                   se.kind AS source_kind, se.ref AS source_ref
            FROM ledger_accounts a
            JOIN postings p ON p.account_id = a.id
            JOIN journal_entries e ON e.id = p.entry_id
            LEFT JOIN settlement_releases s ON s.entry_id = e.id AND e.kind = '{RELEASE}'
            LEFT JOIN journal_entries se ON se.id = s.source_entry_id
            WHERE (a.name LIKE 'merchant:%:available' OR a.name LIKE 'merchant:%:reserve'
                   OR a.name LIKE 'agent:%:available' OR a.name LIKE 'agent:%:reserve')
              AND ($1::text IS NULL OR {_ENTITY} = $1)
              AND NOT EXISTS (SELECT 1 FROM settlement_lines l
                              WHERE l.entry_id = e.id AND l.entity_id = {_ENTITY}
                                AND l.currency = a.currency)
            ORDER BY e.id""",
        entity_id,
    )
    refs = {(r["source_kind"] or r["kind"], r["source_ref"] or r["ref"]) for r in rows}
    facts = await _facts(conn, refs)
    rows_of: dict[tuple[Entity, str, int], asyncpg.Record] = {}
    moved: dict[tuple[Entity, str, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        owner = account_of(r["name"])
        if owner is not None:
            key = (owner[0], r["currency"], r["id"])
            rows_of[key] = r
            moved[key][owner[1]] -= r["amount"]  # what the entity is owed
    out: dict[tuple[Entity, str], list[Movement]] = defaultdict(list)
    for key, r in rows_of.items():
        kind, ref = r["source_kind"] or r["kind"], r["source_ref"] or r["ref"]
        amount, payment_id, merchant_id, fee = facts.get((kind, ref), (0, None, None, 0))
        out[key[:2]].append(
            Movement(
                entry_id=r["id"],
                kind=r["kind"],
                ref=r["ref"],
                at=r["created_at"],
                available=moved[key]["available"],
                reserve=moved[key]["reserve"],
                source_kind=r["source_kind"],
                source_ref=r["source_ref"],
                amount=amount,
                payment_id=payment_id,
                merchant_id=merchant_id,
                fee=fee,
            )
        )
    return out


async def _facts(
    conn: asyncpg.Connection, refs: set[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int, str | None, str | None]]:
    """(amount, payment id, merchant id, fee) of the payments, refunds and withdrawals lines
    stand for (a withdrawal's under each of its entries' kinds)."""
    payments = sorted(ref for kind, ref in refs if kind == "payment")
    refunds = sorted(ref for kind, ref in refs if kind == "refund")
    withdrawn = sorted({ref for kind, ref in refs if kind in WITHDRAWAL_KINDS})
    rows = await conn.fetch(
        """SELECT 'payment' AS kind, id, amount, id AS payment_id, merchant_id, 0 AS fee
           FROM payments WHERE id = ANY($1::text[])
           UNION ALL
           SELECT 'refund', id, amount, payment_id, merchant_id, 0
           FROM refunds WHERE id = ANY($2::text[])
           UNION ALL
           SELECT 'withdrawal', id, amount, NULL, NULL, fee
           FROM withdrawals WHERE id = ANY($3::text[])""",
        payments,
        refunds,
        withdrawn,
    )
    found = {
        (r["kind"], r["id"]): (int(r["amount"]), r["payment_id"], r["merchant_id"], int(r["fee"]))
        for r in rows
    }
    for kind, ref in refs:
        if kind in WITHDRAWAL_KINDS and ("withdrawal", ref) in found:
            found[(kind, ref)] = found[("withdrawal", ref)]
    return found


async def _previous(
    conn: asyncpg.Connection, entity_id: str | None
) -> dict[tuple[str, str], Previous]:
    rows = await conn.fetch(
        """SELECT DISTINCT ON (entity_id, currency) entity_id, currency, id, period_end, net,
                  status
           FROM settlement_statements WHERE ($1::text IS NULL OR entity_id = $1)
           ORDER BY entity_id, currency, period_end DESC""",
        entity_id,
    )
    return {
        (r["entity_id"], r["currency"]): Previous(
            r["id"], r["period_end"], r["net"], StatementStatus(r["status"])
        )
        for r in rows
    }


async def run(
    pg: asyncpg.Pool, settings: Settings, now: datetime, entity_id: str | None = None
) -> RunResult | None:
    """Release what is due at `now`, give back reserves held long enough, and close every
    period that has ended by `now` (for one entity, or all). A run naming an entity on the
    `manual` cycle settles it: everything pending is released and one statement closes at
    `now`. None when another run holds the lock. `now` is a parameter so tests and operators
    drive the clock, never the wall."""
    async with pg.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock(hashtext($1))", LOCK):
            return None
        result = RunResult()
        sources = await _sources(conn, entity_id)
        known = await terms(conn, {s.entity for s in sources}, settings)
        releases = [release(s, known[s.entity], now) for s in due(sources, known, now, entity_id)]
        holds = await _due_holds(conn, entity_id, now)
        ids = await store.post_entries(
            conn, [(r.kind, r.ref, r.postings) for r in (*releases, *holds)], at=now
        )
        await _record_releases(conn, releases, holds, ids)
        result.released, result.reserve_released = len(releases), len(holds)
        movements = await _movements(conn, entity_id)
        cycles = await terms(conn, {who for who, _ in movements}, settings)
        previous = await _previous(conn, entity_id)
        drafts = [
            draft
            for (who, currency), moved in sorted(movements.items())
            for draft in close(
                who,
                currency,
                cycles[who].cycle,
                [line_of(who, m) for m in moved],
                previous.get((who.id, currency)),
                now,
                lambda: new_id("stl"),
                settling=who.id == entity_id,
            )
        ]
        await _insert_statements(conn, drafts, cycles)
        result.statements = [d.id for d in drafts]
        await _announce(conn, [d for d in drafts if d.entity.kind == "merchant"])
        await _auto_withdraw(conn, settings, drafts, result)
        return result


async def _announce(conn: asyncpg.Connection, drafts: Sequence[Draft]) -> None:
    """`settlement.closed` to each merchant whose statement closed (agents have no webhook
    endpoint: they read their statements), through the outbox, due at the next sweep."""
    if not drafts:
        return
    rows = await conn.fetch(
        "SELECT * FROM settlement_statements WHERE id = ANY($1::text[]) ORDER BY id",
        [d.id for d in drafts],
    )
    await store.add_events(
        conn,
        [
            (
                "settlement.closed",
                statement_view(r),
                {"merchant_id": r["entity_id"], "notify_url": None, "request_id": None},
            )
            for r in rows
        ],
        due_now=True,
    )


AUTO = audit.Actor("system:settlement", "platform")


async def _auto_withdraw(
    conn: asyncpg.Connection, settings: Settings, drafts: Sequence[Draft], result: RunResult
) -> None:
    """Each closed statement of an entity with an auto-payout account becomes a withdrawal of
    its net to it, as a person's request would (rules, risk rules, hold, approval above the
    threshold), keyed by the statement so a re-run asks nothing twice. One the rules refuse
    is logged and left closed, to be paid by hand; it never stops the run."""
    closed = [d for d in drafts if d.status is StatementStatus.CLOSED and d.net > 0]
    if not closed:
        return
    # the live risk rules judge them too, `amount_usd` at the configured rates (a local table
    # or feed: nothing is fetched over the network inside this transaction)
    live = await risk.live_version(conn)
    rules = risk.compiled_of(live) if live else EMPTY
    rates = rate_source(settings.fx)
    accounts = dict(
        await conn.fetch(
            """SELECT entity_id, payout_account_id FROM settlement_terms
                WHERE entity_id = ANY($1::text[]) AND payout_account_id IS NOT NULL""",
            sorted({d.entity.id for d in closed}),
        )
    )
    for d in closed:
        account = accounts.get(d.entity.id)
        if account is None:
            continue
        key = f"settlement:{d.id}"
        try:
            async with conn.transaction():
                row, new = await withdrawals.request(
                    conn,
                    settings,
                    d.entity,
                    account_id=account,
                    currency=d.currency,
                    amount=d.net,
                    key=key,
                    fingerprint=key,
                    requested_by=AUTO.id,
                    request_id=None,
                    settlement_id=d.id,
                    risk=withdrawals.RiskCheck(
                        rules, await usd_equivalent(rates, d.net, d.currency)
                    ),
                )
                if new:
                    after = {"status": row["status"], "amount": str(d.net), "fee": str(row["fee"])}
                    await audit.append(conn, AUTO, "withdrawal.request", row["id"], after=after)
        except Refused as exc:
            log.warning(
                "a closed statement could not be paid out by itself; it waits to be paid by hand",
                extra={"settlement_id": d.id, "code": exc.code},
            )
            continue
        result.withdrawals.append(row["id"])
        if row["status"] == WithdrawalStatus.REQUESTED:
            result.to_pay.append(row["id"])


async def _record_releases(
    conn: asyncpg.Connection,
    releases: Sequence[Release],
    holds: Sequence[Release],
    ids: dict[tuple[str, str], int],
) -> None:
    """One statement each, however many (a row per statement was half a big run's time)."""
    await conn.execute(
        """INSERT INTO settlement_releases (entry_id, entity_kind, entity_id, currency,
                                            source_entry_id, held, hold_until)
           SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                                $6::numeric[], $7::timestamptz[])""",
        [ids[(r.kind, r.ref)] for r in releases],
        [r.entity.kind for r in releases],
        [r.entity.id for r in releases],
        [r.currency for r in releases],
        [r.source_entry_id for r in releases],
        [r.held for r in releases],
        [r.hold_until for r in releases],
    )
    await conn.execute(
        """UPDATE settlement_releases s SET hold_released_by = u.by
           FROM unnest($1::bigint[], $2::bigint[]) AS u(entry_id, by)
           WHERE s.entry_id = u.entry_id AND s.hold_released_by IS NULL""",
        [h.source_entry_id for h in holds],
        [ids[(h.kind, h.ref)] for h in holds],
    )


async def _insert_statements(
    conn: asyncpg.Connection, drafts: Sequence[Draft], cycles: dict[Entity, Terms]
) -> None:
    for d in drafts:
        carried = next((line.ref for line in d.lines if line.kind == "carried"), None)
        count = 8 + len(TOTALS) + 3
        await conn.execute(
            f"""INSERT INTO settlement_statements (id, entity_kind, entity_id, currency, cycle,
                    period_start, period_end, status, {", ".join(TOTALS)}, net, carried_from,
                    line_count)
                VALUES ({", ".join(f"${n}" for n in range(1, count + 1))})""",
            d.id,
            d.entity.kind,
            d.entity.id,
            d.currency,
            cycles[d.entity].cycle,
            d.start,
            d.end,
            d.status.value,
            *(d.totals[name] for name in TOTALS),
            d.net,
            carried,
            len(d.lines),
        )
    # Every line of every statement in one statement (a row at a time was half a big close).
    records = [_line_record(d, line) for d in drafts for line in d.lines]
    columns = list(zip(*records, strict=True)) if records else [()] * len(_LINE_COLUMNS)
    await conn.execute(
        f"""INSERT INTO settlement_lines ({", ".join(name for name, _ in _LINE_COLUMNS)})
            SELECT * FROM unnest({
            ", ".join(f"${n}::{kind}[]" for n, (_, kind) in enumerate(_LINE_COLUMNS, 1))
        })""",
        *(list(values) for values in columns),
    )


_LINE_COLUMNS = [
    *(("statement_id", "text"), ("entity_id", "text"), ("currency", "text")),
    *(("entry_id", "bigint"), ("kind", "text"), ("ref", "text"), ("at", "timestamptz")),
    *((name, "numeric") for name in TOTALS),
    *(("net", "numeric"), ("payment_id", "text"), ("merchant_id", "text")),
]


def _line_record(d: Draft, line: Line) -> tuple[object, ...]:
    return (
        d.id,
        d.entity.id,
        d.currency,
        line.entry_id or None,
        line.kind,
        line.ref,
        line.at,
        *(getattr(line, name) for name in TOTALS),
        line.net,
        line.payment_id,
        line.merchant_id,
    )


async def released_entities(conn: asyncpg.Connection, payment_id: str) -> list[Entity]:
    """Whose share of a payment's entry was already released: a refund reverses theirs from
    available instead of pending."""
    rows = await conn.fetch(
        """SELECT s.entity_kind, s.entity_id FROM settlement_releases s
           JOIN journal_entries e ON e.id = s.source_entry_id
           WHERE e.kind = 'payment' AND e.ref = $1""",
        payment_id,
    )
    return [Entity(r["entity_kind"], r["entity_id"]) for r in rows]


async def entity_balances(conn: Conn, who: Entity) -> dict[str, Balance]:
    rows = await conn.fetch(
        "SELECT name, currency, balance FROM ledger_accounts WHERE name = ANY($1::text[])",
        [who.account(b) for b in ("pending", "available", "reserve", "paid_out")],
    )
    return balances(who, [(r["name"], r["currency"], r["balance"]) for r in rows])


async def statements(
    conn: Conn, entity_id: str, after: str | None, limit: int, currency: str | None
) -> list[asyncpg.Record]:
    """Newest first; `after` is a statement id (ids sort by time)."""
    return await conn.fetch(
        """SELECT * FROM settlement_statements
           WHERE entity_id = $1 AND ($2::text IS NULL OR id < $2)
             AND ($4::text IS NULL OR currency = $4)
           ORDER BY id DESC LIMIT $3""",
        entity_id,
        after,
        limit,
        currency,
    )


async def statement(conn: Conn, entity_id: str, statement_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM settlement_statements WHERE id = $1 AND entity_id = $2",
        statement_id,
        entity_id,
    )


async def lines(
    conn: Conn, statement_id: str, after: int | None, limit: int | None
) -> list[asyncpg.Record]:
    """In order; `after` is a line id. An agent's payment and refund lines carry the terms
    their commission was earned under (level, mode, rate_bps, fixed_minor; NULL otherwise)."""
    return await conn.fetch(
        """SELECT l.*, c.level, c.mode, c.rate_bps, c.fixed_minor FROM settlement_lines l
             LEFT JOIN commissions c ON l.kind IN ('payment', 'refund')
                   AND c.ref = l.ref AND c.agent_id = l.entity_id
            WHERE l.statement_id = $1 AND ($2::bigint IS NULL OR l.id > $2)
            ORDER BY l.id LIMIT $3""",
        statement_id,
        after,
        limit,
    )


async def put_terms(
    conn: asyncpg.Connection,
    entity_id: str,
    cycle: str | None,
    bps: int,
    days: int,
    payout_account_id: str | None = None,
) -> dict[str, object] | None:
    """Set an entity's terms; returns what they were (None: the defaults)."""
    before = await conn.fetchrow(
        """SELECT cycle, reserve_bps, reserve_days, payout_account_id FROM settlement_terms
            WHERE entity_id = $1""",
        entity_id,
    )
    await conn.execute(
        """INSERT INTO settlement_terms (entity_id, cycle, reserve_bps, reserve_days,
                                         payout_account_id)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (entity_id) DO UPDATE SET cycle = $2, reserve_bps = $3, reserve_days = $4,
                                                 payout_account_id = $5, updated_at = now()""",
        entity_id,
        cycle,
        bps,
        days,
        payout_account_id,
    )
    return dict(before) if before else None
