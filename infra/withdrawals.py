"""Withdrawals' SQL: payout accounts, rules, the request that holds the funds, and the guarded
moves that post each outcome with its webhook. The decisions are `domain.withdrawals`'s.

A request locks the entity's available row (`FOR UPDATE`) before it reads the balance, so two
concurrent requests are serialized on it: the second sees the first one's hold and can never
overdraw. Every move is a guarded `UPDATE … WHERE status = ANY(sources)` in one transaction
with its entry (unique per kind and withdrawal) and its outbox event, so a redelivery changes
nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from config import Settings
from domain.ids import new_id
from domain.ledger import sending_cost
from domain.money import format_amount, parse_amount
from domain.risk import CompiledRuleSet, Outcome, judge
from domain.risk.facts import WithdrawalRequest, withdrawal_facts
from domain.settlement import Entity, StatementStatus, statement_sources
from domain.withdrawals import (
    HOLD,
    Decision,
    Refused,
    Rules,
    Step,
    WithdrawalStatus,
    check,
    check_statement,
    postings,
)
from infra import store
from infra.sealing import PAYOUT_ACCOUNT
from infra.secretbox import SecretBox

Conn = asyncpg.Connection | asyncpg.Pool
# What a withdrawal holds against the daily limit: all but what was given back.
_COUNTED = ("pending_approval", "requested", "sending", "sent", "succeeded")


def view(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    """A withdrawal's public view (API answers and webhooks alike)."""
    c = row["currency"]
    return {
        "id": row["id"],
        "object": "withdrawal",
        "entity_id": row["entity_id"],
        "entity_kind": row["entity_kind"],
        "payout_account_id": row["payout_account_id"],
        "amount": format_amount(row["amount"], c),
        "fee": format_amount(row["fee"], c),
        "currency": c,
        "status": row["status"],
        "requested_by": row["requested_by"],
        "decided_by": row["decided_by"],
        "decision_reason": row["decision_reason"],
        "failure_code": row["failure_code"],
        "failure_message": row["failure_message"],
        "settlement_id": row["settlement_id"],
        "risk": orjson.loads(row["risk"]) if row.get("risk") else None,
        "created": int(row["created_at"].timestamp()),
        "updated": int(row["updated_at"].timestamp()),
    }


# --- payout accounts ----------------------------------------------------------------------------


async def add_account(
    conn: Conn, box: SecretBox, who: Entity, kind: str, details: dict[str, Any]
) -> asyncpg.Record:
    account_id = new_id("pac")
    sealed = PAYOUT_ACCOUNT.seal(box, account_id, orjson.dumps(details).decode())
    return await conn.fetchrow(
        """INSERT INTO payout_accounts (id, entity_kind, entity_id, kind, details, last4)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING *""",
        account_id,
        who.kind,
        who.id,
        kind,
        sealed,
        details["number"].replace(" ", "")[-4:],
    )


async def accounts(conn: Conn, entity_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM payout_accounts WHERE entity_id = $1 ORDER BY id DESC", entity_id
    )


def account_details(box: SecretBox, row: asyncpg.Record) -> dict[str, Any]:
    return orjson.loads(PAYOUT_ACCOUNT.open(box, row["id"], row["details"]))


# --- rules ------------------------------------------------------------------------------------


def _minor(table: dict[str, str], currency: str) -> int | None:
    text = table.get(currency)
    return None if text is None else parse_amount(text, currency)


async def rules(conn: Conn, entity_id: str, currency: str, settings: Settings) -> Rules:
    """The entity's own rules in the currency, else the configured defaults."""
    row = await conn.fetchrow(
        "SELECT * FROM withdrawal_rules WHERE entity_id = $1 AND currency = $2",
        entity_id,
        currency,
    )
    if row is not None:
        return Rules(
            int(row["min_amount"]),
            int(row["fee_fixed"]),
            row["fee_bps"],
            None if row["daily_limit"] is None else int(row["daily_limit"]),
            None if row["approval_above"] is None else int(row["approval_above"]),
        )
    w = settings.withdrawals
    return Rules(
        _minor(w.min_amount, currency) or 1,
        _minor(w.fee_fixed, currency) or 0,
        w.fee_bps,
        _minor(w.daily_limit, currency),
        _minor(w.approval_above, currency),
    )


async def put_rules(
    conn: asyncpg.Connection, entity_id: str, currency: str, r: Rules
) -> dict[str, Any] | None:
    """Set an entity's rules in a currency; returns what they were (None: the defaults)."""
    before = await conn.fetchrow(
        """SELECT min_amount, fee_fixed, fee_bps, daily_limit, approval_above
           FROM withdrawal_rules WHERE entity_id = $1 AND currency = $2""",
        entity_id,
        currency,
    )
    await conn.execute(
        """INSERT INTO withdrawal_rules (entity_id, currency, min_amount, fee_fixed, fee_bps,
                                         daily_limit, approval_above)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (entity_id, currency) DO UPDATE SET min_amount = $3, fee_fixed = $4,
               fee_bps = $5, daily_limit = $6, approval_above = $7, updated_at = now()""",
        entity_id,
        currency,
        r.min_amount,
        r.fee_fixed,
        r.fee_bps,
        r.daily_limit,
        r.approval_above,
    )
    return {k: None if v is None else int(v) for k, v in before.items()} if before else None


# --- requests -----------------------------------------------------------------------------------


async def by_key(conn: Conn, entity_id: str, key: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM withdrawals WHERE entity_id = $1 AND idempotency_key = $2", entity_id, key
    )


async def request(
    conn: asyncpg.Connection,
    settings: Settings,
    who: Entity,
    *,
    account_id: str,
    currency: str,
    amount: int,
    key: str,
    fingerprint: str,
    requested_by: str,
    request_id: str | None,
    settlement_id: str | None = None,
    risk: RiskCheck | None = None,
) -> tuple[asyncpg.Record, bool]:
    """In the caller's transaction: the withdrawal, held, and whether it is new (False: the
    Idempotency-Key's earlier one). Raises `domain.withdrawals.Refused`. With `risk`, the rules
    judge it after the withdrawal rules pass: `reject` refuses it (`risk_rejected`), `review`
    holds it for a checker (`pending_approval`); the decision is kept on the withdrawal."""
    # The lock first: concurrent requests of this entity and currency queue here, so each
    # reads the balance (and the day's total) the one before it left.
    owed = await conn.fetchval(
        "SELECT -balance FROM ledger_accounts WHERE name = $1 AND currency = $2 FOR UPDATE",
        who.account("available"),
        currency,
    )
    earlier = await by_key(conn, who.id, key)
    if earlier is not None:
        return earlier, False
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    today = await conn.fetchval(
        """SELECT COALESCE(sum(amount), 0) FROM withdrawals
           WHERE entity_id = $1 AND currency = $2 AND created_at >= $3
             AND status = ANY($4::text[])""",
        who.id,
        currency,
        midnight,
        list(_COUNTED),
    )
    if settlement_id is not None:
        statement = await conn.fetchrow(
            "SELECT status, currency, net FROM settlement_statements WHERE id = $1 "
            "AND entity_id = $2",
            settlement_id,
            who.id,
        )
        if statement is None:
            raise Refused("resource_missing", "no such settlement", "settlement_id")
        check_statement(
            statement["status"], statement["currency"], int(statement["net"]), amount, currency
        )
    decision: Decision = check(
        await rules(conn, who.id, currency, settings), amount, int(owed or 0), int(today)
    )
    verdict = None
    if risk is not None:
        verdict = judge(risk.rules, await _facts(conn, who, account_id, currency, amount, risk), [])
        if verdict.outcome is Outcome.REJECT:
            raise Refused(
                "risk_rejected", f"the risk rules reject this withdrawal ({verdict.reason})"
            )
    reviewed = verdict is not None and verdict.outcome is Outcome.REVIEW
    status = (
        WithdrawalStatus.PENDING_APPROVAL
        if decision.needs_approval or reviewed
        else WithdrawalStatus.REQUESTED
    )
    row = await conn.fetchrow(
        """INSERT INTO withdrawals (id, entity_kind, entity_id, payout_account_id, currency,
               amount, fee, status, idempotency_key, fingerprint, requested_by, request_id,
               settlement_id, risk)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14::jsonb)
           RETURNING *""",
        new_id("wd"),
        who.kind,
        who.id,
        account_id,
        currency,
        amount,
        decision.fee,
        status.value,
        key,
        fingerprint,
        requested_by,
        request_id,
        settlement_id,
        orjson.dumps(verdict.to_doc()).decode() if verdict is not None else None,
    )
    await store.post_entries(
        conn, [(HOLD, row["id"], postings(HOLD, who, currency, amount, decision.fee))]
    )
    return row, True


@dataclass(frozen=True, slots=True)
class RiskCheck:
    """The live rule set and the amount's USD equivalent, both found before the transaction."""

    rules: CompiledRuleSet
    amount_usd: int | None


async def _facts(
    conn: asyncpg.Connection,
    who: Entity,
    account_id: str,
    currency: str,
    amount: int,
    risk: RiskCheck,
) -> dict[str, Any]:
    """The withdrawal's facts: its entity's agent chain (an agent's own id first) and payout
    account kind, and the day's withdrawals, read under the entity's lock."""
    chain = (
        "SELECT a.path::text FROM merchants m JOIN agents a ON a.id = m.agent_id WHERE m.id = $1"
        if who.kind == "merchant"
        else "SELECT path::text FROM agents WHERE id = $1"
    )
    path = await conn.fetchval(chain, who.id)
    day = await conn.fetchrow(
        """SELECT COALESCE(sum(amount), 0) AS total, count(*) AS n FROM withdrawals
           WHERE entity_id = $1 AND currency = $2 AND created_at >= $3
             AND status = ANY($4::text[])""",
        who.id,
        currency,
        datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0),
        list(_COUNTED),
    )
    request = WithdrawalRequest(
        entity_kind=who.kind,
        entity_id=who.id,
        agents=tuple(reversed(path.split("."))) if path else (),
        amount=amount,
        currency=currency,
        at=time.time(),
        payout_account_kind=await conn.fetchval(
            "SELECT kind FROM payout_accounts WHERE id = $1", account_id
        )
        or "",
        withdrawn_today=int(day["total"]),
        withdrawals_today=int(day["n"]),
    )
    return withdrawal_facts(request, risk.amount_usd, risk.rules.features)


async def fetch(conn: Conn, withdrawal_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM withdrawals WHERE id = $1", withdrawal_id)


async def listing(
    conn: Conn,
    entity_id: str,
    after: str | None,
    limit: int,
    status: str | None,
    currency: str | None,
) -> list[asyncpg.Record]:
    """Newest first; `after` is a withdrawal id (ids sort by time)."""
    return await conn.fetch(
        """SELECT * FROM withdrawals
           WHERE entity_id = $1 AND ($2::text IS NULL OR id < $2)
             AND ($3::text IS NULL OR status = $3) AND ($4::text IS NULL OR currency = $4)
           ORDER BY id DESC LIMIT $5""",
        entity_id,
        after,
        status,
        currency,
        limit,
    )


# --- moves --------------------------------------------------------------------------------------


async def move(
    conn: asyncpg.Connection,
    withdrawal_id: str,
    step: Step,
    due_now: bool = False,
    network_fee: tuple[str, int] | None = None,
    **changes: Any,
) -> tuple[asyncpg.Record | None, list[tuple[str, str]]]:
    """In the caller's transaction: the guarded transition, its entry and its webhook (`due_now`
    from the gateway, which has no broker: see `store.add_events`). (None, []) when the status
    had moved on already, so nothing is posted twice. `network_fee`: what sending it cost the
    channel (a chain's gas), in the same entry as the channel's cost."""
    moved = await store.transition_withdrawal(conn, withdrawal_id, step.target, **changes)
    if moved is None:
        return None, []
    if step.entry is not None:
        who = Entity(moved["entity_kind"], moved["entity_id"])
        lines = postings(step.entry, who, moved["currency"], moved["amount"], moved["fee"])
        if network_fee is not None and moved["channel"]:
            lines = (*lines, *sending_cost(moved["channel"], *network_fee))
        await store.post_entries(conn, [(step.entry, moved["id"], lines)])
    if step.target is WithdrawalStatus.SUCCEEDED and moved["settlement_id"] is not None:
        await conn.execute(
            "UPDATE settlement_statements SET status = $2 WHERE id = $1 AND status = ANY($3)",
            moved["settlement_id"],
            StatementStatus.PAID.value,
            statement_sources(StatementStatus.PAID),
        )
    events: list[tuple[str, str]] = []
    if step.event is not None and moved["entity_kind"] == "merchant":
        # Agents have no webhook endpoint; they read their withdrawals.
        target = {
            "merchant_id": moved["entity_id"],
            "notify_url": None,
            "request_id": moved["request_id"],
        }
        events = await store.add_events(conn, [(step.event, view(moved), target)], due_now)
    return moved, events


async def lease(conn: Conn, withdrawal_id: str, lease_s: float) -> asyncpg.Record | None:
    """The right to send a `sending` withdrawal again, taken by one caller at a time: the
    claim, or the last lease, touched it more than `lease_s` ago (longer than a call lasts)."""
    return await conn.fetchrow(
        """UPDATE withdrawals SET version = version + 1, updated_at = now()
           WHERE id = $1 AND status = 'sending'
             AND updated_at < now() - make_interval(secs => $2) RETURNING *""",
        withdrawal_id,
        lease_s,
    )


async def stale(conn: Conn, older_than_s: float, limit: int = 500) -> list[asyncpg.Record]:
    """Withdrawals the payout pool has not touched for a while: a lost message or callback."""
    return await conn.fetch(
        """SELECT id, channel, currency FROM withdrawals
           WHERE status = ANY($1::text[]) AND updated_at < now() - make_interval(secs => $2)
           ORDER BY updated_at LIMIT $3""",
        ["requested", "sending", "sent"],
        older_than_s,
        limit,
    )
