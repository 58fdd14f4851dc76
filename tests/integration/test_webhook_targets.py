"""Webhooks never go to loopback or private addresses (SSRF): a node as in production
(`notify.allow_private_targets = false`) refuses such a notify_url when it is given, and does
not connect to one a merchant already has, whatever its name resolves to."""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from domain.access import Realm
from gateway.client import MerchantClient
from infra.egress import PublicResolver, RefusedTarget
from infra.merchants import create_merchant
from tests.conftest import merchant_on, wait_status
from tests.portal import make_user
from tests.stack import Stack, free_port

pytestmark = pytest.mark.asyncio(loop_scope="session")
UNSAFE = [
    "http://127.0.0.1:8080/hook",
    "http://localhost/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://0x7f.1/",
    "http://[::ffff:127.0.0.1]/",
    "http://user:pass@hooks.example.com/",
]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def production() -> AsyncIterator[Stack]:
    node = Stack("ssrf", {"JUHE_NOTIFY__ALLOW_PRIVATE_TARGETS": "false"})
    try:
        await node.start()
        yield node
    finally:
        await node.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def listener() -> AsyncIterator[tuple[int, list[str]]]:
    """A server on loopback that records every request it gets: nothing may reach it."""
    seen: list[str] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port, seen
    await runner.cleanup()


async def test_an_unsafe_notify_url_is_refused_at_create(production: Stack, http) -> None:
    merchant = await merchant_on(production, http, "shop")
    stream = production.settings.redis.prefix + ":{intake:payments}"
    for url in UNSAFE:
        before = await production.redis.xlen(stream)
        status, error = await merchant.create_payment(
            amount="1.00", currency="USD", merchant_order_id=secrets.token_hex(6), notify_url=url
        )
        assert status == 400, (url, error)
        assert (error["error"]["code"], error["error"]["param"]) == ("unsafe_url", "notify_url")
        assert await production.redis.xlen(stream) <= before, "nothing written"


async def test_an_unsafe_notify_url_is_refused_when_a_merchant_is_configured(
    production: Stack, http: aiohttp.ClientSession
) -> None:
    assert production.pg is not None
    name = "Lantern " + secrets.token_hex(4)
    registration = {
        "name": name,
        "email": f"{secrets.token_hex(4)}@tea.example",
        "password": "Tea-owner-password-1",
        "notify_url": "http://169.254.169.254/latest/meta-data/",
        "currencies": ["USD"],
        "legal": {
            "entity_name": "Lantern Tea Ltd",
            "registration_number": "TW-1",
            "country": "TW",
            "address": "1 Tea Street",
        },
        "owners": [{"name": "Mei Lin", "share_percent": 100}],
        "documents": [],
        "bank_account": {"holder": "Lantern", "number": "DE8937040044", "bank_name": "Tea Bank"},
    }
    async with http.post(production.url + "/api/v1/merchants/register", json=registration) as r:
        error = await r.json()
        assert r.status == 400, error
    assert (error["error"]["code"], error["error"]["param"]) == ("unsafe_url", "notify_url")
    assert not await production.pg.fetchval("SELECT 1 FROM merchants WHERE name = $1", name)

    merchant = await merchant_on(production, http, "configured")
    admin = await make_user(production, http, Realm.PLATFORM, None, ["platform_admin"])
    path = f"/api/v1/merchants/{merchant.merchant_id}/payment-config"
    for url in UNSAFE:
        status, error = await admin.call("PUT", path, {"notify_url": url})
        assert status == 400, (url, error)
        assert (error["error"]["code"], error["error"]["param"]) == ("unsafe_url", "notify_url")
    stored = await production.pg.fetchval(
        "SELECT notify_url FROM merchants WHERE id = $1", merchant.merchant_id
    )
    assert stored == "http://127.0.0.1:9/", "unchanged"
    status, body = await admin.call("PUT", path, {"notify_url": "https://tea.example/hooks"})
    assert status == 200, body


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_a_stored_loopback_notify_url_is_never_posted_to(
    production: Stack, http: aiohttp.ClientSession, listener: tuple[int, list[str]], host: str
) -> None:
    """Stored before the rule (or by a path that skips the API): each attempt is refused
    without a connection, recorded with its reason, retried and finally dead-lettered. A name
    (`localhost`) is refused by what it resolves to, an address by itself."""
    assert production.pg is not None
    port, seen = listener
    created = await create_merchant(
        production.pg,
        production.box,
        name="rebound",
        notify_url=f"http://{host}:{port}/hooks",
        currencies=["USD"],
        fee_bps=250,
    )
    merchant = MerchantClient(production.url, created.key_id, created.secret, http)
    _, payment = await merchant.create_payment(
        amount="1.00", currency="USD", merchant_order_id=secrets.token_hex(6)
    )
    await wait_status(merchant, payment["id"], {"succeeded"})
    tries = 1 + len(production.settings.notify.retry_schedule_s)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        event = await production.pg.fetchrow(
            "SELECT id, status, attempts FROM webhook_events WHERE merchant_id = $1", created.id
        )
        if event and event["status"] == "dead":
            break
        await asyncio.sleep(0.1)
    assert event and event["status"] == "dead" and event["attempts"] == tries, event
    errors = await production.pg.fetch(
        "SELECT status_code, error FROM webhook_attempts WHERE event_id = $1", event["id"]
    )
    assert len(errors) == tries
    for attempt in errors:
        assert attempt["status_code"] is None
        assert attempt["error"].startswith("unsafe_target: ")
        assert "not a public address" in attempt["error"]
    assert seen == [], "no request reached the loopback listener"
    assert "webhook target refused" in production.log_path.read_text(errors="replace")


async def test_the_resolver_refuses_a_name_when_any_of_its_addresses_is_private() -> None:
    resolver = PublicResolver()
    try:
        with pytest.raises(RefusedTarget, match="localhost resolves to"):
            await resolver.resolve("localhost", 80, socket.AF_UNSPEC)
    finally:
        await resolver.close()
