"""Invariants 3 and 4 when a backing service goes away: the node's own RabbitMQ, then its own
PostgreSQL, is stopped (and later killed with SIGKILL) while merchants keep creating payments.
The gateway takes creates on Redis alone, so they keep being answered 201 through either
outage; afterwards every acknowledged payment has succeeded, is posted once, announced by
exactly one `payment.succeeded` event, and that event is delivered."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import aio_pika
import aiohttp
import pytest
import pytest_asyncio

from gateway.client import MerchantClient
from infra.broker import Queues, queue_depths
from infra.merchants import create_merchant
from tests.conftest import Receiver
from tests.invariants import assert_ledger_invariants
from tests.servers import PostgresServer, RabbitServer, Server
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")

OUTAGE_S = 6.0  # how long a service stays down: longer than a pool retries one message
# The backlog an outage leaves is paid in a burst: give the simulator time to answer it, so no
# payment fails over for being slow on a 2-core machine (which is not what is tested here).
PATIENT = {"JUHE_CHANNELS__SIM__TIMEOUT_MS": "3000"}


@pytest_asyncio.fixture(loop_scope="session")
async def own_postgres() -> AsyncIterator[PostgresServer]:
    server = PostgresServer()
    try:
        await server.start()
        yield server
    finally:
        await server.close()


@pytest_asyncio.fixture(loop_scope="session")
async def own_rabbit() -> AsyncIterator[RabbitServer]:
    server = RabbitServer()
    try:
        await server.start()
        yield server
    finally:
        await server.close()


class Load:
    """Merchants creating payments at a steady pace until stopped. A create answered with one of
    the `retryable` statuses is retried with the same Idempotency-Key (what a merchant is told to
    do) until it is 201; any other answer fails the test."""

    def __init__(
        self,
        client: MerchantClient,
        retryable: frozenset[int],
        workers: int = 4,
        pause_s: float = 0.2,
    ) -> None:
        self.client = client
        self.retryable = retryable
        self.workers = workers
        self.pause_s = pause_s
        self.acknowledged: list[str] = []
        self.refused: Counter[int] = Counter()  # 5xx answers that were retried, by status
        self._numbers = itertools.count()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._create()) for _ in range(self.workers)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _create(self) -> None:
        while not self._stop.is_set():
            n = next(self._numbers)
            key = f"outage-{n}-{secrets.token_hex(4)}"
            # Cents clear of the simulator's test amounts (51-59), which decline, fail or stall.
            amount = f"{n % 40 + 1}.{(0, 10, 25, 99)[n % 4]:02d}"
            fields = {"amount": amount, "currency": "USD"}
            deadline = time.monotonic() + 30
            while True:
                status, body = await self.client.create_payment(
                    idempotency_key=key, merchant_order_id=key, **fields
                )
                if status == 201:
                    self.acknowledged.append(body["id"])
                    break
                assert status in self.retryable, (status, body)
                assert time.monotonic() < deadline, f"create {key} refused for 30 s: {body}"
                self.refused[status] += 1
                await asyncio.sleep(0.2)
            await asyncio.sleep(self.pause_s)

    async def until(self, count: int, timeout_s: float = 30) -> None:
        """Wait until `count` creates have been acknowledged in all."""
        deadline = time.monotonic() + timeout_s
        while len(self.acknowledged) < count:
            assert time.monotonic() < deadline, f"only {len(self.acknowledged)} acknowledged"
            assert not any(t.done() for t in self._tasks), [t.result() for t in self._tasks]
            await asyncio.sleep(0.05)


async def outage(
    stack: Stack, server: Server, load: Load, kill: bool, after: Callable[[], Awaitable[None]]
) -> int:
    """Take `server` down (cleanly, or by SIGKILL) for OUTAGE_S while the load goes on, bring it
    back on its port and data, and wait until a payment created since then has gone all the way
    through, so the node has recovered. Return how many creates were acknowledged meanwhile."""
    before = len(load.acknowledged)
    await (server.kill() if kill else server.stop())
    await asyncio.sleep(OUTAGE_S)
    during = len(load.acknowledged) - before
    await server.start()
    await after()
    since = len(load.acknowledged)
    await load.until(since + 1)
    assert stack.pg is not None
    deadline = time.monotonic() + 30
    while not await stack.pg.fetchval(
        "SELECT count(*) FROM payments WHERE id = ANY($1) AND status = 'succeeded'",
        load.acknowledged[since:],
    ):
        assert time.monotonic() < deadline, "the node did not recover from the outage"
        await asyncio.sleep(0.2)
    return during


async def run_with_outages(
    stack: Stack,
    receiver: Receiver,
    server: Server,
    after: Callable[[], Awaitable[None]],
    retryable: frozenset[int],
) -> None:
    """The scenario both tests share: load, a clean outage, load, a crash, load; then wait for
    the node to settle everything and check what it did. `after` runs once the server is back;
    `retryable` are the create answers the outage may cause."""
    assert stack.pg is not None
    created = await create_merchant(
        stack.pg,
        stack.box,
        name="outages",
        notify_url="http://placeholder.invalid/",
        currencies=["USD"],
        fee_bps=250,
    )
    await stack.pg.execute(
        "UPDATE merchants SET notify_url = $2 WHERE id = $1",
        created.id,
        f"{receiver.url}/{created.id}",
    )
    receiver.secrets[created.id] = created.webhook_secret.encode()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16)) as http:
        client = MerchantClient(stack.url, created.key_id, created.secret, http)
        load = Load(client, retryable)
        load.start()
        try:
            await load.until(50)
            during_stop = await outage(stack, server, load, False, after)
            during_kill = await outage(stack, server, load, True, after)
            await load.until(len(load.acknowledged) + 50)
        finally:
            await load.stop()
    paid = load.acknowledged
    print(
        f"\n{len(paid)} payments; acknowledged while down: {during_stop} (stop), "
        f"{during_kill} (kill); retried 5xx answers: {dict(load.refused)}"
    )
    assert during_stop > 0 and during_kill > 0, "creates stalled during the outage"
    assert len(set(paid)) == len(paid)

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        settled = await stack.pg.fetchval(
            "SELECT count(*) FROM payments WHERE id = ANY($1) AND status = 'succeeded'", paid
        )
        undelivered = await stack.pg.fetchval(
            "SELECT count(*) FROM webhook_events WHERE status <> 'delivered'"
        )
        if settled == len(paid) and undelivered == 0:
            break
        await asyncio.sleep(0.5)
    queues = Queues(stack.settings.rabbitmq.prefix)
    connection = await aio_pika.connect(stack.settings.rabbitmq.url)
    async with connection:
        dead = await queue_depths(await connection.channel(), [queues.dead])
    # An outage is the service's fault, never the work's: nothing may be parked for it.
    assert dead[queues.dead] == 0, f"work dead-lettered for an outage; see {stack.log_path}"
    statuses = dict(
        await stack.pg.fetch(
            "SELECT status, count(*) FROM payments WHERE id = ANY($1) GROUP BY status", paid
        )
    )
    stuck = await stack.pg.fetch(
        """SELECT id, status, channel, failure_code FROM payments
           WHERE id = ANY($1) AND status <> 'succeeded' LIMIT 5""",
        paid,
    )
    assert statuses == {"succeeded": len(paid)}, (
        f"of {len(paid)} acknowledged: {statuses}, e.g. {[dict(r) for r in stuck]}; "
        f"see {stack.log_path}"
    )

    posted = dict(
        await stack.pg.fetch(
            """SELECT ref, count(*) FROM journal_entries
               WHERE kind = 'payment' AND ref = ANY($1) GROUP BY ref""",
            paid,
        )
    )
    assert posted == dict.fromkeys(paid, 1)
    await assert_ledger_invariants(stack.pg)

    events = await stack.pg.fetch(
        """SELECT id, status, convert_from(payload, 'UTF8')::jsonb #>> '{data,id}' AS payment
           FROM webhook_events WHERE type = 'payment.succeeded'"""
    )
    assert Counter(e["payment"] for e in events) == Counter(paid), "not one event per payment"
    assert {e["status"] for e in events} == {"delivered"}
    received = {e["id"] for e in receiver.events[created.id]}
    assert {e["id"] for e in events} <= received, "marked delivered but never received"


async def test_a_rabbitmq_restart_during_a_run_loses_nothing(
    own_rabbit: RabbitServer, receiver: Receiver
) -> None:
    stack = Stack("rmqout", {**PATIENT, "JUHE_RABBITMQ__URL": own_rabbit.url})
    try:
        await stack.start()

        async def nothing() -> None:
            pass

        # The gateway never talks to RabbitMQ: every create is answered 201 at once.
        await run_with_outages(stack, receiver, own_rabbit, nothing, frozenset())
    finally:
        if not own_rabbit.running:
            await own_rabbit.start()  # so the node's stop can delete its queues
        await stack.stop()


async def test_a_postgres_restart_during_a_run_loses_nothing(
    own_postgres: PostgresServer, receiver: Receiver
) -> None:
    stack = Stack(
        "pgout",
        {
            **PATIENT,
            "JUHE_POSTGRES__DSN": own_postgres.dsn,
            # The default: the edge authenticates from its cache through a short outage. With
            # the suite's 1 s most creates during the outage would be 503 (and retried).
            "JUHE_GATEWAY__MERCHANT_CACHE_TTL_S": "30",
        },
    )
    try:
        await stack.start()

        async def reconnect() -> None:
            assert stack.pg is not None
            await stack.pg.expire_connections()  # the test's own pool, not the node's

        # The edge authenticates from its cache; a create whose key's entry expires during the
        # outage may be answered 503 (never 500), and is then retried with its key.
        await run_with_outages(stack, receiver, own_postgres, reconnect, frozenset({503}))
    finally:
        if not own_postgres.running:
            await own_postgres.start()  # so the node's stop can drop its database
        await stack.stop()
