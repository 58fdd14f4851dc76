"""Risk pool: judge each new payment by the live rule version, lists and velocity counters,
store the decision on the payment, then reject it or route it to a channel's queue."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Coroutine, Sequence
from typing import Any

import orjson
from aio_pika.abc import AbstractIncomingMessage

from domain.fx import Conversion, quote
from domain.messages import ChannelTask, Message, PaymentIntent, envelope_decoder
from domain.risk import (
    NO_LIMITS,
    Outcome,
    Transaction,
)
from domain.risk.alerts import AlertLimits, alerts_for, anomaly_alerts, surge_alerts
from domain.states import PaymentStatus
from infra import reviews
from infra.anomaly import NEW_COUNTRY, VOLUME, Anomalies, RuleWindows, alphas_of
from infra.fx import RateUnavailable, rate_source
from infra.invalidation import follow
from infra.merchants import Merchant, MerchantDirectory
from infra.risk import Judge, Judged, RiskBook, load_geo
from infra.sealing import CUSTOMER_EMAIL, CUSTOMER_IP
from infra.secretbox import SecretBox
from infra.velocity import Velocity
from routing.breaker import CircuitBreakers
from routing.health import HealthBook
from routing.strategies import ChannelProfile, Health, RouteRequest, route
from routing.volume import DailyVolume
from workers.context import Context
from workers.outcomes import end_payment, publish_events
from workers.runtime import Mailbox, gather_all

_intents = envelope_decoder(PaymentIntent)
log = logging.getLogger("juhe.risk")


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
        risk = ctx.settings.risk
        self.risk = RiskBook(ctx.pg, load_geo(risk.ip_country_table, risk.bin_country_table))
        alphas = alphas_of(risk)
        velocity = Velocity(ctx.redis, ctx.keys, alphas, risk.volume_window_s)
        self.judging = Judge(self.risk, velocity, self.fx_rates)
        self.anomalies = Anomalies(ctx.redis, ctx.keys, alphas)
        self.rule_windows = RuleWindows(ctx.redis, ctx.keys, risk.rule_window_s)

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

    async def judge(
        self, intents: Sequence[PaymentIntent], merchants: Sequence[Merchant | None]
    ) -> list[Judged]:
        now = time.time()
        txs = []
        for intent, merchant in zip(intents, merchants, strict=True):
            ip, email = customer(self.ctx.box, intent)
            txs.append(
                Transaction(
                    intent.merchant_id,
                    int(intent.amount),
                    intent.currency,
                    now,
                    method=intent.method,
                    agents=merchant.agents if merchant else (),
                    email=email,
                    ip=ip,
                    country=intent.customer_country,
                    device=intent.customer_device,
                    customer=intent.customer_id,
                    card_fingerprint=intent.card_fingerprint,
                    card_bin=intent.card_bin,
                    card_country=intent.card_country,
                    id=intent.id,
                )
            )
        limits = [m.limits if m else NO_LIMITS for m in merchants]
        return await self.judging.decide(txs, limits, now)

    async def record(
        self, intents: Sequence[PaymentIntent], judged: Sequence[Judged]
    ) -> tuple[list[dict[str, Any]], set[str]]:
        """Store each decision once, in one statement: a payment seen again (a redelivery)
        keeps, and is handled by, the decision it was first given. Also the ids decided now
        for the first time, the only ones alerts and rule windows count. (The outer SELECT
        reads the rows as they were before the UPDATE: a fresh row's risk is still null.)"""
        ids = [i.id for i in intents]
        docs = [j.to_doc() for j in judged]
        rows = await self.ctx.pg.fetch(
            """WITH fresh AS (
                   UPDATE payments p SET risk = d.doc
                     FROM unnest($1::text[], $2::jsonb[]) AS d(id, doc)
                    WHERE p.id = d.id AND p.risk IS NULL
                   RETURNING p.id)
               SELECT p.id, p.risk, p.id IN (SELECT id FROM fresh) AS fresh
                 FROM payments p WHERE p.id = ANY($1)""",
            ids,
            [orjson.dumps(d).decode() for d in docs],
        )
        stored = {r["id"]: orjson.loads(r["risk"]) for r in rows if r["risk"] and not r["fresh"]}
        decided = [stored.get(pid, doc) for pid, doc in zip(ids, docs, strict=True)]
        return decided, {r["id"] for r in rows if r["fresh"]}

    async def handle(self, batch: Sequence[AbstractIncomingMessage]) -> None:
        """A whole envelope at once: one Redis round trip for every velocity counter, one
        statement for the decisions, one envelope out per channel queue."""
        ctx = self.ctx
        intents = [i for message in batch for i in _intents.decode(message.body)]
        merchants = [await self.merchants.merchant(i.merchant_id) for i in intents]
        judged = await self.judge(intents, merchants)
        decisions, fresh = await self.record(intents, judged)
        alerts = self.alerts(
            [(i, j) for i, j in zip(intents, judged, strict=True) if i.id in fresh]
        )
        health = await self.health()
        routed: list[tuple[str, Message]] = []
        endings = []
        held: list[tuple[str, dict[str, Any]]] = []
        for intent, merchant, decision in zip(intents, merchants, decisions, strict=True):
            reviewed = decision.get("review")  # a person's (or the default's) word, once given
            if reviewed is None and decision["outcome"] == Outcome.REVIEW:
                held.append((intent.id, decision))
                continue
            if reviewed is not None and reviewed["outcome"] != "approve":
                continue  # rejected with the review's decision
            rejected = reviewed is None and decision["outcome"] == Outcome.REJECT
            request = RouteRequest(
                int(intent.amount), intent.currency, intent.method, intent.customer_country
            )
            order = await self.decide(request, intent.merchant_id, merchant, health)
            if not order and not rejected and not self.takes(intent.currency):
                order = await self.route_converted(intent, merchant, health)
            channel = order[0] if order else None
            fallbacks = tuple(order[1 : 1 + ctx.settings.routing.max_failover])
            if rejected:
                endings.append(
                    end_payment(
                        ctx,
                        intent.id,
                        PaymentStatus.REJECTED,
                        "payment.rejected",
                        failure_code=decision["code"],
                        failure_message=decision["reason"],
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
        await gather_all([*endings, *alerts, ctx.publisher.send_many(routed), self.hold(held)])

    def alerts(
        self, decided: Sequence[tuple[PaymentIntent, Judged]]
    ) -> list[Coroutine[Any, Any, bool]]:
        """The ops webhook's alerts for the payments this envelope decided for the first time
        (a redelivery neither alerts nor counts in a rule window again), sent beside its
        other writes."""
        s = self.ctx.settings.risk
        limits = AlertLimits(s.alert_score, s.alert_z)
        sends = []
        judged = [one for _, one in decided]
        for intent, one in decided:
            for kind, detail in alerts_for(intent.id, one.verdict, one.facts, limits):
                log.warning("risk alert", extra={"kind": kind, **detail})
                sends.append(self.ctx.alerts.send(kind, **detail))
        scores = {
            (model, one.facts["merchant"], one.facts[fact])
            for one in judged
            for model, fact in (
                (NEW_COUNTRY, "merchant_new_country_z"),
                (VOLUME, "merchant_volume_z"),
            )
        }
        sends += [
            self.anomaly_alert(kind, subject, detail)
            for kind, subject, detail in anomaly_alerts(scores, s.anomaly_z)
        ]
        sends.append(self.rule_window(judged))
        return sends

    async def anomaly_alert(self, kind: str, subject: str, detail: dict[str, Any]) -> bool:
        window = self.ctx.settings.risk.anomaly_alert_window_s
        if not await self.anomalies.first_in_window(f"{kind}:{subject}", window):
            return False
        log.warning("risk anomaly", extra={"kind": kind, **detail})
        return await self.ctx.alerts.send(kind, **detail)

    async def rule_window(self, judged: Sequence[Judged]) -> bool:
        """Count this envelope's fired rules in the shared window; where this process is the
        one to close a window, each live rule's usual fire share learns it, and rules far above
        theirs are `risk.rule_surge` alerts."""
        fires = Counter(f.rule for one in judged for f in one.verdict.fired)
        closing = await self.rule_windows.count(fires, len(judged), time.time())
        if closing is None:
            return False
        s = self.ctx.settings.risk
        rules = self.risk.rules
        surging = await self.rule_windows.close(
            closing, frozenset(r.rule.id for r in rules.rules), s.anomaly_slow_alpha, s.anomaly_z
        )
        sent = False
        for detail in surge_alerts(surging, rules.version):
            log.warning("risk rule surge", extra=detail)
            sent = await self.ctx.alerts.send("risk.rule_surge", **detail) or sent
        return sent

    async def hold(self, held: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Payments the rules sent to review wait `in_review` in the review queue."""
        if not held:
            return
        s = self.ctx.settings
        async with self.ctx.pg.acquire() as conn, conn.transaction():
            rows, events = await reviews.open_reviews(
                conn, held, s.risk.review_timeout_s, s.gateway.public_url
            )
        await self.ctx.hot.put_many(rows)
        await publish_events(self.ctx, events)


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
    await actor.risk.refresh()
    following = asyncio.create_task(follow(ctx.redis, ctx.keys, actor.merchants, book=actor.risk))
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
