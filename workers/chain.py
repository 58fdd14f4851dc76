"""Chain watcher pool: follows each crypto channel's chain block by block from where it
stopped, records transfers to the deposit addresses ever issued, shows each open deposit's
confirmations on its payment, and reports `paid` to the ledger once the amount due is deep
enough, as a `ChannelCallback` like any channel's.

Progress is the last block done, kept in PostgreSQL with the recent blocks' hashes: a restarted
watcher resumes after it and catches up on what was mined meanwhile, and a block whose parent is
not the hash we kept means a reorg, so our tip is dropped (its events orphaned) until the
chains agree again; the tip itself is compared with the chain's block at its height each round,
so a replaced head block is noticed at once. Recording is idempotent (events keyed by tx hash,
log index and block hash) and the ledger applies a (channel, event id) once, so a re-read block
or a repeated report counts once. One process watches each channel at a time (a PostgreSQL
session lock); other chain pools stand by and take over when it goes. The decisions are
`domain.chain`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Literal

import asyncpg
import orjson

from adapters.base import (
    ChainBlock,
    ChainWatching,
    ChannelDeclined,
    ChannelTransientError,
    DepositSweeping,
)
from adapters.registry import CHAIN_ADAPTERS
from domain.chain import (
    confirmations,
    confirming,
    credit,
    deposit,
    taken_back,
)
from domain.channels import ChannelSpec
from domain.ledger import sending_cost, sweep_cost
from domain.messages import ChannelCallback, ChannelTask, LedgerCommand, RefundOutcome
from infra import chain_sends, db, deposits, store
from workers.context import Context

log = logging.getLogger("juhe.chain")


class Watcher:
    """One crypto channel's chain."""

    def __init__(self, ctx: Context, code: str) -> None:
        self.ctx = ctx
        self.code = code
        self.settings = ctx.settings.chain

    @property
    def adapter(self) -> ChainWatching:
        adapter = self.ctx.channels.adapter(self.code)
        if not isinstance(adapter, ChainWatching):
            raise ChannelTransientError("channel_unavailable", f"channel {self.code} not loaded")
        return adapter

    def depth(self, asset: str, head: int, finalized: int | None) -> int:
        """Blocks deep a transfer in `asset` must be: its configured depth, or, at 0, as deep
        as the chain's finalized block is now."""
        required = self.settings.confirmations.get(asset, 0)
        if required > 0:
            return required
        if finalized is None:
            raise ChannelTransientError("channel_unavailable", f"{self.code}: no finalized block")
        return confirmations(finalized, head)

    async def finalized(self, adapter: ChainWatching) -> int | None:
        """The chain's finalized block number, asked only where some asset settles there."""
        assets = self.ctx.channels.specs[self.code].currencies or self.settings.confirmations
        if all(self.settings.confirmations.get(asset, 0) > 0 for asset in assets):
            return None
        return await adapter.finalized()

    async def run(self) -> None:
        """Rounds while this process holds the channel's watch: a PostgreSQL session lock on a
        connection of its own. With several chain pools running (one per machine, say), one
        watches each channel and the others stand by; when the watching process or its
        connection ends, the lock goes with it and a standby takes over."""
        while True:
            try:
                conn = await db.connect(self.ctx.settings.postgres.dsn)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning(
                    "chain watch: no database", extra={"channel": self.code, "error": str(exc)}
                )
                await asyncio.sleep(self.settings.poll_ms / 1000)
                continue
            try:
                await self.watch(conn)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("chain watch lost", extra={"channel": self.code, "error": str(exc)})
            finally:
                await conn.close()

    async def watch(self, conn: asyncpg.Connection) -> None:
        key = f"juhe.chain.{self.code}"
        # the lock's holder gives no signal when it goes: a standby asks again each poll
        while not await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", key):  # noqa: ASYNC110
            await asyncio.sleep(self.settings.poll_ms / 1000)
        log.info("chain watch taken", extra={"channel": self.code})
        while True:
            await conn.execute("SELECT 1")  # the lock is this connection's: is it still there?
            try:
                busy = await self.round()
            except (ChannelTransientError, OSError) as exc:
                log.warning("chain round failed", extra={"channel": self.code, "error": str(exc)})
                busy = False
            if not busy:
                await asyncio.sleep(self.settings.poll_ms / 1000)

    async def round(self) -> bool:
        """Follow the chain up to its head (at most `blocks_per_round` blocks), then recompute
        the open deposits. True when blocks are left to read."""
        adapter = self.adapter
        chain = await adapter.chain()
        head = await adapter.head()
        tip = await deposits.tip(self.ctx.pg, self.code)
        while tip is not None and not await self.canonical(adapter, tip, head):
            await self.drop_tip(chain, tip["number"])
            tip = await deposits.tip(self.ctx.pg, self.code)
        # A first start looks back over the blocks it would keep: a deposit may be paid before
        # the watcher first runs.
        number = tip["number"] + 1 if tip else max(0, head - self.settings.keep_blocks + 1)
        tip_hash = tip["hash"] if tip else None
        last = min(head, number + self.settings.blocks_per_round - 1)
        while number <= last:
            block = await adapter.block(number)
            if tip_hash is not None and block.parent_hash != tip_hash:
                await self.drop_tip(chain, number - 1)
                tip = await deposits.tip(self.ctx.pg, self.code)
                number = tip["number"] + 1 if tip else number - 1
                tip_hash = tip["hash"] if tip else None
                continue
            await self.follow(chain, block)
            tip_hash = block.hash
            number += 1
        finalized = await self.finalized(adapter)
        await self.report(chain, head, finalized)
        await self.recheck(chain, head, finalized)
        await self.reverse(chain, head, finalized)
        await self.sends(adapter, head, finalized)
        if self.settings.sweep_usdt and isinstance(adapter, DepositSweeping):
            await self.sweeps(adapter)
        return last < head

    async def canonical(self, adapter: ChainWatching, tip: Mapping, head: int) -> bool:
        """Is the last block we followed still the chain's block at its height? Asked every
        round, so a replaced tip is noticed before any block is built on the new one."""
        if tip["number"] > head:
            return False
        return await adapter.block_hash(tip["number"]) == tip["hash"]

    async def drop_tip(self, chain: str, number: int) -> None:
        async with self.ctx.pg.acquire() as conn, conn.transaction():
            touched = await deposits.drop_tip(conn, self.code, chain, number)
        log.warning(
            "reorg: a followed block left the chain",
            extra={"channel": self.code, "block": number, "deposits": len(touched)},
        )

    async def follow(self, chain: str, block: ChainBlock) -> None:
        """Record the block's transfers to issued addresses and the block itself, in one
        transaction: a crash in between re-reads the whole block."""
        found, number, block_hash = block.transfers, block.number, block.hash
        async with self.ctx.pg.acquire() as conn, conn.transaction():
            ours = await deposits.issued(conn, chain, sorted({t.address for t in found}))
            mine = [t for t in found if t.address in ours]
            recorded = await deposits.record(conn, chain, mine)
            await deposits.follow(
                conn, self.code, number, block_hash, block.parent_hash, self.settings.keep_blocks
            )
        if recorded:
            log.info(
                "chain transfers recorded",
                extra={"channel": self.code, "block": number, "transfers": recorded},
            )

    async def report(self, chain: str, head: int, finalized: int | None) -> None:
        """Each open deposit's progress onto its payment (only when it changed), and `paid` to
        the ledger once what is confirmed pays it (the tolerance counted): sent before it is
        marked, so a crash between resends it, which the ledger counts once. What arrived
        beyond the tolerance is noted as surplus for operations. Paid to a payment that ended
        (expired, canceled), it is raised to operations too; the ledger records it as paid
        after end (reconciliation's `paid_after_end`), to be accepted or refunded, never posted
        by itself; one left short at its payment's end is a `crypto_underpaid` discrepancy."""
        ctx = self.ctx
        for row in await deposits.open_deposits(ctx.pg, self.code):
            asset, due = row["asset"], int(row["amount_due"])
            tolerance = self.settings.tolerance(asset)
            transfers = await deposits.transfers(ctx.pg, chain, row["address"])
            state = deposit(
                due, asset, transfers, head, self.depth(asset, head, finalized), tolerance
            )
            ended = row["payment_status"] != "awaiting_payment"
            progress = {**state.doc(), "received_minor": str(state.received)}
            updated = await ctx.pg.fetchrow(
                """UPDATE payments SET crypto = crypto || $2::jsonb, version = version + 1,
                          updated_at = now()
                   WHERE id = $1 AND status = 'awaiting_payment' AND crypto IS NOT NULL
                     AND NOT crypto @> $2::jsonb RETURNING *""",
                row["payment_id"],
                orjson.dumps(progress).decode(),
            )
            if confirming(state, due, tolerance):
                updated = await self.hold_open(row["payment_id"]) or updated
            if updated is not None:
                await ctx.hot.put_payment(updated)
            paid = credit(state.confirmed, due, tolerance)
            if paid is None:
                if ended and state.confirmed > 0 and not row["short_at_end"]:
                    await self.short_at_end(row, state.confirmed)
                continue
            # what arrived beyond the credit is noted by `recheck`, this round or after a crash
            await self.tell_ledger(
                row, "paid", due, credited=paid.credited, surplus=paid.surplus > 0
            )
            log.log(
                logging.ERROR if ended else logging.INFO,
                "deposit confirmed",
                extra={
                    "channel": self.code,
                    "payment_id": row["payment_id"],
                    "status": row["payment_status"],
                    "head": head,
                    "credited": str(paid.credited),
                    "surplus": str(paid.surplus),
                },
            )
            if ended:
                await ctx.alerts.send(
                    "payment.paid_after_end", payment_id=row["payment_id"], channel=self.code
                )

    async def recheck(self, chain: str, head: int, finalized: int | None) -> None:
        """Credited deposits that received more since: what is confirmed beyond the credit is
        surplus, noted once for operations; looked at until every transfer is at depth."""
        ctx = self.ctx
        for row in await deposits.rechecked_deposits(ctx.pg, self.code):
            asset, due = row["asset"], int(row["amount_due"])
            transfers = await deposits.transfers(ctx.pg, chain, row["address"])
            depth = self.depth(asset, head, finalized)
            state = deposit(due, asset, transfers, head, depth, self.settings.tolerance(asset))
            surplus = max(0, state.confirmed - int(row["credited"]))
            async with ctx.pg.acquire() as conn:
                opened = await deposits.note_surplus(
                    conn, row, surplus, settled=state.confirmed == state.received
                )
            if opened:
                await self.raise_surplus(row, surplus - int(row["surplus"]))

    async def sends(self, adapter: ChainWatching, head: int, finalized: int | None) -> None:
        """Transfers out of the hot wallet, until each is deep enough: then a refund's outcome
        to the ledger, with the gas it cost (the channel's, in ETH, whatever was sent), sent
        before it is marked, like `paid`; a payout's withdrawal back to the channel pool, which
        asks the adapter and moves it. One the node no longer knows (dropped,
        or its block reorganised away) is broadcast again: the same signed transaction."""
        ctx = self.ctx
        for send in await chain_sends.open_sends(ctx.pg, self.code):
            receipt = await adapter.receipt(send["tx_hash"])
            if receipt is None:
                await adapter.broadcast(send["raw_tx"], send["tx_hash"])
                continue
            depth = self.depth(send["asset"], head, finalized)
            if confirmations(receipt.block_number, head) < depth:
                continue
            fee, succeeded = receipt.fee, receipt.succeeded
            status = "confirmed" if succeeded else "failed"
            if send["kind"] in ("sweep_gas", "sweep", "return"):
                await self.spent(send, status, fee, adapter.native)
                self.log_sent(send, succeeded, fee)
                continue
            if send["kind"] == "payout":
                # The channel pool asks the adapter, which reads this row: marked first, and a
                # lost hand-over is the scheduler's to re-drive, like a lost payout callback.
                await chain_sends.settle(ctx.pg, send["id"], status, fee)
                task = ChannelTask(kind="payout", id=send["id"], channel=self.code)
                await ctx.publisher.send(ctx.queues.channel(self.code), [task])
                self.log_sent(send, succeeded, fee)
                continue
            outcome = RefundOutcome(
                refund_id=send["id"],
                succeeded=succeeded,
                channel_refund_id=send["tx_hash"],
                failure_code=None if succeeded else "transfer_reverted",
                failure_message=None if succeeded else "the chain reverted the transfer",
                network_fee=str(fee),
                network_fee_currency=adapter.native,
            )
            await ctx.publisher.send(ctx.queues.ledger, [LedgerCommand(refund=outcome)])
            await chain_sends.settle(ctx.pg, send["id"], status, fee)
            self.log_sent(send, succeeded, fee)

    async def sweeps(self, adapter: DepositSweeping) -> None:
        """Credited USDT deposits into the hot wallet: first the ETH for the gas, from the
        hot wallet, then, once that is deep enough, the tokens, signed with the deposit's own
        key by the signer (which holds the deposit account's xprv; nothing else does)."""
        pg = self.ctx.pg
        for row in await deposits.unswept(pg, self.code):
            pid = row["payment_id"]
            topped = await chain_sends.of(pg, f"gas:{pid}")
            if topped is not None and topped["status"] == "sent":
                continue  # its gas is on its way
            if await chain_sends.of(pg, f"sweep:{pid}") is not None:
                continue  # on its way; `sends` marks it swept
            try:
                if topped is None and (need := await adapter.sweep_gas(row["address"])) > 0:
                    await adapter.send_out(f"gas:{pid}", "sweep_gas", "ETH", row["address"], need)
                    continue
                sweep = await adapter.sweep_out(f"sweep:{pid}", row)
            except ChannelDeclined as exc:
                log.warning(
                    "sweep refused",
                    extra={"channel": self.code, "payment_id": pid, "code": exc.code},
                )
                return
            if sweep is None and await adapter.token_balance(row["address"]) == 0:
                await deposits.mark_swept(pg, pid)  # nothing (left) to sweep

    async def spent(self, send: asyncpg.Record, status: str, fee: int, native: str) -> None:
        """A sweep's or a discrepancy's return's transfer at depth: its gas to the channel's
        sweep-gas account or its cost, and a sweep's deposit marked swept, in one transaction,
        so nothing happens twice. (A return moves money the ledger never held: only its gas
        is posted.)"""
        sweeping = send["kind"] != "return"
        account = sweep_cost(self.code) if sweeping else None
        lines = sending_cost(self.code, native, fee, account)
        async with self.ctx.pg.acquire() as conn, conn.transaction():
            if not await chain_sends.settle(conn, send["id"], status, fee):
                return
            if lines:
                kind = "sweep_gas" if sweeping else "return_gas"
                await store.post_entries(conn, [(kind, send["id"], lines)])
            if send["kind"] == "sweep" and status == "confirmed":
                await deposits.mark_swept(conn, send["id"].removeprefix("sweep:"))

    def log_sent(self, send: asyncpg.Record, succeeded: bool, fee: int) -> None:
        log.log(
            logging.INFO if succeeded else logging.ERROR,
            "hot wallet transfer settled",
            extra={
                "channel": self.code,
                "kind": send["kind"],
                "id": send["id"],
                "tx_hash": send["tx_hash"],
                "succeeded": succeeded,
                "network_fee_wei": str(fee),
            },
        )

    async def raise_surplus(self, row: asyncpg.Record, amount: int) -> None:
        detail = {"payment_id": row["payment_id"], "channel": self.code, "asset": row["asset"]}
        log.error("crypto deposit surplus", extra={**detail, "amount_minor": str(amount)})
        await self.ctx.alerts.send("payment.crypto_surplus", **detail, amount_minor=str(amount))

    async def short_at_end(self, row: asyncpg.Record, confirmed: int) -> None:
        """Its payment ended before enough arrived: left to operations (accept what arrived,
        or return it), once."""
        async with self.ctx.pg.acquire() as conn:
            opened = await deposits.note_short_at_end(conn, row, confirmed)
        if opened:
            detail = {"payment_id": row["payment_id"], "channel": self.code}
            log.error("crypto deposit short at its payment's end", extra=detail)
            await self.ctx.alerts.send(
                "payment.crypto_underpaid", **detail, received_minor=str(confirmed)
            )

    async def tell_ledger(
        self,
        row: asyncpg.Record,
        outcome: Literal["paid", "reversed"],
        due: int,
        message: str | None = None,
        credited: int | None = None,
        surplus: bool = False,
    ) -> None:
        """Tell the ledger what the chain did to a deposit (through the callback path every
        channel uses, its event id once per outcome), then mark it told. Sent before it is
        marked: a crash between the two sends it again, and the ledger drops the repeat.
        `credited`: what a paid deposit is credited, when not exactly the amount due;
        `surplus`: more arrived than that, for `recheck` to note (marked with the report, so a
        crash after it loses nothing)."""
        told = ChannelCallback(
            channel=self.code,
            event_id=f"chain:{row['payment_id']}:{outcome}",
            payment_id=row["payment_id"],
            channel_order_id=row["address"],
            outcome=outcome,
            amount=str(due),
            currency=row["asset"],
            failure_message=message,
            received=None if credited in (None, due) else str(credited),
        )
        await self.ctx.publisher.send(self.ctx.queues.ledger, [LedgerCommand(callback=told)])
        await self.ctx.pg.execute(
            """UPDATE deposit_addresses SET reported = $2, credited = coalesce($3, credited),
                      recheck = recheck OR $4
               WHERE payment_id = $1""",
            row["payment_id"],
            outcome,
            credited,
            surplus,
        )

    async def hold_open(self, payment_id: str) -> asyncpg.Record | None:
        """Put the expiry of a payment paid in full off to `confirming_grace_s` from now, only
        once less than half of that is left: a write now and then, not every round."""
        return await self.ctx.pg.fetchrow(
            """UPDATE payments SET expires_at = now() + make_interval(secs => $2),
                      version = version + 1, updated_at = now()
               WHERE id = $1 AND status = 'awaiting_payment'
                 AND expires_at < now() + make_interval(secs => $2 / 2.0)
               RETURNING *""",
            payment_id,
            float(self.settings.confirming_grace_s),
        )

    async def reverse(self, chain: str, head: int, finalized: int | None) -> None:
        """A credited deposit a reorg took back: `reversed` to the ledger (a reversal entry and
        `payment.reversed`) and to operations. Sent before it is marked, like `paid`."""
        ctx = self.ctx
        for row in await deposits.reorged_deposits(ctx.pg, self.code):
            asset, due = row["asset"], int(row["amount_due"])
            transfers = await deposits.transfers(ctx.pg, chain, row["address"])
            depth = self.depth(asset, head, finalized)
            state = deposit(due, asset, transfers, head, depth, self.settings.tolerance(asset))
            if not taken_back(state, int(row["credited"] or due)):
                continue
            await self.tell_ledger(
                row, "reversed", due, "a chain reorganisation removed the confirmed transfer"
            )
            log.error(
                "a confirmed deposit was taken back by a reorg",
                extra={"channel": self.code, "payment_id": row["payment_id"], "head": head},
            )
            await ctx.alerts.send(
                "payment.reversed", payment_id=row["payment_id"], channel=self.code
            )


async def run(ctx: Context) -> None:
    async with asyncio.TaskGroup() as group:
        started: set[str] = set()

        async def start_watchers(specs: Mapping[str, ChannelSpec]) -> None:
            """A crypto channel created while the pool runs is watched from then on."""
            for code in sorted(c for c, s in specs.items() if s.adapter in CHAIN_ADAPTERS):
                if code not in started:
                    group.create_task(Watcher(ctx, code).run())
                    started.add(code)

        await start_watchers(ctx.channels.specs)
        ctx.channels.listen(start_watchers)
        await asyncio.Event().wait()  # with no crypto channel yet, wait for one
