"""Risk pool: assess each new payment, reject it or route it to a channel's queue."""

from __future__ import annotations

from collections.abc import Sequence

from aio_pika.abc import AbstractIncomingMessage

from domain.messages import ChannelTask, PaymentIntent, decoder, encode
from domain.risk import MerchantLimits, RiskInput, assess
from domain.states import PaymentStatus
from infra.merchants import MerchantDirectory
from routing.select import Candidate, choose_channel
from workers.context import Context
from workers.outcomes import end_payment
from workers.runtime import Mailbox

_intent = decoder(PaymentIntent)
NO_LIMITS = MerchantLimits(currencies=frozenset())


class RiskActor:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.merchants = MerchantDirectory(ctx.pg, ctx.settings.gateway.merchant_cache_ttl_s)
        self.candidates = {
            code: Candidate(code, frozenset(ch.currencies))
            for code, ch in ctx.settings.channels.items()
        }

    async def handle(self, batch: Sequence[AbstractIncomingMessage]) -> None:
        for message in batch:
            await self.assess(_intent.decode(message.body))

    async def assess(self, intent: PaymentIntent) -> None:
        ctx = self.ctx
        merchant = await self.merchants.merchant(intent.merchant_id)
        async with ctx.redis.pipeline(transaction=False) as pipe:
            pipe.sismember(ctx.keys.blocked_ips(), intent.customer_ip or "")
            pipe.sismember(ctx.keys.blocked_emails(), (intent.customer_email or "").lower())
            ip_blocked, email_blocked = await pipe.execute()
        decision = assess(
            RiskInput(
                intent.currency, int(intent.amount), intent.customer_ip, intent.customer_email
            ),
            merchant.limits if merchant else NO_LIMITS,
            bool(ip_blocked),
            bool(email_blocked),
        )
        if not decision.approved:
            await end_payment(
                ctx,
                intent.id,
                PaymentStatus.REJECTED,
                "payment.rejected",
                failure_code=decision.code,
                failure_message=decision.reason,
            )
            return
        channel = choose_channel(intent.currency, self.candidates)
        if channel is None:
            await end_payment(
                ctx,
                intent.id,
                PaymentStatus.FAILED,
                "payment.failed",
                failure_code="no_channel",
                failure_message="no channel takes this currency",
            )
            return
        task = ChannelTask(
            kind="create", id=intent.id, channel=channel, request_id=intent.request_id
        )
        await ctx.publisher.publish(ctx.queues.channel(channel), encode(task), intent.request_id)


async def run(ctx: Context) -> None:
    actor = RiskActor(ctx)
    s = ctx.settings.risk
    await Mailbox(
        "risk", ctx.amqp, ctx.queues.risk, actor.handle, prefetch=s.prefetch, actors=s.concurrency
    ).run()
