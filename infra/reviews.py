"""The manual review queue: a payment the rules sent to review waits `in_review` until a
reviewer approves it (back to `pending`, routed as if approved: its stored decision says so) or
rejects it (`rejected`, the merchant notified), or until its due time gives it the configured
default. Each step is one transaction with its guarded transition, its webhook events and,
from a person, its audit record; the caller copies the rows to Redis after commit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from domain.states import PaymentStatus
from domain.views import payment_view
from infra import store

OPEN = ("open", "claimed")


@dataclass(frozen=True, slots=True)
class Decided:
    review: asyncpg.Record
    payment: asyncpg.Record | None  # None: the payment had already left review (expired…)
    events: list[tuple[str, str]]


async def open_reviews(
    conn: asyncpg.Connection,
    payments: Sequence[tuple[str, dict[str, Any]]],
    timeout_s: int,
    public_url: str,
) -> tuple[list[asyncpg.Record], list[tuple[str, str]]]:
    """Move each (payment id, decision) pending → in_review with its review row and a
    `payment.review_opened` event; a payment no longer pending is left as it is."""
    rows = []
    for payment_id, decision in payments:
        row = await store.transition_payment(conn, payment_id, PaymentStatus.IN_REVIEW)
        if row is None:
            continue
        await conn.execute(
            "INSERT INTO risk_reviews (payment_id, merchant_id, status, score, version, due_at) "
            "VALUES ($1, $2, 'open', $3, $4, $5) ON CONFLICT (payment_id) DO NOTHING",
            payment_id,
            row["merchant_id"],
            decision["score"],
            decision["version"],
            datetime.now(UTC) + timedelta(seconds=timeout_s),
        )
        rows.append(row)
    events = await store.add_events(
        conn, [("payment.review_opened", payment_view(r, public_url), r) for r in rows]
    )
    return rows, events


async def claim(conn: asyncpg.Connection, payment_id: str, actor: str) -> asyncpg.Record | None:
    """Take an open review (or one this reviewer holds already); None if it is not to take."""
    return await conn.fetchrow(
        "UPDATE risk_reviews SET status = 'claimed', claimed_by = $2, claimed_at = now() "
        "WHERE payment_id = $1 AND (status = 'open' OR (status = 'claimed' AND claimed_by = $2)) "
        "RETURNING *",
        payment_id,
        actor,
    )


async def fetch(conn: asyncpg.Connection | asyncpg.Pool, payment_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM risk_reviews WHERE payment_id = $1", payment_id)


async def decide(
    conn: asyncpg.Connection,
    payment_id: str,
    approve: bool,
    actor: str,
    reason: str | None,
    public_url: str,
    by_default: bool = False,
) -> Decided | None:
    """Close a review still open (claimed by this actor, or by anyone when the default
    decides) and move its payment; None when the review is not this actor's to decide."""
    outcome = "approved" if approve else "rejected"
    review = await conn.fetchrow(
        "UPDATE risk_reviews SET status = $2, decided_by = $3, decided_at = now(), reason = $4, "
        "by_default = $5 WHERE payment_id = $1 AND status = ANY($6::text[]) "
        "AND ($5 OR claimed_by IS NULL OR claimed_by = $3) RETURNING *",
        payment_id,
        outcome,
        actor,
        reason,
        by_default,
        list(OPEN),
    )
    if review is None:
        return None
    stored = await conn.fetchval("SELECT risk FROM payments WHERE id = $1", payment_id)
    doc = orjson.loads(stored) if stored else {}
    doc["review"] = {
        "outcome": "approve" if approve else "reject",
        "by": actor,
        "reason": reason,
        "by_default": by_default,
    }
    risk = orjson.dumps(doc).decode()
    if approve:
        row = await store.transition_payment(conn, payment_id, PaymentStatus.PENDING, risk=risk)
    else:
        row = await store.transition_payment(
            conn,
            payment_id,
            PaymentStatus.REJECTED,
            risk=risk,
            failure_code="risk_review_rejected",
            failure_message="rejected in manual review",
        )
    events: list[tuple[str, str]] = []
    if row is not None:
        view = payment_view(row, public_url)
        kinds = ["payment.review_closed"] + ([] if approve else ["payment.rejected"])
        events = await store.add_events(conn, [(k, view, row) for k in kinds], due_now=True)
    return Decided(review, row, events)


async def due(conn: asyncpg.Connection, limit: int = 100) -> list[str]:
    """Reviews past their due time, locked for the caller's transaction."""
    rows = await conn.fetch(
        "SELECT payment_id FROM risk_reviews WHERE status = ANY($1::text[]) AND due_at < now() "
        "ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        list(OPEN),
        limit,
    )
    return [r["payment_id"] for r in rows]


async def listing(
    conn: asyncpg.Connection | asyncpg.Pool,
    status: str | None,
    merchant_id: str | None,
    limit: int,
    after: str | None,
) -> list[asyncpg.Record]:
    """Newest first, with the payment's amount and currency; `limit + 1` rows."""
    return await conn.fetch(
        "SELECT r.*, p.amount, p.currency, p.status AS payment_status, "
        "extract(epoch FROM now() - r.created_at) AS age_s FROM risk_reviews r "
        "JOIN payments p ON p.id = r.payment_id "
        "WHERE ($1::text IS NULL OR r.status = $1) AND ($2::text IS NULL OR r.merchant_id = $2) "
        "AND ($3::text IS NULL OR r.payment_id < $3) ORDER BY r.payment_id DESC LIMIT $4",
        status,
        merchant_id,
        after,
        limit + 1,
    )
