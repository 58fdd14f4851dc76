"""Ledger pool: channel callbacks and refund outcomes → guarded transitions, one balanced
journal entry each, and outbox events, for a whole batch in one transaction.

Exactly-once comes from the database, not the transport: a callback is applied only if its
(channel, event id) row is new, a payment only moves from the statuses its target allows, and
a journal entry's (kind, ref) is unique. The decisions themselves are `domain.lifecycle`.

A callback is applied only to the payment it belongs to: from the payment's channel, naming the
payment's order. One that arrives before the channel pool has recorded the order is first
confirmed by asking the channel about that order (`confirm_orders`); any other is refused,
counted, logged and raised to operations, and acknowledged: retrying it cannot make it belong.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import asyncpg
import orjson
from aio_pika.abc import AbstractIncomingMessage

from adapters.base import ChannelDeclined, ChannelTransientError
from domain.channels import FREE
from domain.commission import Terms, terms_of
from domain.fx import Conversion
from domain.ledger import Posting, agent_lines
from domain.lifecycle import (
    REFUSED,
    Confirmation,
    PaymentFacts,
    on_callback,
    on_refund_outcome,
    refusal,
)
from domain.messages import ChannelCallback, LedgerCommand, RefundOutcome, envelope_decoder
from domain.settlement import redirect_released
from domain.states import ENDED_WITHOUT_MONEY, PaymentStatus, RefundStatus
from domain.views import payment_view, refund_view
from infra import metrics, reconciliation, settlement, store
from infra.agents import ChainCache
from infra.anomaly import Anomalies, alphas_of
from workers.context import Context
from workers.outcomes import learn_outcomes, publish_events
from workers.runtime import Mailbox

_commands = envelope_decoder(LedgerCommand)
log = logging.getLogger("juhe.ledger")

_PAYMENTS = """SELECT p.*, m.fee_bps, m.fee_fixed_minor FROM payments p
               JOIN merchants m ON m.id = p.merchant_id WHERE p.id = ANY($1::text[])"""
PAYMENT_WITH_PRICE = _PAYMENTS + " ORDER BY p.id FOR UPDATE OF p"
WITHOUT_ORDER = _PAYMENTS + " AND p.channel_order_id IS NULL"


def facts(row: asyncpg.Record) -> PaymentFacts:
    return PaymentFacts(
        id=row["id"],
        merchant_id=row["merchant_id"],
        status=PaymentStatus(row["status"]),
        amount=row["amount"],
        currency=row["currency"],
        channel=row["channel"],
        fee_bps=row["fee_bps"],
        fee_fixed=row["fee_fixed_minor"],
        refund_reserved=row["refund_reserved"],
        refunded_amount=row["refunded_amount"],
        conversion=Conversion.from_doc(orjson.loads(row["fx"])) if row["fx"] else None,
        channel_order_id=row["channel_order_id"],
    )


@dataclass
class Written:
    """What a committed batch must still copy to Redis and hand to the notify pool."""

    payments: list[asyncpg.Record] = field(default_factory=list)
    refunds: list[asyncpg.Record] = field(default_factory=list)
    events: list[tuple[str, str]] = field(default_factory=list)
    refused: list[tuple[ChannelCallback, str]] = field(default_factory=list)


class LedgerActor:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.chains = ChainCache()
        self.anomalies = Anomalies(ctx.redis, ctx.keys, alphas_of(ctx.settings.risk))

    async def handle(self, batch: Sequence[AbstractIncomingMessage]) -> None:
        commands = [c for m in batch for c in _commands.decode(m.body)]
        callbacks = [c.callback for c in commands if c.callback]
        refunds = [c.refund for c in commands if c.refund]
        written = Written()
        confirmations = await self.confirm_orders(callbacks) if callbacks else {}
        async with self.ctx.pg.acquire() as conn, conn.transaction():
            if callbacks:
                await self.apply_callbacks(conn, callbacks, confirmations, written)
            for outcome in refunds:
                await self.apply_refund(conn, outcome, written)
        await self.ctx.hot.put_many(written.payments, written.refunds)
        await publish_events(self.ctx, written.events)
        await self.report_refused(written.refused)
        await learn_outcomes(self.ctx, self.anomalies, written.payments)

    async def confirm_orders(
        self, callbacks: Sequence[ChannelCallback]
    ) -> dict[tuple[str, str], Confirmation]:
        """Ask the channel about the order of each callback that would apply to a payment with
        no order recorded yet: the channel paid before its answer to our create was written
        (a fast payer, a slow or lost answer). The channel's own API, called with our
        credentials, says whether that order is this payment's, which a callback signed with
        a leaked secret cannot fake. Asked once, within the channel's timeout, before the
        transaction, so no row stays locked while a channel answers; a channel that cannot
        answer leaves the callback `unconfirmed` rather than holding back every other callback
        behind it with retries (the payment then settles when the channel is asked at its
        expiry, as after a lost callback)."""
        rows = await self.ctx.pg.fetch(WITHOUT_ORDER, sorted({c.payment_id for c in callbacks}))
        payments = {r["id"]: facts(r) for r in rows}
        asking = [
            c
            for c in callbacks
            if c.payment_id in payments and refusal(payments[c.payment_id], c) == "unconfirmed"
        ]
        answers = await asyncio.gather(*(self.ask_channel(c) for c in asking))
        return {(c.channel, c.event_id): a for c, a in zip(asking, answers, strict=True)}

    async def ask_channel(self, callback: ChannelCallback) -> Confirmation:
        adapter = self.ctx.channels.adapter(callback.channel)
        if adapter is None:
            return Confirmation.UNAVAILABLE
        try:
            state = await adapter.query_order(callback.payment_id, callback.channel_order_id)
        except ChannelDeclined:  # no such order, or another payment's (the adapter checks)
            return Confirmation.DENIED
        except ChannelTransientError:
            return Confirmation.UNAVAILABLE
        if state.channel_order_id != callback.channel_order_id:
            return Confirmation.DENIED
        return Confirmation.CONFIRMED

    async def report_refused(self, refused: Sequence[tuple[ChannelCallback, str]]) -> None:
        """Counted and logged (ids only); those that do not belong to their payment, or claim
        a part payment as paid, are also raised to operations, all at once."""
        for c, reason in refused:
            metrics.callbacks_refused.labels(c.channel, reason).inc()
            log.warning(
                "channel callback not applied",
                extra={
                    "payment_id": c.payment_id,
                    "channel": c.channel,
                    "event_id": c.event_id,
                    "reason": reason,
                },
            )
        await asyncio.gather(
            *(
                self.ctx.alerts.send(
                    "callback.refused",
                    payment_id=c.payment_id,
                    channel=c.channel,
                    event_id=c.event_id,
                    reason=reason,
                )
                for c, reason in refused
                if reason in REFUSED
            )
        )

    async def apply_callbacks(
        self,
        conn: asyncpg.Connection,
        callbacks: Sequence[ChannelCallback],
        confirmations: dict[tuple[str, str], Confirmation],
        written: Written,
    ) -> None:
        fresh_keys = {
            (r["channel"], r["event_id"])
            for r in await conn.fetch(
                """INSERT INTO channel_events (channel, event_id, payment_id, outcome, result)
                   SELECT *, 'applied' FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
                   ON CONFLICT DO NOTHING RETURNING channel, event_id""",
                [c.channel for c in callbacks],
                [c.event_id for c in callbacks],
                [c.payment_id for c in callbacks],
                [c.outcome for c in callbacks],
            )
        }
        fresh: list[ChannelCallback] = []
        for c in callbacks:
            if (c.channel, c.event_id) in fresh_keys:
                fresh.append(c)
                fresh_keys.discard((c.channel, c.event_id))
        if not fresh:
            return
        rows = await conn.fetch(PAYMENT_WITH_PRICE, sorted({c.payment_id for c in fresh}))
        state = {r["id"]: facts(r) for r in rows}
        original = {r["id"]: r["status"] for r in rows}
        paid = {c.payment_id for c in fresh if c.outcome == "paid"}
        # Commission policies may differ by payment method; '*' when the payment names none.
        chain_key = {r["id"]: (r["merchant_id"], r["currency"], r["method"] or "*") for r in rows}
        method = {r["id"]: r["method"] for r in rows}
        chains = await self.chains.chains(conn, {chain_key[i] for i in paid if i in chain_key})
        reversing = sorted({c.payment_id for c in fresh if c.outcome == "reversed"} & set(state))
        paid_entries = {i: await store.entry_postings(conn, "payment", i) for i in reversing}
        reversed_commissions: list[tuple[str, str, str, str, int, Terms | None]] = []
        changes: dict[str, dict[str, Any]] = {}
        entries: list[tuple[str, str, Sequence[Posting]]] = []
        earned: list[tuple[str, str, str, str, int, Terms | None]] = []
        event_types: list[tuple[str, str]] = []
        results: list[str] = []
        for c in fresh:
            payment = state.get(c.payment_id)
            spec = self.ctx.channels.specs.get(c.channel)
            cost = spec.cost(method[c.payment_id], payment.charged[0]) if spec and payment else FREE
            chain = chains.get(chain_key[payment.id], ()) if payment else ()
            confirmation = confirmations.get((c.channel, c.event_id), Confirmation.NOT_ASKED)
            effect = on_callback(
                payment, c, cost, chain, confirmation, paid_entries.get(c.payment_id, ())
            )
            results.append(effect.result)
            if payment is None or effect.status is None:
                continue
            state[c.payment_id] = replace(payment, status=effect.status)
            change = changes.setdefault(c.payment_id, {})
            change["status"] = effect.status.value
            if effect.fee is not None:
                change["fee"] = effect.fee
            if effect.failure_code:
                change["failure_code"] = effect.failure_code
                change["failure_message"] = effect.failure_message
            if effect.status is PaymentStatus.REVERSED:
                released = await settlement.released_entities(conn, c.payment_id)
                postings = redirect_released(effect.postings, released)
                entries.append(("reversal", c.payment_id, postings))
                reversed_commissions += [
                    (
                        f"reversal:{c.payment_id}",
                        agent,
                        payment.merchant_id,
                        payment.currency,
                        amount,
                        None,
                    )
                    for agent, amount in agent_lines(postings)
                ]
            elif effect.postings:
                entries.append(("payment", c.payment_id, effect.postings))
            terms = terms_of(chain)
            earned += [
                (c.payment_id, agent, payment.merchant_id, payment.currency, amount, terms[agent])
                for agent, amount in effect.commissions
            ]
            if effect.event_type:
                event_types.append((c.payment_id, effect.event_type))
        # Rows went in as `applied`, the usual result; only the others are rewritten (all in
        # this transaction, so nobody sees the interim value).
        other = [(c, r) for c, r in zip(fresh, results, strict=True) if r != "applied"]
        written.refused += [(c, r) for c, r in other if r in REFUSED or r == "unconfirmed"]
        await reconciliation.record_paid_after_end(
            conn,
            [
                (c.channel, c.payment_id, c.channel_order_id, original[c.payment_id])
                for c, r in other
                if r == "stale"
                and c.outcome == "paid"
                and original[c.payment_id] in ENDED_WITHOUT_MONEY
            ],
        )
        if other:
            await conn.execute(
                """UPDATE channel_events e SET result = u.r
                   FROM unnest($1::text[], $2::text[], $3::text[]) AS u(c, id, r)
                   WHERE e.channel = u.c AND e.event_id = u.id""",
                [c.channel for c, _ in other],
                [c.event_id for c, _ in other],
                [r for _, r in other],
            )
        if not changes:
            return
        ids = sorted(changes)
        updated = await conn.fetch(
            """UPDATE payments p SET status = u.s, fee = COALESCE(u.fee::numeric, p.fee),
                      failure_code = COALESCE(u.fc, p.failure_code),
                      failure_message = COALESCE(u.fm, p.failure_message),
                      version = p.version + 1, updated_at = now()
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
                    AS u(id, s, fee, fc, fm, prev)
               WHERE p.id = u.id AND p.status = u.prev
               RETURNING p.*""",
            ids,
            [changes[i]["status"] for i in ids],
            [str(changes[i]["fee"]) if "fee" in changes[i] else None for i in ids],
            [changes[i].get("failure_code") for i in ids],
            [changes[i].get("failure_message") for i in ids],
            [original[i] for i in ids],
        )
        if len(updated) != len(ids):
            raise RuntimeError("payments changed under a row lock; retrying the batch")
        await store.post_entries(conn, entries)
        await store.record_commissions(conn, "payment", earned)
        await store.record_commissions(conn, "reversal", reversed_commissions)
        by_id = {r["id"]: r for r in updated}
        public_url = self.ctx.settings.gateway.public_url
        written.events += await store.add_events(
            conn,
            [(t, payment_view(by_id[pid], public_url), by_id[pid]) for pid, t in event_types],
        )
        written.payments += updated

    async def apply_refund(
        self, conn: asyncpg.Connection, outcome: RefundOutcome, written: Written
    ) -> None:
        refund = await conn.fetchrow(
            "SELECT * FROM refunds WHERE id = $1 FOR UPDATE", outcome.refund_id
        )
        if refund is None:
            return
        (payment_row,) = await conn.fetch(PAYMENT_WITH_PRICE, [refund["payment_id"]])
        payment = facts(payment_row)
        effect = on_refund_outcome(
            RefundStatus(refund["status"]),
            refund["amount"],
            payment,
            await store.entry_postings(conn, "payment", payment.id),
            outcome.succeeded,
            (outcome.network_fee_currency or payment.currency, int(outcome.network_fee))
            if outcome.network_fee
            else None,
        )
        if effect.refund_status is None:
            return
        refund = await store.transition_refund(
            conn,
            refund["id"],
            effect.refund_status,
            channel_refund_id=outcome.channel_refund_id,
            failure_code=outcome.failure_code,
            failure_message=outcome.failure_message,
        )
        payment_row = await conn.fetchrow(
            """UPDATE payments SET refunded_amount = refunded_amount + $2,
                      refund_reserved = refund_reserved + $3,
                      status = COALESCE($4, status), version = version + 1, updated_at = now()
               WHERE id = $1 RETURNING *""",
            payment.id,
            effect.refunded_delta,
            effect.reserved_delta,
            effect.payment_status.value if effect.payment_status else None,
        )
        if effect.postings:
            released = await settlement.released_entities(conn, payment.id)
            postings = redirect_released(effect.postings, released)
            await store.post_entries(conn, [("refund", refund["id"], postings)])
            await store.record_commissions(
                conn,
                "refund",
                [
                    (refund["id"], agent, payment.merchant_id, payment.currency, amount, None)
                    for agent, amount in agent_lines(effect.postings)
                ],
            )
        if effect.event_type:
            written.events += await store.add_events(
                conn, [(effect.event_type, refund_view(refund), payment_row)]
            )
        written.payments.append(payment_row)
        written.refunds.append(refund)


async def run(ctx: Context) -> None:
    s = ctx.settings.ledger
    actor = LedgerActor(ctx)
    await Mailbox(
        ctx,
        "ledger",
        ctx.queues.ledger,
        actor.handle,
        prefetch=s.prefetch,
        actors=1,
        batch_size=s.batch_size,
        batch_wait_s=s.batch_wait_ms / 1000,
    ).run()
