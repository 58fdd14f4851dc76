"""Shared fixtures: one real Juhe node per session, a merchant webhook receiver, merchants."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiohttp import web

from domain.risk.lists import Kind, ListName, normalize
from domain.signing import SignatureError, verify_webhook
from gateway.client import MerchantClient
from infra import risk
from infra.invalidation import announce
from infra.keys import Keys
from infra.merchants import create_merchant
from tests.stack import Stack, free_port


@dataclass
class Receiver:
    """Plays the merchants' webhook endpoints; verifies every signature it is sent."""

    url: str
    secrets: dict[str, bytes] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)  # ok | fail_once | fail
    events: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    bad_signatures: int = 0
    seen_attempts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    request_ids: dict[str, str] = field(default_factory=dict)
    user_agents: set[str] = field(default_factory=set)

    async def handle(self, request: web.Request) -> web.Response:
        merchant_id = request.match_info["merchant"]
        body = await request.read()
        try:
            verify_webhook(
                self.secrets[merchant_id], request.headers["Juhe-Signature"], body, time.time(), 300
            )
        except (SignatureError, KeyError):
            self.bad_signatures += 1
            return web.Response(status=400)
        event = orjson.loads(body)
        self.seen_attempts[event["id"]] += 1
        self.request_ids[event["id"]] = request.headers.get("X-Request-Id", "")
        self.user_agents.add(request.headers.get("User-Agent", ""))
        mode = self.modes.get(merchant_id, "ok")
        if mode == "fail" or (mode == "fail_once" and self.seen_attempts[event["id"]] == 1):
            return web.Response(status=500)
        self.events[merchant_id].append(event)
        return web.Response(text="ok")

    async def wait_for(
        self, merchant_id: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events[merchant_id]:
                if predicate(event):
                    return event
            await asyncio.sleep(0.05)
        raise AssertionError(f"no matching webhook for {merchant_id}: {self.events[merchant_id]}")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    port = free_port()
    hooks = Receiver(url=f"http://127.0.0.1:{port}/hooks")
    app = web.Application()
    app.router.add_post("/hooks/{merchant}", hooks.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield hooks
    await runner.cleanup()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stack() -> AsyncIterator[Stack]:
    node = Stack("life")
    try:
        await node.start()
        yield node
    finally:
        await node.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


MerchantFactory = Callable[..., Awaitable[MerchantClient]]


def assert_sealed(stored: str, plaintext: str) -> None:
    """A secret as stored at rest: in the sealed format, with nothing of its plaintext."""
    assert stored.startswith("v1:"), "stored in plaintext"
    assert plaintext not in stored


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def new_merchant(
    stack: Stack, receiver: Receiver, http: aiohttp.ClientSession
) -> MerchantFactory:
    async def make(
        currencies: list[str] | None = None, mode: str = "ok", **limits: Any
    ) -> MerchantClient:
        assert stack.pg is not None
        created = await create_merchant(
            stack.pg,
            stack.box,
            name="test merchant",
            notify_url="http://placeholder.invalid/",
            currencies=currencies or ["USD", "EUR", "TWD", "JPY", "BTC", "ETH", "USDT"],
            fee_bps=250,
            fee_fixed_minor=0,
            **limits,
        )
        await stack.pg.execute(
            "UPDATE merchants SET notify_url = $2 WHERE id = $1",
            created.id,
            f"{receiver.url}/{created.id}",
        )
        receiver.secrets[created.id] = created.webhook_secret.encode()
        receiver.modes[created.id] = mode
        client = MerchantClient(stack.url, created.key_id, created.secret, http)
        client.merchant_id = created.id  # type: ignore[attr-defined]
        return client

    return make


async def merchant_on(
    stack: Stack, http: aiohttp.ClientSession, name: str, currencies: list[str] | None = None
) -> MerchantClient:
    """An active merchant on a test's own node, whose webhooks go nowhere."""
    assert stack.pg is not None
    created = await create_merchant(
        stack.pg,
        stack.box,
        name=name,
        notify_url="http://127.0.0.1:9/",
        currencies=currencies or ["USD"],
        fee_bps=250,
    )
    client = MerchantClient(stack.url, created.key_id, created.secret, http)
    client.merchant_id = created.id  # type: ignore[attr-defined]
    return client


@pytest_asyncio.fixture(loop_scope="session")
async def merchant(new_merchant: MerchantFactory) -> MerchantClient:
    return await new_merchant()


async def wait_status(
    client: MerchantClient, payment_id: str, statuses: set[str], timeout: float = 15
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: Any = None
    while time.monotonic() < deadline:
        status, body = await client.get_payment(payment_id)
        assert status == 200, body
        if body["status"] in statuses:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"payment {payment_id} stuck in {body and body['status']}")


async def block(stack: Stack, kind: Kind, value: str) -> str:
    """Put a value on the node's block list, as `juhe risk list add` does, and wait out the
    second every risk process has to hear of it. The stored (normalised) value."""
    assert stack.pg is not None and stack.redis is not None
    stored = normalize(kind, value)
    async with stack.pg.acquire() as conn, conn.transaction():
        await risk.add_entry(conn, ListName.BLOCK, kind, stored, "test")
    await announce(stack.redis, Keys(stack.settings.redis.prefix), risk=True)
    await asyncio.sleep(1.0)
    return stored


pytest.register_assert_rewrite("tests.invariants")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ops_inbox() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """An ops webhook receiver on a free port, for a module's own node: its URL, and every
    alert it received."""
    received: list[dict[str, Any]] = []

    async def take(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/ops", take)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/ops", received
    await runner.cleanup()
