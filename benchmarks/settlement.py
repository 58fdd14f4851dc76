"""Issue 13's speed figures, in-process on synthetic books in a throwaway database: reconciling
a channel's statement file (against a plain `COPY` of the same file), and closing settlement
periods at two sizes (so how the close grows is visible).

The books are what the ledger pool would have written for one UTC day of the `sim` channel:
payments (some under an agent, who earns commission), partial refunds of every tenth, and
each one's balanced journal entry built by `domain.ledger`. The database is vacuumed and
analysed after each bulk write, as autovacuum would have done before the next day's job: the
plans are the steady state's, and no autovacuum runs under the clock.
"""

from __future__ import annotations

import csv
import io
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from adapters.base import Statement
from adapters.simulator import wire
from adapters.simulator.server import Order, Refund, Sandbox, statement_rows
from benchmarks.node import LocalNode, scratch_database
from domain.fees import Rate
from domain.ids import new_id
from domain.ledger import Posting, payment_succeeded, proportional_reversal
from domain.reconciliation import Kind, parse_statement
from infra import agents, audit, reconciliation, settlement, store
from infra.merchants import create_merchant

DAY = datetime(2026, 11, 30, tzinfo=UTC)  # a Monday: T+0 funds are available the same day
CHANNEL = "sim"
CURRENCIES = ("USD", "EUR", "TWD")
MERCHANTS = 4  # the first two under one agent
MERCHANT_FEE = Rate(250)
COMMISSION_SHARE = 40  # per cent of the merchant's fee
REFUND_EVERY = 10
CHUNK = 5_000  # journal entries per `store.post_entries` call while seeding
# what the seeding and the release run write (a whole-database VACUUM takes seconds more)
WRITTEN = "payments, refunds, journal_entries, postings, ledger_accounts, settlement_releases"


@dataclass(frozen=True, slots=True)
class Sale:
    """A captured payment and, for every tenth, its partial refund."""

    payment_id: str
    order_no: str
    merchant_id: str
    agent_id: str | None
    currency: str
    amount: int
    at: datetime
    refund_id: str | None = None
    refund_no: str | None = None
    refunded: int = 0


@dataclass(frozen=True, slots=True)
class Books:
    cost: Rate  # the channel's price, as the simulator charges it
    sales: tuple[Sale, ...]

    @property
    def refunds(self) -> list[Sale]:
        return [s for s in self.sales if s.refund_id]


async def _books(node: LocalNode, pool: asyncpg.Pool, entries: int) -> Books:
    """Merchants, their agent and terms, and `entries` payments and refunds with their journal
    entries, written in bulk; every entity settles T+0."""
    ids = []
    for n in range(MERCHANTS):
        merchant = await create_merchant(
            pool,
            node.box,
            name=f"bench-{n}",
            notify_url="http://127.0.0.1:9/",
            currencies=list(CURRENCIES),
            fee_bps=MERCHANT_FEE.bps,
        )
        ids.append(merchant.id)
    agent_id = new_id("agt")
    async with pool.acquire() as conn, conn.transaction():
        await agents.create_agent(
            conn,
            agent_id=agent_id,
            name="bench agent",
            email="agent@example.com",
            parent_id=None,
            status="active",
            grants=[],
        )
        for merchant_id in ids[:2]:
            await agents.place_merchant(conn, merchant_id, agent_id)
        for entity_id in (*ids, agent_id):
            await settlement.put_terms(conn, entity_id, "T+0", 0, 0)
    channel = node.settings.channels[CHANNEL]
    cost = Rate(channel.cost_bps, channel.cost_fixed_minor)
    books = Books(cost, tuple(_sales(ids, agent_id, entries)))
    await _write(pool, books)
    return books


def _sales(merchants: Sequence[str], agent_id: str, entries: int) -> list[Sale]:
    """`entries` payments and refunds together, spread over the day's first 20 hours."""
    rng = random.Random(13)
    count = round(entries * REFUND_EVERY / (REFUND_EVERY + 1))
    refunds = entries - count  # exactly `entries` in all
    out = []
    for n in range(count):
        merchant = merchants[n % len(merchants)]
        amount = rng.randrange(1_000, 500_000)
        refund = n % REFUND_EVERY == 0 and n // REFUND_EVERY < refunds
        refunded = rng.randrange(1, amount) if refund else 0
        out.append(
            Sale(
                payment_id=new_id("pay"),
                order_no=f"SIMB{n:09d}",
                merchant_id=merchant,
                agent_id=agent_id if merchant in merchants[:2] else None,
                currency=CURRENCIES[n % len(CURRENCIES)],
                amount=amount,
                at=DAY + timedelta(seconds=n * 72_000 / count),
                refund_id=new_id("re") if refunded else None,
                refund_no=f"SIMR{n:09d}" if refunded else None,
                refunded=refunded,
            )
        )
    return out


def _payment_postings(books: Books, s: Sale) -> list[Posting]:
    fee = MERCHANT_FEE.fee(s.amount)
    return payment_succeeded(
        merchant_id=s.merchant_id,
        channel=CHANNEL,
        currency=s.currency,
        amount=s.amount,
        fee=fee,
        channel_cost_amount=books.cost.fee(s.amount),
        commissions=[(s.agent_id, fee * COMMISSION_SHARE // 100)] if s.agent_id else (),
    )


async def _write(pool: asyncpg.Pool, books: Books) -> None:
    """Payments, refunds and their entries (a refund's reverses from pending: nothing is
    released yet), as the ledger pool writes them but in bulk."""
    sales, refunds = books.sales, books.refunds
    await pool.execute(
        """INSERT INTO payments (id, merchant_id, merchant_order_id, amount, currency, status,
                                 channel, channel_order_id, fee, refund_reserved, refunded_amount,
                                 created_at, expires_at)
           SELECT u.id, u.merchant, u.id, u.amount, u.currency,
                  CASE WHEN u.refunded > 0 THEN 'partially_refunded' ELSE 'succeeded' END,
                  $8, u.order_no, u.fee, u.refunded, u.refunded, u.at, u.at + interval '1 hour'
           FROM unnest($1::text[], $2::text[], $3::numeric[], $4::text[], $5::text[],
                       $6::numeric[], $7::numeric[], $9::timestamptz[])
                AS u(id, merchant, amount, currency, order_no, fee, refunded, at)""",
        [s.payment_id for s in sales],
        [s.merchant_id for s in sales],
        [s.amount for s in sales],
        [s.currency for s in sales],
        [s.order_no for s in sales],
        [MERCHANT_FEE.fee(s.amount) for s in sales],
        [s.refunded for s in sales],
        CHANNEL,
        [s.at for s in sales],
    )
    await pool.execute(
        """INSERT INTO refunds (id, payment_id, merchant_id, amount, currency, status,
                                channel_refund_id, created_at)
           SELECT u.id, u.payment, u.merchant, u.amount, u.currency, 'succeeded', u.no,
                  u.at + interval '1 hour'
           FROM unnest($1::text[], $2::text[], $3::text[], $4::numeric[], $5::text[],
                       $6::text[], $7::timestamptz[])
                AS u(id, payment, merchant, amount, currency, no, at)""",
        [s.refund_id for s in refunds],
        [s.payment_id for s in refunds],
        [s.merchant_id for s in refunds],
        [s.refunded for s in refunds],
        [s.currency for s in refunds],
        [s.refund_no for s in refunds],
        [s.at for s in refunds],
    )
    entries: list[tuple[datetime, str, str, list[Posting]]] = []
    for s in sales:
        postings = _payment_postings(books, s)
        entries.append((s.at, "payment", s.payment_id, postings))
        if s.refund_id:
            reversal = proportional_reversal(postings, s.refunded, s.amount)
            entries.append((s.at + timedelta(hours=1), "refund", s.refund_id, reversal))
    entries.sort(key=lambda e: e[0])
    async with pool.acquire() as conn:
        for i in range(0, len(entries), CHUNK):
            chunk = entries[i : i + CHUNK]
            async with conn.transaction():
                await store.post_entries(conn, [e[1:] for e in chunk], at=chunk[0][0])
        await conn.execute(f"VACUUM ANALYZE {WRITTEN}")


# --- reconciliation ---------------------------------------------------------------------------


def _statement(node: LocalNode, books: Books, faults: list[wire.StatementFault]) -> bytes:
    """The simulator's statement file for the day: its own rows and faults, from its state."""
    api_key = node.settings.channels[CHANNEL].api_key
    sandbox = Sandbox(settings=node.settings.simulator, accounts={}, costs={api_key: books.cost})
    sandbox.faults[api_key] = faults
    for s in books.sales:
        status: wire.OrderStatus = "PARTIALLY_REFUNDED" if s.refunded else "PAID"
        created = int(s.at.timestamp())
        sandbox.orders[s.order_no] = Order(
            s.order_no, api_key, s.payment_id, s.amount, s.currency, "", None, None, created,
            status, s.refunded, paid_at=created,
        )  # fmt: skip
        if s.refund_id and s.refund_no:
            refund = Refund(s.refund_no, s.order_no, s.refunded, created + 3600)
            sandbox.refunds[(api_key, s.refund_id)] = refund
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(wire.STATEMENT_COLUMNS)
    writer.writerows(statement_rows(sandbox, api_key, DAY))
    return out.getvalue().encode()


def _faults(books: Books) -> tuple[list[wire.StatementFault], set[tuple[str, str]]]:
    """One discrepancy of each kind the simulator injects (and a refund left out), with what a
    run must find for them."""
    sales, refunds = books.sales, books.refunds
    ghost = new_id("pay")
    picks = [s for s in sales if not s.refund_id][:5]
    lost_refund = refunds[-1].refund_id
    assert lost_refund is not None
    faults = [
        wire.StatementFault(kind="extra", merchant_ref=ghost, amount_minor="777"),
        wire.StatementFault(kind="omit", merchant_ref=picks[0].payment_id),
        wire.StatementFault(kind="amount", merchant_ref=picks[1].payment_id, delta=5),
        wire.StatementFault(kind="status", merchant_ref=picks[2].payment_id),
        wire.StatementFault(kind="fee", merchant_ref=picks[3].payment_id, delta=3),
        wire.StatementFault(kind="duplicate", merchant_ref=picks[4].payment_id),
        wire.StatementFault(kind="omit", merchant_ref=lost_refund),
    ]
    expected = {
        (Kind.MISSING_IN_JUHE.value, ghost),
        (Kind.MISSING_AT_CHANNEL.value, picks[0].payment_id),
        (Kind.AMOUNT.value, picks[1].payment_id),
        (Kind.STATUS.value, picks[2].payment_id),
        (Kind.FEE.value, picks[3].payment_id),
        (Kind.DUPLICATE.value, picks[4].payment_id),
        (Kind.MISSING_AT_CHANNEL.value, lost_refund),
    }
    return faults, expected


async def _copy(pool: asyncpg.Pool, content: bytes, table: str) -> float:
    """Seconds for a plain `COPY` of the file into a table of its columns, typed."""
    async with pool.acquire() as conn:
        await conn.execute(
            f"""CREATE TABLE {table} (order_no text, merchant_ref text, type text,
                    amount_minor numeric, currency text, fee_minor numeric, status text,
                    created_at bigint, paid_at bigint)"""
        )
        started = time.perf_counter()
        await conn.copy_to_table(table, source=io.BytesIO(content), format="csv", header=True)
        return time.perf_counter() - started


async def reconcile(entries: int) -> dict[str, Any]:
    """One run of `infra.reconciliation.run` on the day's statement of `entries` records (the
    adapter's parse included), and a `COPY` of the same file before and after it."""
    async with scratch_database("recon") as (node, pool):
        books = await _books(node, pool, entries)
        faults, expected = _faults(books)
        content = _statement(node, books, faults)
        copy_before = await _copy(pool, content, "copy_before")
        started = time.perf_counter()
        lines = parse_statement(content.decode())
        parsed = time.perf_counter()
        actor = audit.Actor("bench", "platform")
        run, made = await reconciliation.run(
            pool, CHANNEL, DAY.date(), Statement(content, lines), actor
        )
        seconds = time.perf_counter() - started
        copy_after = await _copy(pool, content, "copy_after")
        found = await pool.fetch(
            "SELECT kind, juhe_id FROM recon_discrepancies WHERE run_id = $1", run["id"]
        )
        assert made and {(r["kind"], r["juhe_id"]) for r in found} == expected, found
        assert len(found) == len(expected), found
        # every record but the omitted two and the three changed ones agrees
        assert run["matched_count"] == len(books.sales) + len(books.refunds) - 5, dict(run)
        # the same file again is the same run, and writes nothing
        again, made_again = await reconciliation.run(
            pool, CHANNEL, DAY.date(), Statement(content, lines), actor
        )
        written = await pool.fetchval("SELECT count(*) FROM recon_discrepancies")
        assert not made_again and again["id"] == run["id"] and written == len(found)
        copy_s = (copy_before + copy_after) / 2
        return {
            "lines": len(lines),
            "matched": run["matched_count"],
            "discrepancies": len(found),
            "seconds": seconds,
            "parse_s": parsed - started,
            "lines_per_s": len(lines) / seconds,
            "copy_s": [copy_before, copy_after],
            "copy_lines_per_s": len(lines) / copy_s,
            "ratio": copy_s / seconds,
        }


# --- closing settlement periods ---------------------------------------------------------------


async def close_period(lines: int) -> dict[str, Any]:
    """`infra.settlement.run` (what the scheduler and the admin route call) on a day whose
    entries make about `lines` statement lines: late that day, which releases everything
    (T+0) and closes nothing; just after midnight, which closes the day into statements (the
    figure); and the next day with nothing new, which is what the books' history alone costs
    every run of the job."""
    async with scratch_database("settle") as (node, pool):
        # a payment or refund is a line for its merchant, and for the agent of half of them
        await _books(node, pool, lines * 2 // 3)
        expected = await pool.fetchval(
            """SELECT count(*) FROM postings p JOIN ledger_accounts a ON a.id = p.account_id
               WHERE a.name LIKE 'merchant:%:pending' OR a.name LIKE 'agent:%:commission'"""
        )
        started = time.perf_counter()
        released = await settlement.run(pool, node.settings, DAY + timedelta(hours=23))
        release_s = time.perf_counter() - started
        assert released is not None and not released.statements
        assert released.released == expected, (released.released, expected)
        await pool.execute(f"VACUUM ANALYZE {WRITTEN}")
        started = time.perf_counter()
        closed = await settlement.run(pool, node.settings, DAY + timedelta(days=1, minutes=5))
        seconds = time.perf_counter() - started
        assert closed is not None and closed.released == 0
        written = await pool.fetchrow(
            """SELECT count(*) AS lines, count(DISTINCT statement_id) AS statements,
                      count(DISTINCT entity_id) AS entities FROM settlement_lines"""
        )
        assert written["lines"] == expected and written["statements"] == len(closed.statements)
        started = time.perf_counter()
        idle = await settlement.run(pool, node.settings, DAY + timedelta(days=2, minutes=5))
        idle_s = time.perf_counter() - started
        assert idle is not None and not idle.released and not idle.statements
        return {
            "lines": expected,
            "statements": written["statements"],
            "entities": written["entities"],
            "seconds": seconds,
            "us_per_line": seconds / expected * 1e6,
            "release_s": release_s,
            "idle_next_day_s": idle_s,
        }


async def close_growth(small: int, large: int, rounds: int) -> dict[str, Any]:
    """The close at two sizes, and how its cost per line grows from one to the other (1:
    linear). The small size runs `rounds` times and its median counts: at 10,000 lines the
    close varies by about ±20 % between runs on this machine, more than the growth it shows."""
    runs = sorted([await close_period(small) for _ in range(rounds)], key=_per_line)
    figures = {"small": runs[len(runs) // 2], "large": await close_period(large)}
    growth = _per_line(figures["large"]) / _per_line(figures["small"])
    return {**figures, "small_us_per_line": [_per_line(r) for r in runs], "per_line_growth": growth}


def _per_line(figures: dict[str, Any]) -> float:
    return figures["us_per_line"]
