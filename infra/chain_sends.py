"""Transfers out of a crypto channel's hot wallet in PostgreSQL (refunds and payouts): the
wallet's next nonce, and each transfer as signed, so a retry broadcasts the very transaction it
signed before (same nonce, same hash) and never a second one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

Conn = asyncpg.Connection | asyncpg.Pool


async def of(conn: Conn, send_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM chain_sends WHERE id = $1", send_id)


async def record(
    pg: asyncpg.Pool,
    send_id: str,
    kind: str,
    channel: str,
    chain: str,
    wallet: str,
    on_chain_nonce: int,
    asset: str,
    to: str,
    amount: int,
    sign: Callable[[int], Awaitable[tuple[str, str]]],
) -> asyncpg.Record:
    """The transfer for `send_id`, signed at the wallet's next nonce (the larger of the one
    counted here and the chain's count, in case the wallet was used elsewhere) in one
    transaction with its row: `sign(nonce)` gives (raw transaction, hash). The same row
    again when it exists."""
    async with pg.acquire() as conn, conn.transaction():
        held = await of(conn, send_id)
        if held is not None:
            return held
        await conn.execute(
            """INSERT INTO chain_nonces (chain, address, next_nonce) VALUES ($1, $2, 0)
               ON CONFLICT DO NOTHING""",
            chain,
            wallet,
        )
        counted = await conn.fetchval(
            "SELECT next_nonce FROM chain_nonces WHERE chain = $1 AND address = $2 FOR UPDATE",
            chain,
            wallet,
        )
        nonce = max(counted, on_chain_nonce)
        raw, tx_hash = await sign(nonce)
        await conn.execute(
            "UPDATE chain_nonces SET next_nonce = $3 WHERE chain = $1 AND address = $2",
            chain,
            wallet,
            nonce + 1,
        )
        return await conn.fetchrow(
            """INSERT INTO chain_sends (id, kind, channel, chain, from_address, nonce, asset,
                   to_address, amount, raw_tx, tx_hash)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING *""",
            send_id,
            kind,
            channel,
            chain,
            wallet,
            nonce,
            asset,
            to,
            amount,
            raw,
            tx_hash,
        )


async def open_sends(conn: Conn, channel: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM chain_sends WHERE channel = $1 AND status = 'sent' ORDER BY nonce", channel
    )


async def settle(conn: Conn, send_id: str, status: str, network_fee: int) -> bool:
    """True when this call settled it (it was still `sent`)."""
    done = await conn.fetchval(
        """UPDATE chain_sends SET status = $2, network_fee = $3
           WHERE id = $1 AND status = 'sent' RETURNING 1""",
        send_id,
        status,
        network_fee,
    )
    return done is not None
