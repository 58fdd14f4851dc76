"""Channel pool: one mailbox per channel queue; opens orders and sends refunds through the
channel's adapter, with retries on transient errors only and a shared circuit breaker."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

import asyncpg
import orjson
import tenacity
from aio_pika.abc import AbstractIncomingMessage

from adapters.base import (
    CardConfirming,
    ChannelAdapter,
    ChannelDeclined,
    ChannelError,
    ChannelOrder,
    ChannelTransientError,
    OrderCanceling,
    OrderRequest,
    RefundRequest,
)
from domain.channels import ChannelSpec
from domain.fx import Conversion
from domain.messages import (
    ChannelCallback,
    ChannelTask,
    LedgerCommand,
    RefundOutcome,
    envelope_decoder,
)
from domain.states import ENDED_UNPAID, PaymentStatus, RefundStatus
from domain.views import refund_view
from infra import metrics, store
from infra.alerts import OpsAlerts
from infra.anomaly import Anomalies, alphas_of
from routing.breaker import CircuitBreakers, State
from routing.health import HealthBook
from routing.volume import DailyVolume
from workers.context import Context
from workers.outcomes import EXPIRED, end_payment, learn_outcomes, publish_events
from workers.payouts import pay_out
from workers.runtime import Mailbox, gather_all

T = TypeVar("T")
A = TypeVar("A")
_tasks = envelope_decoder(ChannelTask)
log = logging.getLogger("juhe.channel")


class ChannelActor:
    """One channel's mailbox. The adapter and retry policy are looked up per call, so a
    change to the channel (credentials, URL, timeouts) applies from its next call on."""

    def __init__(
        self, ctx: Context, code: str, breakers: CircuitBreakers, alerts: OpsAlerts
    ) -> None:
        self.ctx = ctx
        self.code = code
        self.breakers = breakers
        self.alerts = alerts
        self.anomalies = Anomalies(ctx.redis, ctx.keys, alphas_of(ctx.settings.risk))
        self.health = HealthBook(ctx.redis, ctx.keys, ctx.settings.routing.health_window_s)
        self.volume = DailyVolume(ctx.redis, ctx.keys)

    @property
    def adapter(self) -> ChannelAdapter:
        adapter = self.ctx.channels.adapter(self.code)
        if adapter is None:
            # Channels are disabled, never deleted; a missing one means a broken row.
            raise ChannelTransientError("channel_unavailable", f"channel {self.code} not loaded")
        return adapter

    def _retrying(self, retries: bool) -> tenacity.AsyncRetrying:
        spec = self.ctx.channels.specs.get(self.code)
        attempts = max(1, spec.retries if spec and retries else 1)
        return tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(attempts),
            wait=tenacity.wait_exponential(multiplier=0.05, max=1.0),
            retry=tenacity.retry_if_exception_type(ChannelTransientError),
            reraise=True,
        )

    async def handle(self, batch: Sequence[AbstractIncomingMessage]) -> None:
        tasks = [task for message in batch for task in _tasks.decode(message.body)]
        await gather_all(
            [
                self.create_all([t for t in tasks if t.kind == "create"]),
                *(self.refund(t) for t in tasks if t.kind == "refund"),
                *(self.confirm(t) for t in tasks if t.kind == "confirm"),
                *(self.check(t) for t in tasks if t.kind == "check"),
                *(self.cancel(t) for t in tasks if t.kind == "cancel"),
                *(pay_out(self, t) for t in tasks if t.kind == "payout"),
            ]
        )

    async def call(
        self,
        operation: str,
        call: Callable[[A], Awaitable[T]],
        argument: A,
        *,
        retries: bool = True,
    ) -> T:
        """One logical channel call: breaker gate, retries (unless the call must be asked
        about before it is made again: a payout), health accounting."""
        if not await self.breakers.allow(self.code):
            metrics.channel_calls.labels(self.code, operation, "breaker_open").inc()
            raise ChannelTransientError("channel_unavailable", "the channel's breaker is open")
        started = time.perf_counter()
        try:
            result = await self._retrying(retries)(call, argument)
        except ChannelTransientError:
            await self._account(operation, "transient", started)
            raise
        except ChannelDeclined:
            await self._account(operation, "declined", started)
            raise
        await self._account(operation, "ok", started)
        return result

    async def _account(self, operation: str, outcome: str, started: float) -> None:
        """A decline is the channel working: only transient failures count against it."""
        metrics.channel_calls.labels(self.code, operation, outcome).inc()
        ok = outcome != "transient"
        await self.breakers.record(self.code, ok=ok)
        latency_ms = (time.perf_counter() - started) * 1000
        await self.health.record(self.code, None if ok else outcome, latency_ms)

    async def create_all(self, tasks: Sequence[ChannelTask]) -> None:
        """Open the channel orders of an envelope: one claim for all, the channel calls
        concurrently, one write for every order opened. Orders opened before another item's
        unexpected error are still written; then the error retries the envelope."""
        if not tasks:
            return
        ctx = self.ctx
        by_id = {t.id: t for t in tasks}
        ids = sorted(by_id)
        async with ctx.pg.acquire() as conn:
            rows = await store.claim_payments(conn, {i: by_id[i].fallbacks for i in ids}, self.code)
            # Ended meanwhile (canceled, expired) are left alone; `processing` ones not claimed
            # now are redeliveries after a crash, or failovers to this channel: their order is
            # opened (again, idempotently) if the payment is still this channel's.
            claimed = {r["id"] for r in rows}
            if missing := [i for i in ids if i not in claimed]:
                rows += await conn.fetch(
                    "SELECT * FROM payments WHERE id = ANY($1::text[]) AND status = $2 "
                    "AND channel = $3",
                    missing,
                    PaymentStatus.PROCESSING.value,
                    self.code,
                )
        # No hot copy of `processing`: it lasts one channel call, and readers lose nothing by
        # seeing `pending` until the order (or the failure) is written moments later.
        results = await asyncio.gather(
            *(self.open_order(r, by_id[r["id"]]) for r in rows), return_exceptions=True
        )
        opened = [
            (r["id"], o) for r, o in zip(rows, results, strict=True) if isinstance(o, ChannelOrder)
        ]
        if opened:
            async with ctx.pg.acquire() as conn, conn.transaction():
                written = await store.attach_channel_orders(conn, opened)
                await store.record_attempts(
                    conn, [(payment_id, self.code, "opened", None) for payment_id, _ in opened]
                )
            await ctx.hot.put_many(written)
            for row in written:
                if row["status"] in ENDED_UNPAID:
                    # Canceled or expired while its order was being opened: close that order.
                    await self.settle_from_channel(row, by_id[row["id"]].request_id)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def open_order(self, row: asyncpg.Record, task: ChannelTask) -> ChannelOrder | None:
        """The channel's order for a claimed payment, or None once the payment has failed or
        moved on to its next channel."""
        amount, currency = row["amount"], row["currency"]
        if row["fx"]:
            conversion = Conversion.from_doc(orjson.loads(row["fx"]))
            if time.time() > conversion.expires_at:
                # The quote was locked for the customer; a stale one is not charged.
                await self.fail(
                    row["id"], ChannelDeclined("fx_quote_expired", "the locked FX quote expired")
                )
                return None
            amount, currency = conversion.converted, conversion.target
        request = OrderRequest(
            payment_id=row["id"],
            amount=amount,
            currency=currency,
            description=row["description"],
            callback_url=f"{self.ctx.settings.gateway.callback_base_url}"
            f"/api/v1/payments/callback/{self.code}",
            return_url=row["return_url"],
            expires_at=row["expires_at"].timestamp(),
        )
        try:
            return await self.call("create", self.adapter.create_order, request)
        except ChannelDeclined as exc:
            await self.give_up(request, exc, "declined", task)
            return None
        except ChannelTransientError as exc:
            # We never heard back, but the order may exist (and be paid) at the channel: ask
            # before failing the payment. If the channel cannot say either, the message is
            # retried later rather than guessed at.
            try:
                state = await self.adapter.query_order(row["id"], None)
            except ChannelDeclined:
                await self.give_up(request, exc, "unavailable", task)
                return None
            return ChannelOrder(state.channel_order_id, None, None)

    async def give_up(
        self, request: OrderRequest, exc: ChannelError, outcome: str, task: ChannelTask
    ) -> None:
        """This channel refused the order or does not have it, so no money moved: the payment
        fails over to its next channel still enabled and with room under its daily cap, or
        fails when there is none. Either way the attempt is recorded."""
        ctx, payment_id = self.ctx, request.payment_id
        enabled = {s.code: s for s in ctx.channels.enabled}
        fallbacks = await self.volume.take(
            [c for c in task.fallbacks if c in enabled], enabled, request.currency, request.amount
        )
        async with ctx.pg.acquire() as conn, conn.transaction():
            await store.record_attempts(conn, [(payment_id, self.code, outcome, exc.code)])
            moved = bool(fallbacks) and await store.move_to_channel(
                conn, payment_id, self.code, fallbacks[0], fallbacks[1:]
            )
        if not moved:
            await self.fail(payment_id, exc)
            return
        metrics.channel_failovers.labels(self.code, fallbacks[0]).inc()
        log.warning(
            "payment fails over",
            extra={"payment_id": payment_id, "from_channel": self.code, "to_channel": fallbacks[0]},
        )
        following = ChannelTask(
            kind="create",
            id=payment_id,
            channel=fallbacks[0],
            fallbacks=tuple(fallbacks[1:]),
            request_id=task.request_id,
        )
        await ctx.publisher.send(ctx.queues.channel(fallbacks[0]), [following])

    async def confirm(self, task: ChannelTask) -> None:
        """Charge the customer's card on the payment's order. The channel's webhook reports
        the result; a decline fails the payment here already (a card is tried once per
        payment). A payment no longer awaiting its card is left alone."""
        adapter = self.adapter
        payment = await store.fetch_payment(self.ctx.pg, task.id)
        if (
            payment is None
            or payment["status"] != PaymentStatus.AWAITING_PAYMENT
            or payment["channel"] != self.code
            or not isinstance(adapter, CardConfirming)
            or task.payment_method is None
        ):
            log.warning("card confirmation ignored", extra={"payment_id": task.id})
            return
        order = payment["channel_order_id"]
        try:
            await self.call(
                "confirm", functools.partial(adapter.confirm, order), task.payment_method
            )
        except ChannelDeclined as exc:
            # A redelivered confirm of a card already charged is refused too (where the
            # channel forgets idempotency keys): never fail a payment the channel has paid.
            ask = functools.partial(adapter.query_order, payment["id"])
            if (await self.call("query", ask, order)).status != "paid":
                await self.fail(task.id, exc)

    async def check(self, task: ChannelTask) -> None:
        """An overdue payment awaiting its customer: before it expires, its order is closed at
        the channel (where the channel can) or the channel is asked. Paid (or failed) there,
        the channel's word goes to the ledger as the callback that never came; otherwise the
        payment expires. A transient failure leaves it to the next check."""
        payment = await store.fetch_payment(self.ctx.pg, task.id)
        if (
            payment is None
            or payment["status"] != PaymentStatus.AWAITING_PAYMENT
            or payment["channel"] != self.code
        ):
            return
        if not await self.settle_from_channel(payment, task.request_id):
            await end_payment(
                self.ctx, payment["id"], PaymentStatus.EXPIRED, "payment.expired", **EXPIRED
            )

    async def cancel(self, task: ChannelTask) -> None:
        """A payment canceled with an order open at the channel: close the order, so the
        customer cannot pay it late. If they already have, the money is at the channel for a
        payment that ended: recorded (as a stale callback) and raised to operations."""
        payment = await store.fetch_payment(self.ctx.pg, task.id)
        if (
            payment is None
            or payment["status"] not in ENDED_UNPAID
            or payment["channel"] != self.code
            or not payment["channel_order_id"]
        ):
            return
        await self.settle_from_channel(payment, task.request_id)

    async def settle_from_channel(self, payment: asyncpg.Record, request_id: str) -> bool:
        """Close the payment's order where the channel can, else ask about it. False when
        nobody paid it; True when the channel says paid or failed, which is sent to the ledger
        (applied if the payment still awaits it, recorded as stale if it ended)."""
        adapter, payment_id = self.adapter, payment["id"]
        order = payment["channel_order_id"]
        if isinstance(adapter, OrderCanceling):
            try:
                await self.call(
                    "cancel", functools.partial(adapter.cancel_order, payment_id), order
                )
                return False
            except ChannelDeclined:
                pass  # paid already, or no such order: ask
        try:
            state = await self.call(
                "query", functools.partial(adapter.query_order, payment_id), order
            )
        except ChannelDeclined:
            return False  # the channel has no such order: nobody paid it
        if state.status not in ("paid", "failed"):
            return False
        ended = payment["status"] in ENDED_UNPAID
        log.log(
            logging.ERROR if ended and state.status == "paid" else logging.WARNING,
            "the channel's word on a payment arrived by asking",
            extra={
                "payment_id": payment_id,
                "status": payment["status"],
                "at_channel": state.status,
            },
        )
        if ended and state.status == "paid":
            await self.alerts.send(
                "payment.paid_after_end", payment_id=payment_id, channel=self.code
            )
        found = ChannelCallback(
            channel=self.code,
            event_id=f"check:{payment_id}:{state.status}",
            payment_id=payment_id,
            channel_order_id=state.channel_order_id,
            outcome=state.status,
            amount=str(state.amount),
            currency=state.currency,
            request_id=request_id,
        )
        command = LedgerCommand(callback=found, request_id=request_id)
        await self.ctx.publisher.send(self.ctx.queues.ledger, [command])
        return True

    async def fail(self, payment_id: str, exc: ChannelError) -> None:
        """Before money moves, an order the channel refused or does not have is a failed payment
        (a decline the anomaly models learn)."""
        row = await end_payment(
            self.ctx,
            payment_id,
            PaymentStatus.FAILED,
            "payment.failed",
            failure_code=exc.code,
            failure_message=exc.message,
        )
        if row is not None:
            await learn_outcomes(self.ctx, self.anomalies, [row])

    async def refund(self, task: ChannelTask) -> None:
        ctx = self.ctx
        async with ctx.pg.acquire() as conn, conn.transaction():
            refund, payment = await store.reserve_refund(conn, task.id)
            if refund is None:
                return
            if payment is None and refund["status"] == RefundStatus.PENDING:
                refund = await store.transition_refund(
                    conn,
                    task.id,
                    RefundStatus.FAILED,
                    failure_code="amount_exceeds_refundable",
                    failure_message="the refund exceeds what is left to refund on the payment",
                )
                owner = await store.fetch_payment(conn, refund["payment_id"])
                events = await store.add_events(
                    conn, [("refund.failed", refund_view(refund), owner)]
                )
            else:
                events = []
        if events:
            await ctx.hot.put_refund(refund)
            await publish_events(ctx, events)
            return
        if refund["status"] != RefundStatus.PROCESSING:
            return
        if payment is None:
            payment = await store.fetch_payment(ctx.pg, refund["payment_id"])
        else:
            await ctx.hot.put_payment(payment)
        await ctx.hot.put_refund(refund)
        amount, currency = refund["amount"], refund["currency"]
        if payment["fx"]:
            # Refunded at the channel in what it charged: this refund's slice of the payment,
            # so the refunds together return exactly what was charged.
            conversion = Conversion.from_doc(orjson.loads(payment["fx"]))
            before = refund["reserved_before"]
            amount = conversion.refund_at_channel(before, amount, payment["amount"])
            currency = conversion.target
        request = RefundRequest(
            refund_id=refund["id"],
            payment_id=payment["id"],
            channel_order_id=payment["channel_order_id"],
            amount=amount,
            currency=currency,
            destination=refund["destination"],
        )
        try:
            result = await self.call("refund", self.adapter.refund, request)
            if result.pending:
                return  # sent; the channel's watcher reports how it ends
            outcome = RefundOutcome(
                refund_id=refund["id"],
                succeeded=True,
                channel_refund_id=result.channel_refund_id,
                request_id=task.request_id,
            )
        except ChannelDeclined as exc:
            outcome = RefundOutcome(
                refund_id=refund["id"],
                succeeded=False,
                failure_code=exc.code,
                failure_message=exc.message,
                request_id=task.request_id,
            )
        # A transient failure propagates: the message is retried later, never guessed at.
        await ctx.publisher.send(
            ctx.queues.ledger, [LedgerCommand(refund=outcome, request_id=task.request_id)]
        )


async def run(ctx: Context) -> None:
    alerts = ctx.alerts

    async def breaker_changed(channel: str, state: State) -> None:
        await alerts.send("breaker." + state.name.lower(), channel=channel)

    breakers = CircuitBreakers(ctx.redis, ctx.keys, ctx.settings.breaker, breaker_changed)
    s = ctx.settings.channel
    async with asyncio.TaskGroup() as group:
        started: set[str] = set()

        async def start_mailboxes(specs: Mapping[str, ChannelSpec]) -> None:
            """A channel created while the pool runs gets its mailbox as soon as the pool
            hears of it; a disabled one keeps its mailbox to finish what it was given."""
            for code in sorted(set(specs) - started):
                actor = ChannelActor(ctx, code, breakers, alerts)
                mailbox = Mailbox(
                    ctx,
                    f"channel.{code}",
                    ctx.queues.channel(code),
                    actor.handle,
                    prefetch=s.prefetch,
                    actors=s.concurrency,
                )
                group.create_task(mailbox.run())
                started.add(code)

        await start_mailboxes(ctx.channels.specs)
        ctx.channels.listen(start_mailboxes)
