"""Risk pool: assess each new payment, reject it or route it to a channel's queue."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence

import orjson
from aio_pika.abc import AbstractIncomingMessage

from domain.fx import Conversion, quote
from domain.messages import ChannelTask, Message, PaymentIntent, envelope_decoder
from domain.risk import NO_LIMITS, outside
from domain.states import PaymentStatus
from infra.fx import RateUnavailable, rate_source
from infra.invalidation import follow
from infra.merchants import Merchant, MerchantDirectory
from infra.sealing import CUSTOMER_EMAIL, CUSTOMER_IP
from infra.secretbox import SecretBox
from routing.breaker import CircuitBreakers
from routing.health import HealthBook
from routing.strategies import ChannelProfile, Health, RouteRequest, route
from routing.volume import DailyVolume
from workers.context import Context
from workers.outcomes import end_payment
from workers.runtime import Mailbox, gather_all

_intents = envelope_decoder(PaymentIntent)


class RiskActor:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.merchants = MerchantDirectory(
            ctx.pg, ctx.box, ctx.settings.gateway.merchant_cache_ttl_s
        )
        self.breakers = CircuitBreakers(ctx.redis, ctx.keys, ctx.settings.breaker)
        self.book = HealthBook(ctx.redis, ctx.keys, ctx.settings.routing.health_window_s)
        self.fx_rates = rate_source(ctx.settings.fx)
        self._success: dict[str, float] = {}
        self._success_until = 0.0
        self.volume = DailyVolume(ctx.redis, ctx.keys)
        self._profiles: tuple[int, list[ChannelProfile]] = (-1, [])

    @property
    def channels(self) -> list[ChannelProfile]:
        """The enabled channels' routing profiles, rebuilt when the configuration changes."""
        registry = self.ctx.channels
        if self._profiles[0] != registry.version:
            self._profiles = (registry.version, [ChannelProfile.of(s) for s in registry.enabled])
        return self._profiles[1]

    @property
    def charge_currencies(self) -> list[str]:
        """Currencies some channel charges in, for payments no channel takes as they are."""
        return sorted({c for p in self.channels for c in p.currencies})

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
            request = RouteRequest(q.converted, currency, intent.method, intent.customer_country)
            order = await self.decide(request, intent.merchant_id, merchant, health)
            if order:
                await self.ctx.pg.execute(
                    "UPDATE payments SET fx = $2::jsonb WHERE id = $1 AND fx IS NULL",
                    intent.id,
                    orjson.dumps(Conversion.of(q).to_doc()).decode(),
                )
                return order
        return []

    async def decide(
        self,
        request: RouteRequest,
        merchant_id: str,
        merchant: Merchant | None,
        health: dict[str, Health],
    ) -> list[str]:
        """The channel order for a payment: the merchant's rules, the operators' switch-overs,
        then the first channel with room under its daily cap takes the payment."""
        order = route(
            request,
            self.channels,
            health,
            merchant.rules if merchant else (),
            draw=random.random(),
            explore=self.ctx.settings.routing.explore_share,
            switches=self.ctx.channels.switches(merchant_id),
        )
        return await self.volume.take(
            order, self.ctx.channels.specs, request.currency, request.amount
        )

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
        customers = [customer(ctx.box, i) for i in intents]
        async with ctx.redis.pipeline(transaction=False) as pipe:
            for ip, email in customers:
                pipe.sismember(ctx.keys.blocked_ips(), ip or "")
                pipe.sismember(ctx.keys.blocked_emails(), (email or "").lower())
            flags = await pipe.execute()
        health = await self.health()
        routed: list[tuple[str, Message]] = []
        endings = []
        for n, intent in enumerate(intents):
            merchant = await self.merchants.merchant(intent.merchant_id)
            fault = outside(
                intent.currency, int(intent.amount), merchant.limits if merchant else NO_LIMITS
            )
            if fault is None and flags[2 * n]:
                fault = ("blocked_ip", "customer IP is blocklisted")
            if fault is None and flags[2 * n + 1]:
                fault = ("blocked_email", "customer e-mail is blocklisted")
            request = RouteRequest(
                int(intent.amount), intent.currency, intent.method, intent.customer_country
            )
            order = await self.decide(request, intent.merchant_id, merchant, health)
            if not order and fault is None and not self.takes(intent.currency):
                order = await self.route_converted(intent, merchant, health)
            channel = order[0] if order else None
            fallbacks = tuple(order[1 : 1 + ctx.settings.routing.max_failover])
            if fault is not None:
                endings.append(
                    end_payment(
                        ctx,
                        intent.id,
                        PaymentStatus.REJECTED,
                        "payment.rejected",
                        failure_code=fault[0],
                        failure_message=fault[1],
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


def customer(box: SecretBox, intent: PaymentIntent) -> tuple[str | None, str | None]:
    """The customer's IP and e-mail, which the intent carries sealed (older intents, from
    before sealing at the gateway, in clear text: `open` takes those as they are)."""
    return (
        intent.customer_ip and CUSTOMER_IP.open(box, intent.id, intent.customer_ip),
        intent.customer_email and CUSTOMER_EMAIL.open(box, intent.id, intent.customer_email),
    )


async def run(ctx: Context) -> None:
    actor = RiskActor(ctx)
    s = ctx.settings.risk
    following = asyncio.create_task(follow(ctx.redis, ctx.keys, actor.merchants))
    try:
        await Mailbox(
            ctx,
            "risk",
            ctx.queues.risk,
            actor.handle,
            prefetch=s.prefetch,
            actors=s.concurrency,
        ).run()
    finally:
        following.cancel()
