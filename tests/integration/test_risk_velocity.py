"""Velocity counters (infra/velocity.py) against a real Redis: a controlled clock, exact window
edges, concurrent payments, and one round trip for every counter of an envelope."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from config import load_settings
from domain.risk.anomaly import (
    MIN_SEEN,
    Rate,
    RuleWindow,
    Volume,
    score,
    update,
    volume_score,
    volume_step,
)
from domain.risk.facts import Transaction
from domain.risk.velocity import Feature
from infra.anomaly import DECLINE, Anomalies, RuleWindows
from infra.keys import Keys
from infra.velocity import Velocity

T0 = 1_780_000_000_000  # ms
MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
IP_1M = Feature("ip", "count", "1m")
IP_1H = Feature("ip", "count", "1h")
EMAIL_SUM_1H = Feature("email", "sum_usd", "1h")
IP_CARDS_24H = Feature("ip", "distinct", "24h", "card")
MERCHANT_24H = Feature("merchant", "count", "24h")
ALL = [IP_1M, IP_1H, EMAIL_SUM_1H, IP_CARDS_24H, MERCHANT_24H]


@pytest_asyncio.fixture(loop_scope="session")
async def velocity() -> AsyncIterator[tuple[Velocity, Redis, str]]:
    client = Redis.from_url(load_settings({}).redis.url)
    prefix = f"test-velocity-{uuid.uuid4().hex[:8]}"
    yield Velocity(client, Keys(prefix)), client, prefix
    keys = [k async for k in client.scan_iter(f"{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def pay(n: int, ip: str = "203.0.113.5", card: str | None = None, email: str = "a@x.example"):
    tx = Transaction(
        "mch_v", 1_000, "USD", 0.0, ip=ip, email=email, card_fingerprint=card, id=f"pay_{n}"
    )
    return tx, 1_000 + n


async def one(v: Velocity, tx_usd, now: int, features=ALL) -> dict[Feature, int]:
    ((counters, *_),) = await v.observe_many([tx_usd], features, now)
    return counters


async def test_windows_are_exact_at_their_edges(velocity) -> None:
    v, _, _ = velocity
    assert (await one(v, pay(1), T0))[IP_1M] == 1  # the payment judged is counted
    # one window minus a millisecond later, the first is still inside
    assert (await one(v, pay(2), T0 + MIN - 1))[IP_1M] == 2
    # exactly one window later, the first has left: the window is (now − 1 min, now]
    at_edge = await one(v, pay(3), T0 + MIN)
    assert at_edge[IP_1M] == 2 and at_edge[IP_1H] == 3
    assert (await one(v, pay(4), T0 + HOUR))[IP_1H] == 3  # pay_1 out, 2, 3 and 4 in
    late = await one(v, pay(5), T0 + DAY + MIN)
    assert late[IP_1H] == 1 and late[MERCHANT_24H] == 2  # pay_4 and pay_5


async def test_sum_and_distinct(velocity) -> None:
    v, _, _ = velocity
    await one(v, pay(1, card="card_a"), T0)
    await one(v, pay(2, card="card_b"), T0 + 1)
    await one(v, pay(3, card="card_a"), T0 + 2)
    last = await one(v, pay(4), T0 + 3)  # no card: not a distinct card
    assert last[EMAIL_SUM_1H] == 1_001 + 1_002 + 1_003 + 1_004
    assert last[IP_CARDS_24H] == 2
    assert (await one(v, pay(5), T0 + 2 * HOUR))[EMAIL_SUM_1H] == 1_005


async def test_a_redelivered_payment_is_counted_once(velocity) -> None:
    v, _, _ = velocity
    await one(v, pay(1), T0)
    again = await one(v, pay(1), T0 + 5)
    assert again[IP_1M] == 1 and again[EMAIL_SUM_1H] == 1_001


async def test_absent_values_count_nothing(velocity) -> None:
    v, _, _ = velocity
    tx = Transaction("mch_v", 1, "USD", 0.0, id="pay_x")
    counters = await one(v, (tx, None), T0)
    assert counters[IP_1M] == 0 and counters[MERCHANT_24H] == 1


async def test_concurrent_payments_each_see_an_exact_distinct_count(velocity) -> None:
    """40 payments from one IP at once, from 8 callers: every count 1..40 is seen exactly once."""
    v, _, _ = velocity

    async def caller(k: int) -> list[int]:
        seen = []
        for n in range(k, 40, 8):
            seen.append((await one(v, pay(n), T0 + 10, [IP_1M]))[IP_1M])
        return seen

    counts = [c for seen in await asyncio.gather(*(caller(k) for k in range(8))) for c in seen]
    assert sorted(counts) == list(range(1, 41))


async def test_an_envelope_is_one_round_trip_and_keys_hold_no_clear_values(velocity) -> None:
    v, client, prefix = velocity
    batch = [pay(n, ip=f"198.51.100.{n}") for n in range(20)]
    pipelines = []
    real = client.pipeline

    def counted(*args, **kwargs):
        pipe = real(*args, **kwargs)
        pipelines.append(pipe)
        return pipe

    client.pipeline = counted  # type: ignore[method-assign]
    try:
        answers = await v.observe_many(batch, ALL, T0)
    finally:
        client.pipeline = real  # type: ignore[method-assign]
    assert len(pipelines) == 1  # one pipeline sent once: every counter of 20 payments
    assert [a[IP_1M] for a, *_ in answers] == [1] * 20
    assert answers[-1][0][MERCHANT_24H] == 20
    keys = [k.decode() async for k in client.scan_iter(f"{prefix}:*")]
    assert keys and not any("198.51.100" in k or "x.example" in k for k in keys)
    sets = [k for k in keys if ":risk:v:" in k]
    members = await client.zrange(sets[0], 0, -1)
    assert not any(b"198.51.100" in m or b"x.example" in m for m in members)


async def test_an_evaluation_counts_itself_and_leaves_nothing(velocity) -> None:
    v, _, _ = velocity
    await one(v, pay(1), T0)
    ((seen, *_),) = await v.observe_many([pay(2)], ALL, T0 + 1, keep=False)
    assert seen[IP_1M] == 2 and seen[EMAIL_SUM_1H] == 1_001 + 1_002
    assert (await one(v, pay(3), T0 + 2))[IP_1M] == 2  # pay_2 was not kept
    ((again, *_),) = await v.observe_many([pay(3)], ALL, T0 + 3, keep=False)
    assert again[IP_1M] == 2, "evaluating a recorded payment neither adds nor removes it"
    assert (await one(v, pay(4), T0 + 4))[IP_1M] == 3


async def test_the_merchants_usual_amount(velocity) -> None:
    """An exponentially weighted mean and variance of the merchant's USD amounts, read before
    each payment and updated once per payment (not by a redelivery or an evaluation)."""
    v, _, _ = velocity
    for n in range(60):
        tx, _ = pay(n)
        await v.observe_many([(tx, 900 if n % 2 else 1100)], [], T0 + n)
    tx, _ = pay(60)
    ((_, usual, *_),) = await v.observe_many([(tx, 5_000)], [], T0 + 60, keep=False)
    assert usual.seen == 60 and 950 < usual.mean < 1050 and 5_000 < usual.var < 15_000
    assert usual.z(5_000) > 30 and abs(usual.z(1_000)) < 1
    ((_, again, *_),) = await v.observe_many([(tx, 5_000)], [], T0 + 61)
    assert again == usual, "an evaluation changed nothing"
    await v.observe_many([(tx, 5_000)], [], T0 + 62)  # the same payment again: not counted
    ((_, after, *_),) = await v.observe_many([pay(61)], [], T0 + 63, keep=False)
    assert after.seen == 61 and after.mean > usual.mean


async def test_the_anomaly_models_match_the_pure_update(velocity) -> None:
    """The new-country share learns in the velocity script (once per payment, not by a
    redelivery or an evaluation), the decline rate in infra.anomaly's script; both compute
    exactly domain.risk.anomaly.update."""
    v, client, prefix = velocity
    alphas = v.alphas
    expected = Rate()
    for n in range(50):
        country = "US" if n < 44 else f"C{n}"  # six new countries at the end
        tx, usd = pay(n)
        expected = update(expected, 1.0 if n == 0 or n >= 44 else 0.0, alphas)
        (seen,) = await v.observe_many([(tx, usd)], [], T0 + n, countries=[country])
    assert seen.new_country.seen == 50
    assert seen.new_country.fast == pytest.approx(expected.fast)
    assert seen.new_country.var == pytest.approx(expected.var)
    assert score(seen.new_country, alphas) > 4
    await v.observe_many([pay(49)], [], T0 + 51, countries=["C49"])  # redelivered
    (evaluated,) = await v.observe_many([pay(99)], [], T0 + 52, keep=False, countries=["ZZ"])
    assert evaluated.new_country.seen == 51, "a redelivery is not learned twice"
    (after,) = await v.observe_many([pay(100)], [], T0 + 53, keep=False)
    assert after.new_country == seen.new_country, "an evaluation keeps nothing"

    declines = Anomalies(client, Keys(prefix), alphas)
    expected = Rate()
    for n in range(40):
        x = 1.0 if n >= 32 else 0.0
        expected = update(expected, x, alphas)
        ((_, _, z),) = await declines.observe([(DECLINE, "mch_v", x)])
    assert z == pytest.approx(score(expected, alphas)) and z > 4
    (read,) = await v.observe_many([pay(101)], [], T0 + 54, keep=False)
    assert read.decline.seen == 40 and read.decline.mean == pytest.approx(expected.mean)
    assert await declines.first_in_window("risk.anomaly.decline:mch_v", 60)
    assert not await declines.first_in_window("risk.anomaly.decline:mch_v", 60)


async def test_the_volume_model_matches_the_pure_step(velocity) -> None:
    """Payments per window (60 s), learned in the velocity script once per new payment: the
    same state as domain.risk.anomaly.volume_step, quiet windows included; a redelivery and
    an evaluation change nothing, and a burst scores high."""
    v, _, _ = velocity
    expected, n = Volume(), 0
    for window in [*range(40), 45, 46]:  # 2 payments a window, a quiet spell, then back
        for _ in range(2):
            at = T0 + window * MIN + n % 1_000
            expected = volume_step(expected, at // MIN, v.alphas.slow)
            (seen,) = await v.observe_many([pay(n)], [], at)
            n += 1
    assert seen.volume.seen == expected.seen >= MIN_SEEN and seen.volume.count == 2
    assert seen.volume.mean == pytest.approx(expected.mean)
    assert seen.volume.var == pytest.approx(expected.var)
    await v.observe_many([pay(n - 1)], [], T0 + 46 * MIN + 5)  # redelivered
    (evaluated,) = await v.observe_many([pay(9_999)], [], T0 + 46 * MIN + 6, keep=False)
    assert evaluated.volume.count == 3, "the evaluation counts itself, the redelivery did not"
    for k in range(30):
        (burst,) = await v.observe_many([pay(10_000 + k)], [], T0 + 46 * MIN + 10 + k)
    assert burst.volume.count == 32 and volume_score(burst.volume) > 10


async def test_rule_windows_are_shared_and_each_closed_once(velocity) -> None:
    """Two risk processes count into the same wall-clock windows; a window is closed two
    windows later by exactly one of them, and the usual share learns all of its traffic."""
    _, client, prefix = velocity
    first, second = (RuleWindows(client, Keys(prefix), 60) for _ in range(2))
    rules = frozenset({"r1"})
    start = 1_780_000_000 // 60 * 60
    for w in range(MIN_SEEN + 3):
        at = start + w * 60
        for process in (first, second):  # each judges 50 payments, r1 fires on one
            closing = await process.count({"r1": 1}, 50, at + 1)
            if closing is not None:
                assert closing == at // 60 - 2
                surging = await process.close(closing, rules, 0.05, 4.0)
                assert surging == {}
        assert await first.count({}, 0, at + 2) is None, "each window is closed once"
    stored = await client.hget(Keys(prefix).rule_usual(), "r1")
    mean, var, seen = stored.decode().split(",")
    assert RuleWindow(float(mean), float(var), int(seen)).seen == MIN_SEEN + 1
    assert float(mean) == pytest.approx(2 / 100), "both processes' traffic, not one's"
    at = start + (MIN_SEEN + 3) * 60
    await first.count({"r1": 40}, 50, at)  # r1 fires on 80 % of this window's payments
    await second.count({"r1": 40}, 50, at + 1)
    closing = None
    for later in (at + 60, at + 120):
        closing = await second.count({}, 0, later) or closing
    assert closing == at // 60
    surging = await second.close(closing, rules, 0.05, 4.0)
    assert list(surging) == ["r1"] and surging["r1"] > 4


async def test_running_aggregates_equal_counting_the_window_every_time(velocity) -> None:
    """Sums and distinct counts are running aggregates; 600 random payments (a clock that
    jumps ahead and steps back, redeliveries, evaluations, keys idle past the prune margin,
    rule sets reading different counters) give what counting each window from scratch does."""
    v, _, _ = velocity
    rng = random.Random(14)
    every = [
        Feature(key, metric, window, of)
        for key in ("ip", "email")
        for window in ("1m", "1h", "24h")
        for metric, of in (("count", None), ("sum_usd", None), ("distinct", "card"))
    ] + [Feature("ip", "distinct", "1h", "email"), Feature("merchant", "sum_usd", "24h")]
    events: dict[str, tuple[int, int, dict[str, str]]] = {}  # id → (time, usd, values)
    now = T0
    features = every
    for n in range(600):
        step = rng.random()
        if step < 0.03:
            now += rng.choice([31 * MIN, 61 * MIN, DAY + 2 * MIN])
        elif step < 0.10:
            now -= rng.randint(1, 2_000)
        else:
            now += rng.randint(0, 20_000)
        if rng.random() < 0.05:
            features = rng.sample(every, rng.randint(1, len(every)))
        keep = rng.random() > 0.1
        # a redelivery comes within the hour (after a day its event has left the sets)
        recent = sorted(i for i, (t, _, _) in events.items() if t > now - HOUR)
        redelivered = keep and bool(recent) and rng.random() < 0.08
        pid = rng.choice(recent) if redelivered else f"pay_r{n}"
        values = {
            "ip": f"203.0.113.{rng.randint(1, 3)}",
            "email": f"b{rng.randint(1, 4)}@x.example",
            "card": f"card_{rng.randint(1, 6)}" if rng.random() < 0.8 else "",
        }
        if redelivered:
            values = events[pid][2]
        usd = events[pid][1] if redelivered else rng.randint(1, 10_000)
        tx = Transaction(
            "mch_r",
            usd,
            "USD",
            0.0,
            ip=values["ip"],
            email=values["email"],
            card_fingerprint=values["card"] or None,
            id=pid,
        )
        ((seen, *_),) = await v.observe_many([(tx, usd)], features, now, keep=keep)
        window = dict(events)
        window.setdefault(pid, (now, usd, values))
        if keep:
            events = window
        for f in features:
            inside = [
                (u, vals)
                for t, u, vals in window.values()
                if now - f.window_ms < t <= now
                and (f.key == "merchant" or vals[f.key] == values[f.key])
            ]
            if f.metric == "count":
                want = len(inside)
            elif f.metric == "sum_usd":
                want = sum(u for u, _ in inside)
            else:
                want = len({vals[f.of] for _, vals in inside if vals[f.of]})
            assert seen[f] == want, (n, f)
