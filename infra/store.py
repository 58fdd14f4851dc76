"""The SQL the shells run: each function is one statement or one small, fixed set of them.

Batches go through `unnest` so a hundred rows cost one round trip. Every status change is
guarded by its source states (`domain.states.sources`), so a repeated call changes nothing.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from adapters.base import ChannelOrder, CryptoDeposit
from domain.commission import Terms
from domain.ids import new_id
from domain.ledger import Posting
from domain.messages import PaymentIntent, RefundIntent
from domain.states import PaymentStatus, RefundStatus, refund_sources, sources
from domain.withdrawals import WithdrawalStatus
from domain.withdrawals import sources as withdrawal_sources

Conn = asyncpg.Connection | asyncpg.Pool


def minor(text: str) -> str:
    """A message's amount, checked to be a whole number of minor units: PostgreSQL would
    silently round "4.20" into a numeric(78,0), and money must never be rounded by accident."""
    if not text.isdigit():
        raise ValueError(f"amount {text!r} is not a whole number of minor units")
    return text


def _ts(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


async def insert_payments(
    conn: Conn, intents: Sequence[PaymentIntent]
) -> tuple[set[str], set[str]]:
    """Insert new payments, the customer's e-mail and IP as the intents carry them (sealed by
    the gateway); return (ids now stored, ids refused because their merchant order id was
    already taken by another payment)."""
    if not intents:
        return set(), set()
    cols = [
        [i.id for i in intents],
        [i.merchant_id for i in intents],
        [i.merchant_order_id for i in intents],
        [minor(i.amount) for i in intents],
        [i.currency for i in intents],
        [i.method for i in intents],
        [i.description for i in intents],
        [i.customer_email for i in intents],
        [i.customer_ip for i in intents],
        [i.notify_url for i in intents],
        [i.return_url for i in intents],
        [orjson.dumps(i.metadata).decode() if i.metadata else None for i in intents],
        [i.request_id for i in intents],
        [_ts(i.created_at) for i in intents],
        [_ts(i.expires_at) for i in intents],
        [i.customer_country for i in intents],
    ]
    await conn.execute(
        """INSERT INTO payments (id, merchant_id, merchant_order_id, amount, currency, method,
               status, description, customer_email, customer_ip, notify_url, return_url,
               metadata, request_id, created_at, expires_at, customer_country)
           SELECT u.id, u.m, u.o, u.a::numeric, u.c, u.pm, 'pending', u.d, u.e, u.ip, u.n, u.r,
                  u.md::jsonb, u.rid, u.ca, u.ea, u.cc
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                       $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                       $13::text[], $14::timestamptz[], $15::timestamptz[], $16::text[])
                AS u(id, m, o, a, c, pm, d, e, ip, n, r, md, rid, ca, ea, cc)
           ON CONFLICT DO NOTHING""",
        *cols,
    )
    ids = [i.id for i in intents]
    stored = {r["id"] for r in await conn.fetch("SELECT id FROM payments WHERE id = ANY($1)", ids)}
    return stored, set(ids) - stored


async def insert_refunds(conn: Conn, intents: Sequence[RefundIntent]) -> set[str]:
    if not intents:
        return set()
    await conn.execute(
        """INSERT INTO refunds (id, payment_id, merchant_id, amount, currency, status, reason,
                                request_id, created_at, destination)
           SELECT u.id, u.p, u.m, u.a::numeric, u.c, 'pending', u.r, u.rid, u.ca, u.d
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                       $7::text[], $8::timestamptz[], $9::text[])
                AS u(id, p, m, a, c, r, rid, ca, d)
           ON CONFLICT DO NOTHING""",
        [i.id for i in intents],
        [i.payment_id for i in intents],
        [i.merchant_id for i in intents],
        [minor(i.amount) for i in intents],
        [i.currency for i in intents],
        [i.reason for i in intents],
        [i.request_id for i in intents],
        [_ts(i.created_at) for i in intents],
        [i.destination for i in intents],
    )
    ids = [i.id for i in intents]
    return {r["id"] for r in await conn.fetch("SELECT id FROM refunds WHERE id = ANY($1)", ids)}


async def fetch_payment(conn: Conn, payment_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM payments WHERE id = $1", payment_id)


async def fetch_refund(conn: Conn, refund_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM refunds WHERE id = $1", refund_id)


async def _transition(
    conn: Conn, table: str, row_id: str, target: str, allowed: list[str], changes: dict[str, Any]
) -> asyncpg.Record | None:
    assignments = "".join(f", {name} = ${n}" for n, name in enumerate(changes, start=4))
    return await conn.fetchrow(
        f"""UPDATE {table} SET status = $2, version = version + 1, updated_at = now(){assignments}
            WHERE id = $1 AND status = ANY($3::text[]) RETURNING *""",
        row_id,
        target,
        allowed,
        *changes.values(),
    )


async def transition_payment(
    conn: Conn, payment_id: str, target: PaymentStatus, **changes: Any
) -> asyncpg.Record | None:
    """Move a payment to `target` if its current status allows it; None when it does not."""
    return await _transition(conn, "payments", payment_id, target.value, sources(target), changes)


async def transition_refund(
    conn: Conn, refund_id: str, target: RefundStatus, **changes: Any
) -> asyncpg.Record | None:
    return await _transition(
        conn, "refunds", refund_id, target.value, refund_sources(target), changes
    )


async def transition_withdrawal(
    conn: Conn, withdrawal_id: str, target: WithdrawalStatus, **changes: Any
) -> asyncpg.Record | None:
    return await _transition(
        conn, "withdrawals", withdrawal_id, target.value, withdrawal_sources(target), changes
    )


def event_payload(event_id: str, event_type: str, data: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "data": data,
        }
    )


async def add_events(
    conn: asyncpg.Connection,
    events: Iterable[tuple[str, dict[str, Any], Mapping[str, Any]]],
    due_now: bool = False,
) -> list[tuple[str, str]]:
    """Write webhook events to the outbox in the caller's transaction. Each item is
    (event type, the object's public view, the payment row that says whom to notify).
    Writers without a broker connection (the gateway) pass `due_now`: the scheduler's next
    outbox sweep then publishes the events instead of waiting out the grace period.
    Returns (event id, the payment's request id) pairs, so notify logs follow the payment."""
    rows = []
    for event_type, data, payment in events:
        event_id = new_id("evt")
        rows.append((event_id, event_type, payment, event_payload(event_id, event_type, data)))
    if not rows:
        return []
    await conn.execute(
        """INSERT INTO webhook_events (id, merchant_id, type, url, payload, request_id,
                                       next_attempt_at)
           SELECT u.id, u.m, u.t, COALESCE(u.url, m.notify_url), u.p, u.rid,
                  CASE WHEN $7 THEN 'epoch'::timestamptz ELSE now() END
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::text[])
                AS u(id, m, t, url, p, rid)
           JOIN merchants m ON m.id = u.m""",
        [r[0] for r in rows],
        [r[2]["merchant_id"] for r in rows],
        [r[1] for r in rows],
        [r[2]["notify_url"] for r in rows],
        [r[3] for r in rows],
        [r[2]["request_id"] for r in rows],
        due_now,
    )
    return [(r[0], r[2]["request_id"] or "") for r in rows]


async def post_entries(
    conn: asyncpg.Connection,
    entries: Sequence[tuple[str, str, Sequence[Posting]]],
    at: datetime | None = None,
) -> dict[tuple[str, str], int]:
    """Write journal entries (kind, ref, netted postings, as `domain.ledger` builds them) and
    move balances, in the caller's transaction; returns each entry's id by (kind, ref).
    Balances are netted per account across the whole batch and updated in one statement in a
    fixed account order, so concurrent batches cannot deadlock on them. `at` dates the entries
    (the settlement job's clock) instead of now."""
    if not entries:
        return {}
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for _, _, postings in entries:
        for p in postings:
            totals[(p.account, p.currency)] += p.amount
    netted = [
        Posting(name, currency, amount) for (name, currency), amount in sorted(totals.items())
    ]
    accounts = await conn.fetch(
        """INSERT INTO ledger_accounts AS a (name, currency, balance)
           SELECT * FROM unnest($1::text[], $2::text[], $3::numeric[])
           ON CONFLICT (name, currency) DO UPDATE SET balance = a.balance + EXCLUDED.balance
           RETURNING id, name, currency""",
        [p.account for p in netted],
        [p.currency for p in netted],
        [p.amount for p in netted],
    )
    account_ids = {(r["name"], r["currency"]): r["id"] for r in accounts}
    ids = await conn.fetch(
        """INSERT INTO journal_entries (kind, ref, created_at)
           SELECT k, r, COALESCE($3, now()) FROM unnest($1::text[], $2::text[]) AS u(k, r)
           RETURNING id, kind, ref""",
        [kind for kind, _, _ in entries],
        [ref for _, ref, _ in entries],
        at,
    )
    entry_ids = {(r["kind"], r["ref"]): r["id"] for r in ids}
    entry_col, account_col, amount_col = [], [], []
    for kind, ref, postings in entries:
        for p in postings:
            entry_col.append(entry_ids[(kind, ref)])
            account_col.append(account_ids[(p.account, p.currency)])
            amount_col.append(p.amount)
    await conn.execute(
        """INSERT INTO postings (entry_id, account_id, amount)
           SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::numeric[])""",
        entry_col,
        account_col,
        amount_col,
    )
    return entry_ids


async def record_commissions(
    conn: asyncpg.Connection,
    kind: str,
    rows: Sequence[tuple[str, str, str, str, int, Terms | None]],
) -> None:
    """Commission rows (ref, agent, merchant, currency, amount, terms) beside their journal
    entry: what agents' commission reports and statements read. A payment's rows keep the
    terms each agent earned under; a refund's or a reversal's (terms None; a reversal's ref
    is `reversal:<payment id>`) repeat the payment's."""
    if not rows:
        return
    known = [r[5] for r in rows]
    await conn.execute(
        """INSERT INTO commissions (ref, agent_id, merchant_id, currency, amount, kind, payment_id,
                                    level, mode, rate_bps, fixed_minor)
           SELECT u.ref, u.agent, u.merchant, u.currency, u.amount, $6, x.payment_id,
                  COALESCE(u.level, c.level), COALESCE(u.mode, c.mode),
                  COALESCE(u.rate_bps, c.rate_bps), COALESCE(u.fixed, c.fixed_minor)
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::numeric[],
                       $7::smallint[], $8::text[], $9::integer[], $10::numeric[])
                AS u(ref, agent, merchant, currency, amount, level, mode, rate_bps, fixed)
           CROSS JOIN LATERAL (SELECT CASE WHEN $6 = 'payment' THEN u.ref
                   WHEN $6 = 'reversal' THEN substr(u.ref, length('reversal:') + 1)
                   ELSE (SELECT payment_id FROM refunds WHERE id = u.ref) END AS payment_id) x
           LEFT JOIN commissions c
                  ON $6 <> 'payment' AND c.kind = 'payment' AND c.ref = x.payment_id
                 AND c.agent_id = u.agent""",
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [r[4] for r in rows],
        kind,
        [t.level if t else None for t in known],
        [t.mode.value if t else None for t in known],
        [t.rate_bps if t else None for t in known],
        [t.fixed if t else None for t in known],
    )


async def entry_postings(conn: Conn, kind: str, ref: str) -> list[Posting]:
    rows = await conn.fetch(
        """SELECT a.name, a.currency, p.amount FROM journal_entries e
           JOIN postings p ON p.entry_id = e.id JOIN ledger_accounts a ON a.id = p.account_id
           WHERE e.kind = $1 AND e.ref = $2""",
        kind,
        ref,
    )
    return [Posting(r["name"], r["currency"], r["amount"]) for r in rows]


def join_codes(codes: Sequence[str]) -> str:
    return ",".join(codes)


def split_codes(text: str) -> tuple[str, ...]:
    return tuple(text.split(",")) if text else ()


async def claim_payments(
    conn: Conn, routes: Mapping[str, Sequence[str]], channel: str
) -> list[asyncpg.Record]:
    """pending → processing for the payments a channel is about to open orders for, each with
    the channels it may still fail over to (so a re-driven payment keeps them)."""
    ids = sorted(routes)
    return await conn.fetch(
        """UPDATE payments p SET status = 'processing', channel = $3, fallbacks = u.f,
                  version = version + 1, updated_at = now()
           FROM unnest($1::text[], $2::text[]) AS u(id, f)
           WHERE p.id = u.id AND p.status = ANY($4::text[]) RETURNING p.*""",
        ids,
        [join_codes(routes[i]) for i in ids],
        channel,
        sources(PaymentStatus.PROCESSING),
    )


async def record_attempts(conn: Conn, attempts: Sequence[tuple[str, str, str, str | None]]) -> None:
    """(payment id, channel, outcome, failure code), numbered per payment in order. The same
    outcome at the same channel as the last attempt is a redelivery, not a new attempt."""
    await conn.executemany(
        """INSERT INTO payment_attempts (payment_id, attempt, channel, outcome, failure_code)
           SELECT $1, coalesce(max(attempt), 0) + 1, $2, $3, $4
           FROM payment_attempts WHERE payment_id = $1
           HAVING NOT EXISTS (
               SELECT 1 FROM payment_attempts last
               WHERE last.payment_id = $1 AND last.channel = $2 AND last.outcome = $3
                 AND last.attempt = (SELECT max(attempt) FROM payment_attempts
                                     WHERE payment_id = $1))""",
        attempts,
    )


async def move_to_channel(
    conn: Conn, payment_id: str, current: str, following: str, rest: Sequence[str]
) -> bool:
    """A processing payment hands over to its next channel (`rest` are those after it); False
    if it is no longer this channel's (ended, or moved already by a redelivered message)."""
    return (
        await conn.fetchval(
            """UPDATE payments SET channel = $3, fallbacks = $4, version = version + 1,
                      updated_at = now()
               WHERE id = $1 AND status = 'processing' AND channel = $2 RETURNING true""",
            payment_id,
            current,
            following,
            join_codes(rest),
        )
        is not None
    )


async def attempts(conn: Conn, payment_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM payment_attempts WHERE payment_id = $1 ORDER BY attempt", payment_id
    )


async def attach_channel_orders(
    conn: Conn, orders: Sequence[tuple[str, ChannelOrder]]
) -> list[asyncpg.Record]:
    """Record the channels' orders; move processing → awaiting_payment, and only that: a
    callback that already settled a payment keeps its status."""
    return await conn.fetch(
        """UPDATE payments p SET channel_order_id = u.o, pay_url = u.url, qr_payload = u.qr,
                  bank_transfer = u.bt::jsonb, crypto = COALESCE(p.crypto, u.cr::jsonb),
                  version = p.version + 1, updated_at = now(),
                  status = CASE WHEN p.status = 'processing' THEN 'awaiting_payment'
                                ELSE p.status END
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
                AS u(id, o, url, qr, bt, cr)
           WHERE p.id = u.id RETURNING p.*""",
        [pid for pid, _ in orders],
        [o.channel_order_id for _, o in orders],
        [o.pay_url for _, o in orders],
        [o.qr_payload for _, o in orders],
        [
            orjson.dumps(dataclasses.asdict(o.bank_transfer)).decode() if o.bank_transfer else None
            for _, o in orders
        ],
        [crypto_doc(o.crypto) if o.crypto else None for _, o in orders],
    )


def crypto_doc(deposit: CryptoDeposit) -> str:
    """The deposit as `payments.crypto` keeps it: amounts as minor-unit strings (wei overflows
    JSON's safe integers); the watcher adds its progress to it."""
    return orjson.dumps({**dataclasses.asdict(deposit), "amount": str(deposit.amount)}).decode()


async def reserve_refund(
    conn: asyncpg.Connection, refund_id: str
) -> tuple[asyncpg.Record | None, asyncpg.Record | None]:
    """In the caller's transaction: hold the refund's amount against the payment and move the
    refund to processing. Returns (refund, payment); payment is None when it could not be
    reserved (already past pending, or more than what is left to refund)."""
    refund = await conn.fetchrow("SELECT * FROM refunds WHERE id = $1 FOR UPDATE", refund_id)
    if refund is None or refund["status"] != RefundStatus.PENDING:
        return refund, None
    payment = await conn.fetchrow(
        """UPDATE payments SET refund_reserved = refund_reserved + $2, version = version + 1,
                  updated_at = now()
           WHERE id = $1 AND status = ANY($3::text[]) AND amount - refund_reserved >= $2
           RETURNING *""",
        refund["payment_id"],
        refund["amount"],
        ["succeeded", "partially_refunded"],
    )
    if payment is None:
        return refund, None
    await conn.execute(
        "UPDATE refunds SET reserved_before = $2 WHERE id = $1",
        refund_id,
        payment["refund_reserved"] - refund["amount"],
    )
    refund = await transition_refund(conn, refund_id, RefundStatus.PROCESSING)
    return refund, payment


def intent_of(row: Mapping[str, Any]) -> PaymentIntent:
    """A stored payment as the intent the risk pool takes (re-driven, or approved in review)."""
    return PaymentIntent(
        id=row["id"],
        merchant_id=row["merchant_id"],
        merchant_order_id=row["merchant_order_id"],
        amount=str(row["amount"]),
        currency=row["currency"],
        method=row["method"],
        customer_country=row["customer_country"],
        description=row["description"],
        customer_email=row["customer_email"],  # sealed, as the intent carries it
        customer_ip=row["customer_ip"],
        notify_url=row["notify_url"],
        return_url=row["return_url"],
        metadata=orjson.loads(row["metadata"]) if row["metadata"] else None,
        created_at=row["created_at"].timestamp(),
        expires_at=row["expires_at"].timestamp(),
        request_id=row["request_id"] or "",
    )
