"""Issue 14's figures. The cost of a decision, in-process against the real Redis: CPU µs per
payment in the risk pool's judging step (facts, lists, every velocity counter in one pipelined
round trip per envelope of 100, the rules) with 50 rules reading 10 velocity counters, against
the same step with no rules (velocity still records each payment). And `POST /risk/evaluate`'s
p50/p99 at a fixed arrival rate on a gateway judging by those 50 rules. And the end-to-end
sustained throughput of a whole node (create → channel → paid → ledger → webhook) with the 50
rules published against the same run on a fresh node with none, creates carrying the
customer data the counters are kept by."""

from __future__ import annotations

import asyncio
import secrets
import statistics
import time
import uuid
from typing import Any

import orjson
from redis.asyncio import Redis

from benchmarks import scenarios
from benchmarks.load import Prepared
from benchmarks.node import LocalNode
from benchmarks.scenarios import CREATE_PATH, create_body, warm_open_loop
from config import load_settings
from domain.risk import EMPTY, MerchantLimits, Rule, Thresholds, Transaction, compile_rules
from gateway.client import signed_headers
from infra import risk
from infra.fx import rate_source
from infra.invalidation import announce
from infra.keys import Keys
from infra.merchants import NewMerchant, create_merchant
from infra.risk import Judge, RiskBook, load_geo
from infra.velocity import Velocity

ENVELOPE = 100
COUNTERS = (
    "ip.count_1m",
    "ip.count_1h",
    "email.count_24h",
    "email.sum_usd_24h",
    "device.count_1h",
    "device.distinct_card_24h",
    "card.count_1h",
    "customer.sum_usd_1h",
    "merchant.count_1m",
    "ip.distinct_email_24h",
)
LIMITS = MerchantLimits(frozenset({"USD", "EUR"}))
# Every rule is evaluated for every payment whatever the thresholds; these are above the 50
# rules' highest score (300), so the rules cost their evaluation and never change a payment's
# path (a review or a reject would end it early and look like throughput).
NEVER = Thresholds(review=10_000, reject=20_000)


def fifty_rules() -> list[Rule]:
    """10 velocity rules and 40 over the other facts, every one evaluated for every payment."""
    rules = [
        Rule(f"v{n}", f"velocity.{counter} > {50 + n}", "score +10")
        for n, counter in enumerate(COUNTERS)
    ]
    plain = (
        "amount_usd > {n}000",
        "currency == 'EUR' && amount > {n}00",
        "email_domain == 'x{n}.example'",
        "in_cidr(ip, '10.{n}.0.0/16')",
        "hour == {h} && method == 'card'",
        "ip_country != country && country == 'C{n}'",
        "card_bin.startsWith('4{n}')",
        "'agt_{n}' in agents",
    )
    for n in range(40):
        expression = plain[n % len(plain)].format(n=n, h=n % 24)
        rules.append(Rule(f"p{n}", expression, "score +5"))
    return rules


def payments(count: int) -> list[Transaction]:
    now = time.time()
    return [
        Transaction(
            "mch_bench",
            1_000 + n,
            "USD" if n % 3 else "EUR",
            now,
            method="card",
            agents=("agt_1", "agt_2"),
            email=f"buyer{n % 500}@shop.example",
            ip=f"198.51.100.{n % 250}",
            country="US",
            device=f"dev_{n % 300:04d}",
            customer=f"cus_{n % 400}",
            card_fingerprint=f"fp_{n % 700}",
            card_bin="424242",
            id=f"pay_bench_{n}",
        )
        for n in range(count)
    ]


async def _cost(judge: Judge, txs: list[Transaction]) -> float:
    """CPU seconds of this process per payment, envelope by envelope."""
    started = time.process_time()
    for at in range(0, len(txs), ENVELOPE):
        batch = txs[at : at + ENVELOPE]
        await judge.decide(batch, [LIMITS] * len(batch), time.time())
    return (time.process_time() - started) / len(txs)


async def decision_cost(count: int) -> dict[str, Any]:
    settings = load_settings({})
    redis = Redis.from_url(settings.redis.url)
    prefix = f"bench-risk-{uuid.uuid4().hex[:8]}"
    book = RiskBook(None, load_geo())  # type: ignore[arg-type]  # set by hand, never refreshed
    judge = Judge(book, Velocity(redis, Keys(prefix)), rate_source(settings.fx))
    rules = compile_rules(1, fifty_rules(), NEVER)
    try:
        book.rules = EMPTY
        await _cost(judge, payments(ENVELOPE))  # warm: scripts loaded, connections open
        bare = await _cost(judge, payments(count))
        book.rules = rules
        with_rules = await _cost(judge, payments(count))
    finally:
        keys = [k async for k in redis.scan_iter(f"{prefix}:*")]
        for at in range(0, len(keys), 1000):
            await redis.delete(*keys[at : at + 1000])
        await redis.aclose()
    return {
        "payments": count,
        "rules": len(rules.rules),
        "counters": len(rules.features),
        "cpu_us_per_payment": with_rules * 1e6,
        "cpu_us_per_payment_no_rules": bare * 1e6,
        "rules_cpu_us": (with_rules - bare) * 1e6,
    }


EVALUATE_PATH = "/api/v1/risk/evaluate"


async def evaluate_latency(rate: float, seconds: float) -> dict[str, Any]:
    """`POST /risk/evaluate` under an open-loop load (constant arrival rate) on a gateway
    judging by the 50 rules, each request a different customer, device and card."""
    node = LocalNode("bench")
    try:
        await node.start("gateway")
        assert node.pg is not None and node.redis is not None
        merchant = await create_merchant(
            node.pg,
            node.box,
            name="bench",
            notify_url="http://127.0.0.1:9/none",
            currencies=["USD", "EUR"],
            fee_bps=250,
        )
        async with node.pg.acquire() as conn, conn.transaction():
            row = await risk.save_version(conn, fifty_rules(), NEVER, "bench")
            await risk.publish(conn, row["version"])
        await announce(node.redis, Keys(node.settings.redis.prefix), risk=True)
        await asyncio.sleep(1.0)

        def requests(count: int) -> list[Prepared]:
            pool = []
            for n in range(count):
                body = orjson.dumps(
                    {
                        "amount": f"{10 + n % 90}.00",
                        "currency": "USD",
                        "method": "card",
                        "customer": {
                            "email": f"buyer{n % 500}@shop.example",
                            "ip": f"198.51.100.{n % 250}",
                            "device_id": f"dev_{n % 300:08d}",
                            "id": f"cus_{n}_{secrets.token_hex(3)}",
                        },
                        "card": {"fingerprint": f"fp_{n % 700}", "bin": "424242"},
                    }
                )
                headers = signed_headers(
                    merchant.key_id, merchant.secret, "POST", EVALUATE_PATH, body
                )
                pool.append(Prepared("POST", EVALUATE_PATH, headers, body))
            return pool

        result = await warm_open_loop(node.url, requests, rate, seconds)
        return {**result.as_dict(), "rate": rate, "rules": 50}
    finally:
        await node.stop()


def customer_creates(merchant: NewMerchant, count: int) -> list[Prepared]:
    """scenarios' creates, each with a customer's e-mail, IP, device and id (500, 250, 300
    and 400 distinct), so every velocity counter has keys to count."""
    pool = []
    for n in range(count):
        body = orjson.loads(create_body(n))
        body["customer"] = {
            "email": f"buyer{n % 500}@shop.example",
            "ip": f"198.51.100.{n % 250}",
            "device_id": f"dev_{n % 300:08d}",
            "id": f"cus_{n % 400}",
        }
        raw = orjson.dumps(body)
        headers = signed_headers(merchant.key_id, merchant.secret, "POST", CREATE_PATH, raw)
        headers["Idempotency-Key"] = f"bench-{n}-{secrets.token_hex(6)}"
        pool.append(Prepared("POST", CREATE_PATH, headers, raw))
    return pool


async def publish_rules(node: LocalNode, rules: list[Rule]) -> None:
    """Publish a version and give every process its second to load it."""
    assert node.pg is not None and node.redis is not None
    async with node.pg.acquire() as conn, conn.transaction():
        row = await risk.save_version(conn, rules, NEVER, "bench")
        await risk.publish(conn, row["version"])
    await announce(node.redis, Keys(node.settings.redis.prefix), risk=True)
    await asyncio.sleep(1.0)


async def publish_fifty(node: LocalNode) -> None:
    await publish_rules(node, fifty_rules())


async def saturated_pairs(rate: float, seconds: float, pairs: int) -> dict[str, Any]:
    """The rule set's cost to throughput on one node, measured the way a ladder cannot: the
    node is driven above what it sustains (`rate`) for `seconds` with no rules and then with
    the 50, alternately, `pairs` times, each window starting from an empty backlog; what it
    delivered per second in each window is its capacity with that rule set. Alternating on one
    node cancels the drift between two fresh nodes, and the order within a pair alternates too
    (none first, then the rules first…), as a node slows a little as its history grows."""
    without: list[float] = []
    with_rules: list[float] = []
    async with scenarios.paying_node(None) as (node, merchant, arrived):
        warm: dict[str, float] = {}
        await scenarios.open_loop_ids(node.url, customer_creates(merchant, 100), 50.0, 2.0, warm)
        await scenarios.settled(warm, arrived, 15)
        for n in range(pairs):
            pair = [([], without), (fifty_rules(), with_rules)]
            for rules, into in pair if n % 2 == 0 else reversed(pair):
                await publish_rules(node, rules)
                sent: dict[str, float] = {}
                pool = customer_creates(merchant, int(rate * seconds) + 1)
                started = time.perf_counter()
                await scenarios.open_loop_ids(node.url, pool, rate, seconds, sent)
                window = time.perf_counter() - started
                into.append(sum(1 for pid in sent if pid in arrived) / window)
                await scenarios.settled(sent, arrived, 60)
    a, b = statistics.median(without), statistics.median(with_rules)
    return {
        "rate": rate,
        "seconds": seconds,
        "no_rules_per_s": without,
        "rules_per_s": with_rules,
        "cost_share": 1 - b / a if a else None,
    }


async def end_to_end_cost(
    rates: list[float], seconds: float, cpu_rates: list[float]
) -> dict[str, Any]:
    """The rule set's cost to a whole node, three ways. On a fresh node with no rules and on one
    judging by the 50: the sustained rate (the ladder, each starting with a step at 10/s as a
    fresh node's first seconds are slower, refined between its last sustained and first failed
    step) and the CPU per lifecycle, by process, at fixed rates. Then, on one node, the
    delivered rate above saturation with and without the rules alternately (saturated_pairs):
    the figure of record, as two fresh nodes' ladders differ by more than 10 % between runs
    with the same rules."""
    ladder = [10.0, *rates]
    bare = await scenarios.end_to_end(ladder, seconds, customer_creates, refine=2)
    ruled = await scenarios.end_to_end(ladder, seconds, customer_creates, publish_fifty, refine=2)
    cpu_bare = await scenarios.lifecycle_cpu(cpu_rates, seconds, customer_creates)
    cpu_ruled = await scenarios.lifecycle_cpu(cpu_rates, seconds, customer_creates, publish_fifty)
    saturated = await saturated_pairs(max(rates), seconds, 4)
    without, with_rules = bare["sustained_per_s"], ruled["sustained_per_s"]
    return {
        "rates": ladder,
        "seconds": seconds,
        "no_rules_per_s": without,
        "rules_per_s": with_rules,
        "cost_share": 1 - with_rules / without if without else None,
        "no_rules_trials": bare["trials"],
        "rules_trials": ruled["trials"],
        "saturated": saturated,
        "cpu": [
            {
                "rate": b["rate"],
                "no_rules_ms": b["cpu_ms_total"],
                "rules_ms": r["cpu_ms_total"],
                "capacity_cost_share": 1 - b["cpu_ms_total"] / r["cpu_ms_total"],
                "no_rules_by_process": b["cpu_ms"],
                "rules_by_process": r["cpu_ms"],
            }
            for b, r in zip(cpu_bare, cpu_ruled, strict=True)
        ],
    }
