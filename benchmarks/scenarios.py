"""The benchmark scenarios. Each returns plain figures; `benchmarks.run` divides them by their
baselines, all measured in the same run on the same machine with the same load generator."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
import timeit
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import msgspec
import orjson
import psutil
from aiohttp import web

from adapters.simulator import wire
from adapters.simulator.server import TEST_AMOUNTS
from benchmarks.load import LoadResult, Prepared, closed_loop, open_loop
from benchmarks.node import ROOT, LocalNode, RedisPair, free_port, scratch_database
from domain.channels import FeeSchedule
from domain.fees import Rate
from domain.ids import new_id
from domain.messages import ChannelCallback
from gateway.client import signed_headers
from infra import broker, redisclient
from infra.channels import ChannelRegistry
from infra.keys import STREAMS, Keys
from infra.merchants import NewMerchant, create_merchant
from routing.strategies import ChannelProfile, Health, RouteRequest, Rule, Strategy, route
from workers.ledger import LedgerActor, Written

CREATE_PATH = "/api/v1/payments"


def create_body(n: int) -> bytes:
    """A typical create: the same size for the baseline and the gateway."""
    cents = 100 + (n * 7) % 5000
    if cents % 100 in TEST_AMOUNTS:
        cents += 10
    return orjson.dumps(
        {
            "amount": f"{cents // 100}.{cents % 100:02d}",
            "currency": "USD",
            "merchant_order_id": f"bench-{n}-{secrets.token_hex(4)}",
            "description": "benchmark order",
            "customer": {"email": "buyer@example.com"},
        }
    )


def baseline_requests(count: int) -> list[Prepared]:
    return [
        Prepared("POST", CREATE_PATH, {"Content-Type": "application/json"}, create_body(n))
        for n in range(count)
    ]


def create_requests(merchant: NewMerchant, count: int) -> list[Prepared]:
    pool = []
    for n in range(count):
        body = create_body(n)
        headers = signed_headers(merchant.key_id, merchant.secret, "POST", CREATE_PATH, body)
        headers["Idempotency-Key"] = f"bench-{n}-{secrets.token_hex(6)}"
        pool.append(Prepared("POST", CREATE_PATH, headers, body))
    return pool


def callback_requests(secret: str, count: int, duplicate_every: int = 10) -> list[Prepared]:
    """Signed simulator callbacks; every `duplicate_every`-th repeats the previous event."""
    pool: list[Prepared] = []
    now = time.time()
    for n in range(count):
        if n and n % duplicate_every == 0:
            pool.append(pool[-1])
            continue
        event = wire.CallbackEvent(
            event_id=f"evt-bench-{n}-{secrets.token_hex(4)}",
            event="order.paid",
            order_no=f"SIMBENCH{n}",
            merchant_ref=new_id("pay"),
            amount_minor="1000",
            currency="USD",
            ts=int(now),
        )
        body = msgspec.json.encode(event)
        headers = {"Content-Type": "application/json", **wire.callback_headers(secret, body, now)}
        pool.append(Prepared("POST", "/api/v1/payments/callback/sim", headers, body))
    return pool


@asynccontextmanager
async def baseline_server() -> AsyncIterator[str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.baseline", "--port", str(port)], cwd=ROOT
    )
    try:
        await _wait_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


async def baseline_latency(rate: float, seconds: float) -> LoadResult:
    """The same open-loop load on the baseline: what the generator and machine add by
    themselves to any latency figure."""
    async with baseline_server() as url:
        return await warm_open_loop(url, baseline_requests, rate, seconds)


async def warm_open_loop(
    url: str, requests: Callable[[int], list[Prepared]], rate: float, seconds: float
) -> LoadResult:
    """Steady-state latency: the same load for a warm-up period first (connections, caches,
    scripts loaded), unrecorded, then the measured window."""
    warm = min(2.0, seconds)
    pool = requests(int(rate * (warm + seconds)) + 2)
    split = int(rate * warm) + 1
    await open_loop(url, pool[:split], rate, warm)
    return await open_loop(url, pool[split:], rate, seconds)


async def _wait_port(port: int) -> None:
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


async def _merchant(node: LocalNode, notify_url: str = "http://127.0.0.1:9/none") -> NewMerchant:
    assert node.pg is not None
    return await create_merchant(
        node.pg, node.box, name="bench", notify_url=notify_url, currencies=["USD"], fee_bps=250
    )


@dataclass
class Paired:
    """A figure measured in rounds against the baseline, which runs before and after every
    round: on a shared machine whose speed drifts, each round's ratio compares neighbours."""

    target: LoadResult  # the round whose ratio is the median
    baselines: list[LoadResult]
    ratio: float
    ratios: list[float]

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.target.as_dict(),
            "ratio": self.ratio,
            "round_ratios": self.ratios,
            "baseline_rps": [b.rps for b in self.baselines],
        }


async def paired(
    url: str,
    requests: Callable[[], list[Prepared]],
    seconds: float,
    connections: int,
    rounds: int,
) -> Paired:
    """`requests()` makes a fresh pool each round (creates must never repeat a key)."""
    async with baseline_server() as base_url:
        base_pool = baseline_requests(20_000)
        baselines = [await closed_loop(base_url, base_pool, seconds, connections)]
        targets = []
        for _ in range(rounds):
            targets.append(await closed_loop(url, requests(), seconds, connections))
            baselines.append(await closed_loop(base_url, base_pool, seconds, connections))
    ratios = [
        t.rps / ((baselines[n].rps + baselines[n + 1].rps) / 2) for n, t in enumerate(targets)
    ]
    middle = sorted(range(rounds), key=ratios.__getitem__)[rounds // 2]
    return Paired(targets[middle], baselines, ratios[middle], ratios)


async def create(
    mode: str, seconds: float, connections: int, pool_size: int, rounds: int
) -> Paired:
    """The gateway alone (no pools draining the stream), in one durability mode."""
    pair = RedisPair() if mode == "replicated" else None
    overrides = {"JUHE_GATEWAY__DURABILITY": mode}
    if pair:
        await pair.start()
        overrides["JUHE_REDIS__URL"] = pair.primary_url
    node = LocalNode("bench", overrides)
    try:
        await node.start("gateway")
        merchant = await _merchant(node)
        return await paired(
            node.url, lambda: create_requests(merchant, pool_size), seconds, connections, rounds
        )
    finally:
        await node.stop()
        if pair:
            pair.stop()


async def callbacks(seconds: float, connections: int, pool_size: int, rounds: int) -> Paired:
    node = LocalNode("bench")
    try:
        await node.start("gateway")
        secret = node.settings.channels["sim"].secret
        return await paired(
            node.url, lambda: callback_requests(secret, pool_size), seconds, connections, rounds
        )
    finally:
        await node.stop()


async def create_latency(rate: float, seconds: float) -> LoadResult:
    """Create latency under an open-loop load (constant arrival rate), `stream` mode."""
    node = LocalNode("bench")
    try:
        await node.start("gateway")
        merchant = await _merchant(node)
        return await warm_open_loop(node.url, lambda n: create_requests(merchant, n), rate, seconds)
    finally:
        await node.stop()


@dataclass
class Sink:
    """A fast local merchant endpoint recording when each payment's `payment.succeeded` webhook
    arrived: the end of its lifecycle (a payment that ended otherwise, or an event on the way
    such as a review opening, is not a lifecycle done)."""

    arrived: dict[str, float]

    async def handle(self, request: web.Request) -> web.Response:
        event = orjson.loads(await request.read())
        if event["type"] == "payment.succeeded":
            self.arrived.setdefault(event["data"]["id"], time.perf_counter())
        return web.Response(text="ok")


async def _backlog(node: LocalNode) -> int:
    """Everything not yet done: stream entries, queued messages, undelivered webhooks."""
    assert node.redis is not None and node.pg is not None
    total = 0
    for name in STREAMS:
        total += await node.redis.xlen(f"{node.settings.redis.prefix}:{{intake:{name}}}")
    queues = broker.Queues(node.settings.rabbitmq.prefix)
    names = [queues.risk, queues.ledger, queues.notify, queues.channel("sim")]
    connection = await broker.connect(node.settings.rabbitmq.url)
    async with connection:
        depths = await broker.queue_depths(await connection.channel(), names)
    total += sum(depths.values())
    total += await node.pg.fetchval("SELECT count(*) FROM webhook_events WHERE status = 'pending'")
    return total


@asynccontextmanager
async def paying_node(
    prepare: Callable[[LocalNode], Awaitable[None]] | None,
) -> AsyncIterator[tuple[LocalNode, NewMerchant, dict[str, float]]]:
    """A whole node (simulator paying at once) with a merchant whose webhooks land in a local
    sink: the node, the merchant and when each payment's webhook arrived."""
    arrived: dict[str, float] = {}
    app = web.Application()
    app.router.add_post("/hook", Sink(arrived).handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    node = LocalNode("bench", {"JUHE_SIMULATOR__PAY_DELAY_MS": "0"})
    try:
        await node.start()
        merchant = await _merchant(node, f"http://127.0.0.1:{port}/hook")
        if prepare is not None:
            await prepare(node)
        async with autovacuum_stand_in(node):
            yield node, merchant, arrived
    finally:
        await node.stop()
        await runner.cleanup()


VACUUM_EVERY_S = 20.0


@asynccontextmanager
async def autovacuum_stand_in(node: LocalNode) -> AsyncIterator[None]:
    """This machine's PostgreSQL runs with autovacuum off (its CI profile). A node driven for
    minutes without it measures that, not itself: the payments table fills with dead rows and
    prepared statements keep the plans of its first, empty seconds (sequential scans), so each
    window was slower than the last (3.4× in five minutes). Where autovacuum is off, the node's
    database is VACUUM ANALYZEd every VACUUM_EVERY_S, as autovacuum would; its CPU is
    PostgreSQL's, counted with the node's."""
    assert node.pg is not None
    if await node.pg.fetchval("SHOW autovacuum") == "on":
        yield
        return

    async def vacuum() -> None:
        assert node.pg is not None
        while True:
            await node.pg.execute("VACUUM (ANALYZE)")
            await asyncio.sleep(VACUUM_EVERY_S)

    task = asyncio.create_task(vacuum())
    try:
        yield
    finally:
        task.cancel()


async def settled(sent: dict[str, float], arrived: dict[str, float], patience_s: float) -> None:
    """Until every payment sent has had its webhook, or `patience_s` passed."""
    settle = time.perf_counter() + patience_s
    while time.perf_counter() < settle and any(p not in arrived for p in sent):  # noqa: ASYNC110
        await asyncio.sleep(0.2)


async def end_to_end(
    rates: Sequence[float],
    seconds: float,
    requests: Callable[[NewMerchant, int], list[Prepared]] = create_requests,
    prepare: Callable[[LocalNode], Awaitable[None]] | None = None,
    refine: int = 0,
) -> dict[str, Any]:
    """Sustained lifecycles per second: create → channel order → paid callback → ledger →
    webhook at a local merchant endpoint. A rate counts only if the backlog at the end of its
    window is no larger than one second of arrivals (bounded), and at least 90 % of its
    payments' webhooks arrived within the window (they kept pace). The ladder stops at the
    first rate that is not sustained; `refine` more steps then halve the gap between it and the
    last one that was (a ladder alone can only tell 300/s from 400/s). `requests` makes the
    creates, `prepare` readies the started node (the risk group publishes its rules)."""
    trials: list[dict[str, Any]] = []
    async with paying_node(prepare) as (node, merchant, arrived):

        async def trial(rate: float) -> bool:
            pool = requests(merchant, int(rate * seconds) + 1)
            sent: dict[str, float] = {}
            started = time.perf_counter()
            result = await open_loop_ids(node.url, pool, rate, seconds, sent)
            window = time.perf_counter() - started
            backlog = await _backlog(node)
            delivered = sum(1 for pid in sent if pid in arrived)
            await settled(sent, arrived, 30)
            lags = sorted((arrived[p] - sent[p]) * 1000 for p in sent if p in arrived)
            sustained = backlog <= rate and result.errors == 0 and delivered >= 0.9 * len(sent)
            trials.append(
                {
                    "rate": rate,
                    "created": len(sent),
                    "errors": result.errors,
                    "delivered_in_window": delivered,
                    "delivered_per_s": delivered / window,
                    "backlog_at_end": backlog,
                    "sustained": sustained,
                    "lag_p50_ms": lags[len(lags) // 2] if lags else None,
                    "lag_p99_ms": lags[int(len(lags) * 0.99) - 1] if lags else None,
                    "lost": sum(1 for pid in sent if pid not in arrived),
                }
            )
            return sustained

        low = 0.0
        for rate in rates:
            if not await trial(rate):
                high = rate
                for _ in range(refine):
                    middle = round((low + high) / 2)
                    if middle in (low, high):
                        break
                    low, high = (middle, high) if await trial(middle) else (low, middle)
                break
            low = rate
    sustained = [t for t in trials if t["sustained"]]
    best = max(sustained, key=lambda t: t["delivered_per_s"]) if sustained else None
    return {
        "trials": trials,
        "sustained_per_s": best["delivered_per_s"] if best else 0.0,
        "lag_p50_ms": best["lag_p50_ms"] if best else None,
        "lag_p99_ms": best["lag_p99_ms"] if best else None,
    }


SERVICES = {"postgres": "postgresql", "redis-server": "redis", "beam.smp": "rabbitmq"}
NOT_JUHE = ("simulator",)  # the channel stand-in: reported, never counted as Juhe's


def cpu_seconds(node: LocalNode) -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) so far of every process of the node by pid, with its role
    (supervisor, gateway, each pool, simulator), and of PostgreSQL (every backend), Redis and
    RabbitMQ, which this machine runs for the node alone while a benchmark runs."""
    assert node.process is not None
    found: dict[int, tuple[str, float]] = {}
    top = psutil.Process(node.process.pid)
    for proc in [top, *top.children(recursive=True)]:
        try:
            cmd = proc.cmdline()
            role = cmd[cmd.index("worker") + 1] if "worker" in cmd else cmd[-1]
            times = proc.cpu_times()
        except (psutil.NoSuchProcess, ValueError, IndexError):
            continue
        found[proc.pid] = ("supervisor" if proc is top else role, times.user + times.system)
    for proc in psutil.process_iter(["name", "cpu_times"]):
        service = SERVICES.get(proc.info["name"] or "")
        if service and proc.info["cpu_times"] is not None:
            times = proc.info["cpu_times"]
            found[proc.pid] = (service, times.user + times.system)
    return found


def cpu_by_role(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds spent between two `cpu_seconds` snapshots, summed by role; a process that
    started in between counts whole, one that ended in between is missing (both are rare:
    pools and database connections live as long as the node)."""
    spent: dict[str, float] = {}
    for pid, (role, seconds) in after.items():
        was = before.get(pid)
        used = seconds - (was[1] if was and was[0] == role else 0.0)
        spent[role] = spent.get(role, 0.0) + max(used, 0.0)
    return spent


async def lifecycle_cpu(
    rates: Sequence[float],
    seconds: float,
    requests: Callable[[NewMerchant, int], list[Prepared]] = create_requests,
    prepare: Callable[[LocalNode], Awaitable[None]] | None = None,
) -> list[dict[str, Any]]:
    """CPU milliseconds per payment lifecycle (create → channel → callback → ledger → webhook)
    at each steady rate, by process and in total for Juhe's own processes and its PostgreSQL,
    Redis and RabbitMQ; the simulator is reported beside and left out of the total, as are the
    load generator and the merchant's endpoint (this process). A rate's window runs until its
    last webhook arrived, so its idle work (timers, polls) is counted too."""
    steps = []
    async with paying_node(prepare) as (node, merchant, arrived):
        warm: dict[str, float] = {}
        await open_loop_ids(node.url, requests(merchant, 50), 25.0, 2.0, warm)
        await settled(warm, arrived, 10)
        for rate in rates:
            pool = requests(merchant, int(rate * seconds) + 1)
            sent: dict[str, float] = {}
            before, started = cpu_seconds(node), time.perf_counter()
            result = await open_loop_ids(node.url, pool, rate, seconds, sent)
            await settled(sent, arrived, 30)
            spent = cpu_by_role(before, cpu_seconds(node))
            elapsed = time.perf_counter() - started
            done = sum(1 for pid in sent if pid in arrived) or 1
            per_ms = {role: round(s * 1000 / done, 3) for role, s in sorted(spent.items())}
            steps.append(
                {
                    "rate": rate,
                    "lifecycles": done,
                    "errors": result.errors,
                    "lost": len(sent) - sum(1 for pid in sent if pid in arrived),
                    "window_s": round(elapsed, 2),
                    "cpu_ms": per_ms,
                    "cpu_ms_total": round(
                        sum(ms for role, ms in per_ms.items() if role not in NOT_JUHE), 3
                    ),
                }
            )
    return steps


async def burst_drain(
    seconds: float, connections: int, pool_size: int, restart_after_s: float, down_s: float
) -> dict[str, Any]:
    """A whole node (every pool, as `make run` runs them) under a burst of signed creates far
    above its sustained rate, then stopped and started again `restart_after_s` into the drain:
    the create rate the edge kept during the burst, and the rate the backlog drained at after
    it, restart included, until every payment created was final. Work re-driven while it was
    only waiting would show as `redriven` and as payments with more than one channel attempt."""
    node = LocalNode("drain")
    try:
        await node.start()
        assert node.pg is not None
        sink = node.settings.channels["sim"].base_url + "/_sim/webhooks"
        merchant = await _merchant(node, sink)
        pool = create_requests(merchant, pool_size)
        burst = await closed_loop(node.url, pool, seconds, connections)
        ended = time.perf_counter()
        final = "SELECT count(*) FROM payments WHERE merchant_id = $1 AND status = ANY($2)"
        finals = ["succeeded", "failed", "rejected", "expired", "canceled"]
        await asyncio.sleep(restart_after_s)
        await node.restart(down_s)
        while True:
            created = await _stream_and_rows(node, merchant.id)
            done = await node.pg.fetchval(final, merchant.id, finals)
            if done >= created or time.perf_counter() - ended > 900:
                break
            await asyncio.sleep(0.5)
        drained_s = time.perf_counter() - ended
        repeated = await node.pg.fetchval(
            """SELECT count(*) FROM (SELECT a.payment_id FROM payment_attempts a
               JOIN payments p ON p.id = a.payment_id WHERE p.merchant_id = $1
               GROUP BY a.payment_id HAVING count(*) > 1) x""",
            merchant.id,
        )
        log = node.log_path.read_bytes()
    finally:
        await node.stop()
    return {
        "burst": burst.as_dict(),
        "created": created,
        "final": done,
        "drain_s": drained_s,
        "drained_per_s": done / drained_s,
        "restart_after_s": restart_after_s,
        "down_s": down_s,
        "redriven": log.count(b"re-driving lost work"),
        "payments_with_repeated_attempts": repeated,
        "error_lines": log.count(b'"level":"error"'),
    }


async def _stream_and_rows(node: LocalNode, merchant_id: str) -> int:
    """Payments created so far: rows in PostgreSQL plus intents still on the stream."""
    assert node.redis is not None and node.pg is not None
    waiting = await node.redis.xlen(f"{node.settings.redis.prefix}:{{intake:payments}}")
    rows = "SELECT count(*) FROM payments WHERE merchant_id = $1"
    return await node.pg.fetchval(rows, merchant_id) + waiting


async def open_loop_ids(
    base_url: str, pool: Sequence[Prepared], rate: float, seconds: float, sent: dict[str, float]
) -> LoadResult:
    """open_loop, also noting when each created payment's request was due."""

    def created(status: int, body: bytes, due: float) -> None:
        if status == 201:
            sent[orjson.loads(body)["id"]] = due

    return await open_loop(base_url, pool, rate, seconds, created)


def routing(decisions: int) -> dict[str, float]:
    """The routing decision in-process: 20 channels, a merchant with three rules, each strategy,
    in µs per decision (the time budget is well under a millisecond)."""
    profiles = [
        ChannelProfile(
            f"ch{n}",
            methods=frozenset({("card", "ewallet", "bank_transfer", "crypto")[n % 4]}),
            currencies=frozenset({"USD", "EUR", "TWD"}) if n % 3 else frozenset(),
            priority=n,
            weight=1 + n % 5,
            fees=FeeSchedule.flat(Rate(100 + 10 * n, n)),
        )
        for n in range(20)
    ]
    health = {p.code: Health(n % 7 != 0, 0.9 + (n % 10) / 100) for n, p in enumerate(profiles)}
    request = RouteRequest(123_456, "USD", "card", "TW")
    result = {}
    for strategy in Strategy:
        rules = [
            Rule(Strategy.PINNED, ("ch1",), methods=frozenset({"crypto"})),
            Rule(Strategy.PRIORITY, currencies=frozenset({"JPY"})),
            Rule(strategy),
        ]
        seconds = timeit.timeit(
            lambda rules=rules: route(request, profiles, health, rules, draw=0.42), number=decisions
        )
        result[f"{strategy.value}_us"] = seconds / decisions * 1e6
    return result


async def ledger(entries: int, batch: int) -> dict[str, float]:
    """The ledger pool's batched transaction against one transaction per callback, on the same
    PostgreSQL with synchronous_commit on: payments awaiting payment, one paid callback each."""
    async with scratch_database("bench") as (node, pool):
        assert (await pool.fetchval("SHOW synchronous_commit")) == "on"
        merchant = await create_merchant(
            pool,
            node.box,
            name="bench",
            notify_url="http://127.0.0.1:9/",
            currencies=["USD"],
            fee_bps=250,
        )
        registry = ChannelRegistry(pool, node.box)
        await registry.refresh()
        # The ledger core needs settings and the channels' prices; the broker is not part of
        # this figure, and Redis only holds what the pool learns after a commit (the anomaly
        # models), which `apply_callbacks` does not do.
        redis = redisclient.connect(node.settings.redis.url, 2)
        ctx = SimpleNamespace(
            settings=node.settings,
            channels=registry,
            redis=redis,
            keys=Keys(node.settings.redis.prefix),
        )
        actor = LedgerActor(ctx)  # type: ignore[arg-type]
        rates = {}
        for label, size in (("single", 1), ("batched", batch)):
            callbacks = await _awaiting_payments(pool, merchant.id, entries)
            started = time.perf_counter()
            for i in range(0, entries, size):
                async with pool.acquire() as conn, conn.transaction():
                    await actor.apply_callbacks(conn, callbacks[i : i + size], {}, Written())
            rates[label] = entries / (time.perf_counter() - started)
        await redis.aclose()
        posted = await pool.fetchval("SELECT count(*) FROM journal_entries")
        assert posted == 2 * entries, posted
        return {
            "single_entries_per_s": rates["single"],
            "batched_entries_per_s": rates["batched"],
            "batch_size": batch,
        }


async def _awaiting_payments(pool: Any, merchant_id: str, count: int) -> list[ChannelCallback]:
    ids = [new_id("pay") for _ in range(count)]
    await pool.execute(
        """INSERT INTO payments (id, merchant_id, merchant_order_id, amount, currency, status,
                                 channel, channel_order_id, created_at, expires_at)
           SELECT id, $2, id, 1000, 'USD', 'awaiting_payment', 'sim', 'SIM' || id, now(),
                  now() + interval '1 hour' FROM unnest($1::text[]) AS id""",
        ids,
        merchant_id,
    )
    return [
        ChannelCallback(
            channel="sim",
            event_id=f"e-{pid}",
            payment_id=pid,
            channel_order_id=f"SIM{pid}",
            outcome="paid",
            amount="1000",
            currency="USD",
        )
        for pid in ids
    ]


async def soak(rate: float, seconds: float, sample_s: float = 10.0) -> dict[str, Any]:
    """A whole node under a steady open-loop load: resident memory of every process sampled
    along the way, and every create's answer checked."""
    node = LocalNode("soak", {"JUHE_SIMULATOR__PAY_DELAY_MS": "0"})
    samples: list[dict[str, float]] = []
    errors = created = 0
    try:
        await node.start()
        merchant = await _merchant(node, f"{node.settings.channels['sim'].base_url}/_sim/webhooks")
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            pool = create_requests(merchant, int(rate * sample_s) + 1)
            result = await open_loop(node.url, pool, rate, sample_s)
            errors += result.errors
            created += result.requests
            samples.append({"t": round(time.perf_counter() - started, 1), **_rss(node)})
        backlog = await _backlog(node)
    finally:
        await node.stop()
    return {
        "rate": rate,
        "seconds": seconds,
        "created": created,
        "errors": errors,
        "backlog_at_end": backlog,
        "rss_mb": samples,
    }


def _rss(node: LocalNode) -> dict[str, float]:
    """Resident memory (MiB) of the node's processes by role (gateway, each pool, simulator)."""
    assert node.process is not None
    found: dict[str, float] = {}
    for child in psutil.Process(node.process.pid).children(recursive=True):
        try:
            cmd = child.cmdline()
            role = cmd[cmd.index("worker") + 1] if "worker" in cmd else cmd[-1]
            found[role] = round(child.memory_info().rss / 2**20, 1)
        except (psutil.NoSuchProcess, ValueError, IndexError):
            continue
    return found
