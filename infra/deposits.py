"""Crypto deposits in PostgreSQL: addresses issued per payment, the chain events found for them,
and the recent blocks the watcher followed (its progress, and what a reorg is checked against)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import asyncpg

from domain.chain import Transfer
from domain.ids import new_id

Conn = asyncpg.Connection | asyncpg.Pool


async def issue(
    pg: asyncpg.Pool,
    chain: str,
    channel: str,
    payment_id: str,
    asset: str,
    amount_due: int,
    derive: Callable[[int], str],
) -> asyncpg.Record:
    """The payment's deposit address, allocated at the chain's next index in one transaction
    with its row; the same row again for a payment that has one (a retried create), so an
    index is never used twice and a payment never gets two addresses."""
    async with pg.acquire() as conn, conn.transaction():
        held = await conn.fetchrow(
            "SELECT * FROM deposit_addresses WHERE payment_id = $1", payment_id
        )
        if held is not None:
            return held
        await conn.execute(
            "INSERT INTO deposit_counters (chain) VALUES ($1) ON CONFLICT DO NOTHING", chain
        )
        index = await conn.fetchval(
            "UPDATE deposit_counters SET next_index = next_index + 1 WHERE chain = $1 "
            "RETURNING next_index - 1",
            chain,
        )
        return await conn.fetchrow(
            """INSERT INTO deposit_addresses
                   (chain, idx, address, payment_id, channel, asset, amount_due)
               VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *""",
            chain,
            index,
            derive(index),
            payment_id,
            channel,
            asset,
            amount_due,
        )


async def of_payment(conn: Conn, payment_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM deposit_addresses WHERE payment_id = $1", payment_id)


async def issued(conn: Conn, chain: str, addresses: Sequence[str]) -> set[str]:
    """Which of these addresses were ever issued on the chain (ended payments' too)."""
    rows = await conn.fetch(
        "SELECT address FROM deposit_addresses WHERE chain = $1 AND address = ANY($2::text[])",
        chain,
        list(addresses),
    )
    return {r["address"] for r in rows}


async def transfers(conn: Conn, chain: str, address: str) -> list[Transfer]:
    rows = await conn.fetch(
        "SELECT * FROM chain_events WHERE chain = $1 AND address = $2 ORDER BY block_number",
        chain,
        address,
    )
    return [
        Transfer(
            tx_hash=r["tx_hash"],
            log_index=r["log_index"],
            block_hash=r["block_hash"],
            block_number=r["block_number"],
            address=r["address"],
            asset=r["asset"],
            amount=int(r["amount"]),
            orphaned=r["orphaned"],
        )
        for r in rows
    ]


async def record(conn: asyncpg.Connection, chain: str, found: Sequence[Transfer]) -> int:
    """Chain events, each once: the same (tx, log, block) seen again changes nothing."""
    if not found:
        return 0
    rows = await conn.fetch(
        """INSERT INTO chain_events
               (chain, tx_hash, log_index, block_hash, block_number, address, asset, amount)
           SELECT $1, * FROM unnest($2::text[], $3::int[], $4::text[], $5::bigint[], $6::text[],
                                    $7::text[], $8::numeric[])
           ON CONFLICT DO NOTHING RETURNING 1""",
        chain,
        [t.tx_hash for t in found],
        [t.log_index for t in found],
        [t.block_hash for t in found],
        [t.block_number for t in found],
        [t.address for t in found],
        [t.asset for t in found],
        [t.amount for t in found],
    )
    await conn.execute(
        """UPDATE deposit_addresses SET recheck = true
           WHERE chain = $1 AND address = ANY($2::text[]) AND credited IS NOT NULL
             AND NOT recheck""",
        chain,
        sorted({t.address for t in found}),
    )
    return len(rows)


async def tip(conn: Conn, channel: str) -> asyncpg.Record | None:
    """The last block the watcher finished for the channel: where it resumes."""
    return await conn.fetchrow(
        "SELECT number, hash FROM chain_blocks WHERE channel = $1 ORDER BY number DESC LIMIT 1",
        channel,
    )


async def follow(
    conn: asyncpg.Connection, channel: str, number: int, block_hash: str, parent: str, keep: int
) -> None:
    """Block `number` done; blocks older than the last `keep` are forgotten."""
    await conn.execute(
        """INSERT INTO chain_blocks (channel, number, hash, parent_hash) VALUES ($1, $2, $3, $4)
           ON CONFLICT (channel, number) DO UPDATE SET hash = $3, parent_hash = $4""",
        channel,
        number,
        block_hash,
        parent,
    )
    await conn.execute(
        "DELETE FROM chain_blocks WHERE channel = $1 AND number <= $2", channel, number - keep
    )


async def drop_tip(conn: asyncpg.Connection, channel: str, chain: str, number: int) -> list[str]:
    """A block we followed left the canonical chain: forget it and orphan its events. Returns
    the deposit addresses whose payments must be recomputed."""
    gone = await conn.fetchval(
        "DELETE FROM chain_blocks WHERE channel = $1 AND number = $2 RETURNING hash",
        channel,
        number,
    )
    rows = await conn.fetch(
        """UPDATE chain_events SET orphaned = true
           WHERE chain = $1 AND block_hash = $2 AND NOT orphaned RETURNING address""",
        chain,
        gone,
    )
    return sorted({r["address"] for r in rows})


async def reorged_deposits(conn: Conn, channel: str) -> list[asyncpg.Record]:
    """Deposits reported paid, of payments still succeeded, with an orphaned event: a reorg
    may have taken back what credited them."""
    return await conn.fetch(
        """SELECT d.*, p.status AS payment_status FROM deposit_addresses d
           JOIN payments p ON p.id = d.payment_id
           WHERE d.channel = $1 AND d.reported = 'paid' AND p.status = 'succeeded'
             AND EXISTS (SELECT 1 FROM chain_events e WHERE e.chain = d.chain
                         AND e.address = d.address AND e.orphaned)""",
        channel,
    )


async def rechecked_deposits(conn: Conn, channel: str) -> list[asyncpg.Record]:
    """Credited deposits that received transfers since: what arrived beyond their credit is
    surplus, left to operations."""
    return await conn.fetch(
        "SELECT * FROM deposit_addresses WHERE channel = $1 AND recheck", channel
    )


async def note_surplus(
    conn: asyncpg.Connection, row: asyncpg.Record, surplus: int, settled: bool
) -> bool:
    """Surplus on a credited deposit, total so far: the part not noted before becomes a
    `crypto_surplus` discrepancy (its amount in `channel_value`), in one transaction with the
    note, so a crash never notes it twice or not at all. `settled`: every transfer to the
    address is at depth, so it needs no further look until another arrives. True when a new
    discrepancy was opened."""
    new = surplus - int(row["surplus"])
    async with conn.transaction():
        if new > 0:
            await conn.execute(
                """INSERT INTO recon_discrepancies (id, channel, kind, type, reference, juhe_id,
                   channel_value, juhe_value)
               VALUES ($1, $2, 'crypto_surplus', 'payment', $3, $4, $5, $6)""",
                new_id("rcd"),
                row["channel"],
                row["address"],
                row["payment_id"],
                str(new),
                str(row["credited"]),
            )
        await conn.execute(
            """UPDATE deposit_addresses SET surplus = greatest(surplus, $2),
                      recheck = recheck AND NOT $3
               WHERE payment_id = $1""",
            row["payment_id"],
            surplus,
            settled,
        )
    return new > 0


async def note_short_at_end(conn: asyncpg.Connection, row: asyncpg.Record, confirmed: int) -> bool:
    """A deposit whose payment ended before enough arrived: once, a `crypto_underpaid`
    discrepancy with what is confirmed (`channel_value`) against what was due. True when
    opened now."""
    async with conn.transaction():
        opened = await conn.fetchval(
            """INSERT INTO recon_discrepancies (id, channel, kind, type, reference, juhe_id,
                   channel_value, juhe_value)
               VALUES ($1, $2, 'crypto_underpaid', 'payment', $3, $4, $5, $6)
               ON CONFLICT (juhe_id) WHERE kind = 'crypto_underpaid' DO NOTHING
               RETURNING 1""",
            new_id("rcd"),
            row["channel"],
            row["address"],
            row["payment_id"],
            str(confirmed),
            str(row["amount_due"]),
        )
        await conn.execute(
            "UPDATE deposit_addresses SET short_at_end = true WHERE payment_id = $1",
            row["payment_id"],
        )
    return opened is not None


async def accept_short(conn: Conn, payment_id: str, credited: int) -> None:
    """Operations accepted a deposit left short: it is credited what arrived, and the watcher
    treats anything more as surplus."""
    await conn.execute(
        """UPDATE deposit_addresses SET reported = 'paid', credited = $2
           WHERE payment_id = $1 AND reported IS DISTINCT FROM 'paid'""",
        payment_id,
        credited,
    )


async def open_deposits(conn: Conn, channel: str) -> list[asyncpg.Record]:
    """Deposits not yet reported paid that have any event, orphaned ones too (a reorg may
    have taken their transfer away): what the watcher recomputes each round, as confirmations
    grow with every block. Those of payments that expired or were canceled are watched too: a
    transfer to their address is reported like any, and the ledger keeps it for operations."""
    return await conn.fetch(
        """SELECT d.*, p.status AS payment_status FROM deposit_addresses d
           JOIN payments p ON p.id = d.payment_id
           WHERE d.channel = $1 AND d.reported IS DISTINCT FROM 'paid'
             AND p.status = ANY(ARRAY['awaiting_payment', 'expired', 'canceled'])
             AND EXISTS (SELECT 1 FROM chain_events e
                         WHERE e.chain = d.chain AND e.address = d.address)""",
        channel,
    )


async def unswept(conn: Conn, channel: str, limit: int = 50) -> list[asyncpg.Record]:
    """Credited USDT deposits whose tokens are still on their address."""
    return await conn.fetch(
        """SELECT * FROM deposit_addresses
           WHERE channel = $1 AND reported = 'paid' AND swept_at IS NULL AND asset = 'USDT'
           ORDER BY created_at LIMIT $2""",
        channel,
        limit,
    )


async def mark_swept(conn: Conn, payment_id: str) -> None:
    await conn.execute(
        "UPDATE deposit_addresses SET swept_at = now() WHERE payment_id = $1 AND swept_at IS NULL",
        payment_id,
    )
