"""Risk pool: assess each new payment, reject it or route it to a channel's queue."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

from aio_pika.abc import AbstractIncomingMessage

from domain.fees import Rate
from domain.messages import ChannelTask, Message, PaymentIntent, envelope_decoder
from domain.risk import MerchantLimits, RiskInput, assess
from domain.states import PaymentStatus
from infra.merchants import MerchantDirectory
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
        self._rates: dict[str, float] = {}
        self._rates_until = 0.0
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

    async def health(self) -> dict[str, Health]:
        """Breakers once per envelope (an open one takes its channel out of routing); success
        rates from the shared health windows, refreshed every second."""
        if time.monotonic() >= self._rates_until:
            minimum = self.ctx.settings.routing.min_samples
            windows = await self.book.windows(c.code for c in self.channels)
            self._rates = {
                code: w.success_rate
                if w.success_rate is not None and w.attempts >= minimum
                else 1.0
                for code, w in windows.items()
            }
            self._rates_until = time.monotonic() + 1.0
        return {
            c.code: Health(await self.breakers.routable(c.code), self._rates.get(c.code, 1.0))
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
            request = RouteRequest(int(intent.amount), intent.currency, intent.method)
            order = route(
                request,
                self.channels,
                health,
                merchant.rules if merchant else (),
                draw=random.random(),
                explore=ctx.settings.routing.explore_share,
            )
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
    await Mailbox(
        "risk",
        ctx.amqp,
        ctx.publisher,
        ctx.queues.risk,
        actor.handle,
        prefetch=s.prefetch,
        actors=s.concurrency,
    ).run()
