"""Risk pool: assess each new payment, reject it or route it to a channel's queue."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence

import orjson
from aio_pika.abc import AbstractIncomingMessage

from domain.fees import Rate
from domain.fx import Conversion, quote
from domain.messages import ChannelTask, Message, PaymentIntent, envelope_decoder
from domain.risk import MerchantLimits, RiskInput, assess
from domain.states import PaymentStatus
from infra.fx import RateUnavailable, rate_source
from infra.invalidation import follow
from infra.merchants import Merchant, MerchantDirectory
from routing.breaker import CircuitBreakers
from routing.health import HealthBook
from routing.strategies import ChannelProfile, Health, RouteRequest, route
from workers.context import Context
from workers.outcomes import end_payment
from workers.runtime import Mailbox, gather_all

_intents = envelope_decoder(PaymentIntent)
NO_LIMITS = MerchantLimits(currencies=frozenset())


class RiskActor:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.merchants = MerchantDirectory(ctx.pg, ctx.settings.gateway.merchant_cache_ttl_s)
        self.breakers = CircuitBreakers(ctx.redis, ctx.keys, ctx.settings.breaker)
        self.book = HealthBook(ctx.redis, ctx.keys, ctx.settings.routing.health_window_s)
        self.fx_rates = rate_source(ctx.settings.fx)
        self._success: dict[str, float] = {}
        self._success_until = 0.0
        self.channels = [
            ChannelProfile(
                code,
                methods=frozenset(ch.methods),
                currencies=frozenset(ch.currencies),
                min_amount=ch.min_amount_minor,
                max_amount=ch.max_amount_minor,
                priority=ch.priority,
                weight=ch.weight,
                cost=Rate(ch.cost_bps, ch.cost_fixed_minor),
            )
            for code, ch in ctx.settings.channels.items()
        ]
        # Currencies some channel charges in, for payments no channel takes as they are.
        self.charge_currencies = sorted({c for p in self.channels for c in p.currencies})

    def takes(self, currency: str) -> bool:
        """Some channel takes the currency as it is: its payments are never converted, even
        while those channels are down (they wait or fail rather than change currency)."""
        return any(not p.currencies or currency in p.currencies for p in self.channels)

    async def route_converted(
        self, intent: PaymentIntent, merchant: Merchant | None, health: dict[str, Health]
    ) -> list[str]:
        """No channel takes the payment's currency: quote it into the first currency (in
        alphabetical order) that an eligible channel takes, lock the quote on the payment, and
        route in that currency."""
        fx = self.ctx.settings.fx
        for currency in self.charge_currencies:
            if currency == intent.currency:
                continue
            try:
                mid = await self.fx_rates.mid(intent.currency, currency)
            except RateUnavailable:
                continue
            q = quote(
                int(intent.amount),
                intent.currency,
                currency,
                mid,
                fx.spread_bps,
                time.time(),
                fx.quote_ttl_s,
            )
            order = route(
                RouteRequest(q.converted, currency, intent.method, intent.customer_country),
                self.channels,
                health,
                merchant.rules if merchant else (),
                draw=random.random(),
                explore=self.ctx.settings.routing.explore_share,
            )
            if order:
                await self.ctx.pg.execute(
                    "UPDATE payments SET fx = $2::jsonb WHERE id = $1 AND fx IS NULL",
                    intent.id,
                    orjson.dumps(Conversion.of(q).to_doc()).decode(),
                )
                return order
        return []

    async def health(self) -> dict[str, Health]:
        """Breakers once per envelope (an open one takes its channel out of routing); success
        rates from the shared health windows, refreshed every second."""
        if time.monotonic() >= self._success_until:
            minimum = self.ctx.settings.routing.min_samples
            windows = await self.book.windows(c.code for c in self.channels)
            self._success = {
                code: w.success_rate
                if w.success_rate is not None and w.attempts >= minimum
                else 1.0
                for code, w in windows.items()
            }
            self._success_until = time.monotonic() + 1.0
        return {
            c.code: Health(await self.breakers.routable(c.code), self._success.get(c.code, 1.0))
            for c in self.channels
        }

    async def handle(self, batch: Sequence[AbstractIncomingMessage]) -> None:
        """A whole envelope at once: one Redis round trip for every blocklist lookup, one
        envelope out per channel queue."""
        ctx = self.ctx
        intents = [i for message in batch for i in _intents.decode(message.body)]
        async with ctx.redis.pipeline(transaction=False) as pipe:
            for intent in intents:
                pipe.sismember(ctx.keys.blocked_ips(), intent.customer_ip or "")
                pipe.sismember(ctx.keys.blocked_emails(), (intent.customer_email or "").lower())
            flags = await pipe.execute()
        health = await self.health()
        routed: list[tuple[str, Message]] = []
        endings = []
        for n, intent in enumerate(intents):
            merchant = await self.merchants.merchant(intent.merchant_id)
            decision = assess(
                RiskInput(
                    intent.currency, int(intent.amount), intent.customer_ip, intent.customer_email
                ),
                merchant.limits if merchant else NO_LIMITS,
                bool(flags[2 * n]),
                bool(flags[2 * n + 1]),
            )
            request = RouteRequest(
                int(intent.amount), intent.currency, intent.method, intent.customer_country
            )
            order = route(
                request,
                self.channels,
                health,
                merchant.rules if merchant else (),
                draw=random.random(),
                explore=ctx.settings.routing.explore_share,
            )
            if not order and decision.approved and not self.takes(intent.currency):
                order = await self.route_converted(intent, merchant, health)
            channel = order[0] if order else None
            fallbacks = tuple(order[1 : 1 + ctx.settings.routing.max_failover])
            if not decision.approved:
                endings.append(
                    end_payment(
                        ctx,
                        intent.id,
                        PaymentStatus.REJECTED,
                        "payment.rejected",
                        failure_code=decision.code,
                        failure_message=decision.reason,
                    )
                )
            elif channel is None:
                endings.append(
                    end_payment(
                        ctx,
                        intent.id,
                        PaymentStatus.FAILED,
                        "payment.failed",
                        failure_code="no_channel",
                        failure_message="no available channel takes this payment",
                    )
                )
            else:
                task = ChannelTask(
                    kind="create",
                    id=intent.id,
                    channel=channel,
                    fallbacks=fallbacks,
                    request_id=intent.request_id,
                )
                routed.append((ctx.queues.channel(channel), task))
        await gather_all([*endings, ctx.publisher.send_many(routed)])


async def run(ctx: Context) -> None:
    actor = RiskActor(ctx)
    s = ctx.settings.risk
    following = asyncio.create_task(follow(ctx.redis, ctx.keys, actor.merchants))
    try:
        await Mailbox(
            "risk",
            ctx.amqp,
            ctx.publisher,
            ctx.queues.risk,
            actor.handle,
            prefetch=s.prefetch,
            actors=s.concurrency,
        ).run()
    finally:
        following.cancel()
