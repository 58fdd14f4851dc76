"""Channels as data, on a node of their own: the admin API and `juhe channels`, credentials
sealed at rest, changes reaching every process within a second, switch-overs, daily caps, and
a Stripe-compatible channel (localstripe, a real implementation we did not write) end to end
through the gateway."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import psutil
import pytest
import pytest_asyncio

from benchmarks.node import ROOT
from domain.access import Realm
from domain.messages import ChannelTask, encode
from gateway.client import MerchantClient
from infra.keys import TASKS_STREAM, Keys
from tests import browser
from tests.conftest import merchant_on, wait_status
from tests.invariants import assert_ledger_invariants
from tests.localstripe import DECLINED, LocalStripe
from tests.portal import Portal, make_user
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")

WEBHOOK_SECRET = "whsec_juhe_channel_tests"
VERSION_LINE = re.compile(r'^juhe_channel_config_version\{pid="(\d+)"\} ([0-9.e+]+)$', re.M)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def node() -> AsyncIterator[Stack]:
    stack = Stack("chn")
    try:
        await stack.start()
        yield stack
    finally:
        await stack.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stripe(node: Stack) -> AsyncIterator[LocalStripe]:
    async with LocalStripe() as server:
        callback = f"{node.url}/api/v1/payments/callback/stripe"
        await server.add_webhook("juhe", callback, WEBHOOK_SECRET)
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def admin(node: Stack, http: aiohttp.ClientSession) -> Portal:
    return await make_user(node, http, Realm.PLATFORM, None, ["platform_admin"])


async def _pay(shop: MerchantClient, amount: str = "1.00", **fields: Any) -> dict[str, Any]:
    status, created = await shop.create_payment(
        amount=amount, currency="USD", merchant_order_id=f"o{time.time_ns()}", **fields
    )
    assert status == 201, created
    return await wait_status(shop, created["id"], {"succeeded", "failed", "awaiting_payment"})


async def _versions(node: Stack, http: aiohttp.ClientSession) -> dict[int, int]:
    """Each live process's channel configuration version, from the node's /metrics."""
    async with http.get(node.url + "/metrics") as response:
        text = await response.text()
    return {int(pid): int(float(v)) for pid, v in VERSION_LINE.findall(text)}


async def _config_version(node: Stack) -> int:
    assert node.pg is not None
    return await node.pg.fetchval("SELECT version FROM channel_config_version")


async def test_the_config_file_channels_are_the_first_rows(node: Stack, admin: Portal) -> None:
    status, listed = await admin.call("GET", "/api/v1/admin/channels")
    assert status == 200, listed
    sim = {c["code"]: c for c in listed["data"]}["sim"]
    assert sim["adapter"] == "simulator" and sim["enabled"] is True
    assert sim["credential_keys"] == ["api_key", "secret"]
    assert sim["fees"] == [{"bps": 120, "fixed_minor": 0, "method": None, "currency": None}]
    assert [c["code"] for c in listed["data"]][:2] == ["sim", "sim_b"], "priority order"


async def test_credentials_are_sealed_and_never_shown(node: Stack, admin: Portal) -> None:
    secret = "sk_very_secret_value_42"
    status, created = await admin.call(
        "POST",
        "/api/v1/admin/channels",
        {
            "code": "sealed",
            "adapter": "stripe",
            "base_url": "http://127.0.0.1:9",
            "credentials": {"secret_key": secret, "webhook_secret": "whsec_x"},
            "methods": ["card"],
            "fees": [{"bps": 290, "fixed_minor": 30, "method": "card"}],
            "daily_caps": {"USD": 1_000_000},
            "settlement_currency": "USD",
            "enabled": False,
        },
    )
    assert status == 201, created
    assert created["credential_keys"] == ["secret_key", "webhook_secret"]
    assert node.pg is not None
    stored = await node.pg.fetchval("SELECT credentials FROM channels WHERE code = 'sealed'")
    assert stored.startswith("v1:") and secret not in stored
    status, one = await admin.call("GET", "/api/v1/admin/channels/sealed")
    assert status == 200 and secret not in orjson.dumps(one).decode()
    status, listed = await admin.call("GET", "/api/v1/admin/channels")
    assert secret not in orjson.dumps(listed).decode()
    audit_rows = await node.pg.fetch("SELECT * FROM audit_log WHERE target = 'channel:sealed'")
    assert [r["action"] for r in audit_rows] == ["channel.create"]
    assert secret not in str([dict(r) for r in audit_rows])
    status, _ = await admin.call(
        "PATCH",
        "/api/v1/admin/channels/sealed",
        {"credentials": {"secret_key": "sk_rotated", "webhook_secret": "whsec_y"}},
    )
    assert status == 200
    rotated = await node.pg.fetchval("SELECT credentials FROM channels WHERE code = 'sealed'")
    assert rotated != stored and "sk_rotated" not in rotated
    log = node.log_path.read_text(errors="replace")
    assert secret not in log and "sk_rotated" not in log


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        (
            "POST",
            "/api/v1/admin/channels",
            {"code": "x1", "adapter": "nope", "base_url": "http://a", "credentials": {}},
            400,
            "unknown_adapter",
        ),
        (
            "POST",
            "/api/v1/admin/channels",
            {
                "code": "x2",
                "adapter": "stripe",
                "base_url": "http://a",
                "credentials": {"secret_key": "sk_1"},
            },
            400,
            "credentials_incomplete",
        ),
        (
            "POST",
            "/api/v1/admin/channels",
            {
                "code": "sim",
                "adapter": "simulator",
                "base_url": "http://a",
                "credentials": {"api_key": "k", "secret": "s"},
            },
            409,
            "channel_exists",
        ),
        (
            "POST",
            "/api/v1/admin/channels",
            {"code": "Bad Code", "adapter": "simulator", "base_url": "http://a", "credentials": {}},
            400,
            "invalid_field",
        ),
        (
            "PATCH",
            "/api/v1/admin/channels/sim",
            {"min_amount_minor": 10, "max_amount_minor": 5},
            400,
            "invalid_amount_range",
        ),
        ("PATCH", "/api/v1/admin/channels/sim", {"adapter": "stripe"}, 400, "credentials_required"),
        ("PATCH", "/api/v1/admin/channels/sim", {"version": 1}, 400, "nothing_to_change"),
        (
            "PATCH",
            "/api/v1/admin/channels/sim",
            {"fees": [{"bps": 100, "method": "card"}, {"bps": 90, "method": "card"}]},
            400,
            "duplicate_fee_line",
        ),
        (
            "PATCH",
            "/api/v1/admin/channels/sim",
            {"version": 10_000, "weight": 2},
            409,
            "version_conflict",
        ),
        ("PATCH", "/api/v1/admin/channels/nosuch", {"priority": 1}, 404, "resource_missing"),
        ("POST", "/api/v1/admin/channels/nosuch/disable", None, 404, "resource_missing"),
        (
            "POST",
            "/api/v1/admin/channels/sim/switch-over",
            {"to_channel": "sim"},
            400,
            "same_channel",
        ),
        (
            "POST",
            "/api/v1/admin/channels/sim/switch-over",
            {"to_channel": "sim_b", "merchant_id": "mch_nobody"},
            404,
            "resource_missing",
        ),
        (
            "DELETE",
            "/api/v1/admin/channels/sim/switch-over?merchant_id=mch_x",
            None,
            404,
            "resource_missing",
        ),
    ],
)
async def test_bad_changes_are_refused_and_change_nothing(
    node: Stack, admin: Portal, method: str, path: str, body: Any, status: int, code: str
) -> None:
    before = await _config_version(node)
    got, answer = await admin.call(method, path, body)
    assert (got, answer["error"]["code"]) == (status, code), answer
    assert await _config_version(node) == before


async def test_a_change_reaches_every_process_within_a_second(
    node: Stack, http: aiohttp.ClientSession, admin: Portal
) -> None:
    assert node.process is not None
    routing = {
        child.pid
        for child in psutil.Process(node.process.pid).children(recursive=True)
        if {"gateway", "worker"} & set(child.cmdline())
    }
    assert len(routing) >= 7, "the gateway and the six pools"
    status, changed = await admin.call("PATCH", "/api/v1/admin/channels/sim", {"weight": 3})
    assert status == 200, changed
    target = await _config_version(node)
    started = time.monotonic()
    while True:
        versions = await _versions(node, http)
        if all(versions.get(pid) == target for pid in routing):
            break
        assert time.monotonic() - started < 1.0, f"not everywhere after 1 s: {versions}"
        await asyncio.sleep(0.02)


async def test_a_disabled_channel_gets_no_traffic_until_enabled(
    node: Stack, http: aiohttp.ClientSession, admin: Portal
) -> None:
    shop = await merchant_on(node, http, "disable")
    assert (await _pay(shop))["channel"] == "sim"
    status, off = await admin.call("POST", "/api/v1/admin/channels/sim/disable")
    assert status == 200 and off["enabled"] is False
    await asyncio.sleep(1.0)  # every process within a second
    paid = await _pay(shop)
    assert paid["channel"] == "sim_b"
    status, attempts = await shop.request("GET", f"/api/v1/payments/{paid['id']}/attempts")
    assert [a["channel"] for a in attempts["data"]] == ["sim_b"], "sim was never tried"
    status, on = await admin.call("POST", "/api/v1/admin/channels/sim/enable")
    assert status == 200 and on["enabled"] is True
    await asyncio.sleep(1.0)
    assert (await _pay(shop))["channel"] == "sim"


async def test_a_switch_over_moves_one_merchants_traffic(
    node: Stack, http: aiohttp.ClientSession, admin: Portal
) -> None:
    moved, stays = await merchant_on(node, http, "moved"), await merchant_on(node, http, "stays")
    status, switch = await admin.call(
        "POST",
        "/api/v1/admin/channels/sim/switch-over",
        {"to_channel": "sim_b", "merchant_id": moved.merchant_id, "reason": "incident 42"},
    )
    assert status == 201, switch
    await asyncio.sleep(1.0)
    assert (await _pay(moved))["channel"] == "sim_b"
    assert (await _pay(stays))["channel"] == "sim"
    status, listed = await admin.call("GET", "/api/v1/admin/channels")
    assert [(s["merchant_id"], s["to_channel"]) for s in listed["switch_overs"]] == [
        (moved.merchant_id, "sim_b")
    ]
    status, ended = await admin.call(
        "DELETE", f"/api/v1/admin/channels/sim/switch-over?merchant_id={moved.merchant_id}"
    )
    assert status == 200, ended
    await asyncio.sleep(1.0)
    assert (await _pay(moved))["channel"] == "sim"


async def test_a_daily_cap_sends_the_rest_of_the_day_elsewhere(
    node: Stack, http: aiohttp.ClientSession, admin: Portal
) -> None:
    shop = await merchant_on(node, http, "capped")
    status, body = await admin.call("GET", "/api/v1/admin/channels/sim")
    already = body["routed_today"].get("USD", 0)
    status, body = await admin.call(
        "PATCH", "/api/v1/admin/channels/sim", {"daily_caps": {"USD": already + 500}}
    )
    assert status == 200, body
    await asyncio.sleep(1.0)
    try:
        assert (await _pay(shop, "3.00"))["channel"] == "sim"
        assert (await _pay(shop, "3.00"))["channel"] == "sim_b", "3.00 more would pass the cap"
        assert (await _pay(shop, "2.00"))["channel"] == "sim", "2.00 still fits"
        status, body = await admin.call("GET", "/api/v1/admin/channels/sim")
        assert body["routed_today"]["USD"] == already + 500
        assert body["routable"] is True
    finally:
        await admin.call("PATCH", "/api/v1/admin/channels/sim", {"daily_caps": {}})


def _cli(node: Stack, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "channels", *args],
        env={**os.environ, **node.env},
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        timeout=60,
    )


async def test_the_command_line_changes_channels_like_the_api(
    node: Stack, http: aiohttp.ClientSession
) -> None:
    shop = await merchant_on(node, http, "cli")
    body = orjson.dumps(
        {
            "code": "cli_made",
            "adapter": "simulator",
            "base_url": node.settings.channels["sim"].base_url,
            "credentials": {"api_key": "sim_key_demo", "secret": "sim_secret_demo"},
            "priority": 1,
            "methods": ["crypto"],
        }
    )
    made = await asyncio.to_thread(_cli, node, "create", "--json", "-", stdin=body)
    assert made.returncode == 0, made.stderr
    assert b"sim_secret_demo" not in made.stdout
    await asyncio.sleep(1.0)
    paid = await _pay(shop, method="crypto")
    assert paid["channel"] == "cli_made", "a channel made while the node runs takes traffic"
    off = await asyncio.to_thread(_cli, node, "disable", "cli_made")
    assert off.returncode == 0, off.stderr
    assert orjson.loads(off.stdout)["enabled"] is False
    await asyncio.sleep(1.0)
    assert (await _pay(shop, method="crypto"))["channel"] == "sim"
    missing = await asyncio.to_thread(_cli, node, "enable", "nosuch")
    assert missing.returncode == 2 and b"resource_missing" in missing.stderr
    assert node.pg is not None
    actors = await node.pg.fetch(
        "SELECT action, actor FROM audit_log WHERE target = 'channel:cli_made' ORDER BY seq"
    )
    assert [r["action"] for r in actors] == ["channel.create", "channel.disable"]
    assert all(r["actor"].startswith("cli:") for r in actors)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def card_shop(
    node: Stack, http: aiohttp.ClientSession, admin: Portal, stripe: LocalStripe
) -> MerchantClient:
    """A merchant whose card payments go to a Stripe channel (localstripe behind it)."""
    status, body = await admin.call(
        "POST",
        "/api/v1/admin/channels",
        {
            "code": "stripe",
            "adapter": "stripe",
            "base_url": stripe.url,
            "credentials": {"secret_key": stripe.secret_key, "webhook_secret": WEBHOOK_SECRET},
            "methods": ["card"],
            "currencies": ["USD"],
            "fees": [{"bps": 290, "fixed_minor": 30}],
            "priority": 500,
        },
    )
    assert status == 201, body
    shop = await merchant_on(node, http, "cards")
    status, body = await admin.call(
        "PUT",
        f"/api/v1/merchants/{shop.merchant_id}/payment-config",
        {"routing": [{"strategy": "pinned", "channels": ["stripe"], "methods": ["card"]}]},
    )
    assert status == 200, body
    await asyncio.sleep(1.0)
    return shop


async def _submit_card(
    node: Stack, http: aiohttp.ClientSession, payment_id: str, card: str
) -> tuple[int, Any]:
    url = f"{node.url}/checkout/{payment_id}/card"
    async with http.post(url, json={"payment_method": card}) as response:
        return response.status, await response.json()


async def test_a_card_payment_through_stripe_end_to_end(
    node: Stack, http: aiohttp.ClientSession, card_shop: MerchantClient, stripe: LocalStripe
) -> None:
    waiting = await _pay(card_shop, "12.34", method="card")
    assert (waiting["status"], waiting["channel"]) == ("awaiting_payment", "stripe")
    assert node.pg is not None
    intent_id = await node.pg.fetchval(
        "SELECT channel_order_id FROM payments WHERE id = $1", waiting["id"]
    )
    intent = await stripe.get(f"/v1/payment_intents/{intent_id}")
    assert (intent["amount"], intent["currency"]) == (1234, "usd")
    assert intent["metadata"]["juhe_payment_id"] == waiting["id"]
    async with http.get(f"{node.url}/checkout/{waiting['id']}") as page:
        assert 'id="card"' in await page.text(), "the cashier page asks for the card"
    card = await stripe.card_payment_method()
    status, answer = await _submit_card(node, http, waiting["id"], card)
    assert status == 202, answer
    paid = await wait_status(card_shop, waiting["id"], {"succeeded"}, timeout=20)
    assert (paid["amount"], paid["channel"]) == ("12.34", "stripe")
    cost = await node.pg.fetchval(
        "SELECT balance FROM ledger_accounts WHERE name = $1 AND currency = 'USD'",
        "channel:stripe:cost",
    )
    assert cost == 66, "the channel's fee line: 2.9 % of 12.34 (0.36) + 0.30"
    status, late = await _submit_card(node, http, waiting["id"], card)
    assert (status, late["error"]["code"]) == (409, "payment_not_awaiting_card")
    status, refund = await card_shop.request(
        "POST", "/api/v1/refunds", {"payment_id": waiting["id"], "amount": "2.34"}
    )
    assert status in (200, 201, 202), refund
    deadline = time.monotonic() + 20
    while True:
        _, current = await card_shop.request("GET", f"/api/v1/refunds/{refund['id']}")
        if current["status"] == "succeeded" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert current["status"] == "succeeded", current
    refunds = await stripe.get("/v1/refunds", {"payment_intent": intent_id})
    assert [r["amount"] for r in refunds["data"]] == [234]
    await assert_ledger_invariants(node.pg)


async def test_the_card_form_sends_the_browsers_device_id_and_a_blocked_device_cannot_pay(
    node: Stack,
    http: aiohttp.ClientSession,
    admin: Portal,
    card_shop: MerchantClient,
    stripe: LocalStripe,
) -> None:
    """In Debian's chromium: the page's script (allowed by the policy, as from the gateway
    itself) computes the documented hash of the signals, the same after a reload, and puts it
    in the card form; a device on the block list is refused at the card and nothing moves."""
    waiting = await _pay(card_shop, "3.21", method="card")
    seen = await browser.run("device.mjs", f"{node.url}/checkout/{waiting['id']}")
    assert seen["problems"] == [], seen["problems"]
    device = seen["id"]
    assert seen["field"] == seen["again"] == device
    digest = hashlib.sha256(seen["signals"].encode()).digest()
    assert device == "dev_" + base64.urlsafe_b64encode(digest).decode().rstrip("=")[:32]
    assert seen["signals"].startswith("juhe-device-v1\n")
    status, entry = await admin.call(
        "POST",
        "/api/v1/risk/lists",
        {"list": "block", "kind": "device", "value": device, "reason": "card testing"},
    )
    assert status == 201, entry
    await asyncio.sleep(1.2)  # lists reach every process within a second
    card = await stripe.card_payment_method()
    url = f"{node.url}/checkout/{waiting['id']}/card"
    async with http.post(url, json={"payment_method": card, "device_id": device}) as response:
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "device_blocked"
    await asyncio.sleep(0.5)
    assert (await card_shop.get_payment(waiting["id"]))[1]["status"] == "awaiting_payment"
    status, _ = await admin.call("DELETE", f"/api/v1/risk/lists/{entry['id']}")
    assert status == 200
    await asyncio.sleep(1.2)
    async with http.post(url, json={"payment_method": card, "device_id": device}) as response:
        assert response.status == 202, await response.text()
    await wait_status(card_shop, waiting["id"], {"succeeded"}, timeout=20)


async def test_a_redelivered_card_confirmation_never_fails_a_paid_payment(
    node: Stack, http: aiohttp.ClientSession, card_shop: MerchantClient, stripe: LocalStripe
) -> None:
    """The same confirmation twice (a redelivery after a crash; localstripe forgets
    idempotency keys, so the second is refused as the intent is paid already): the payment
    still succeeds."""
    assert node.redis is not None
    waiting = await _pay(card_shop, "7.00", method="card")
    card = await stripe.card_payment_method()
    status, _ = await _submit_card(node, http, waiting["id"], card)
    assert status == 202
    again = ChannelTask(
        kind="confirm", id=waiting["id"], channel="stripe", payment_method=card, request_id="r"
    )
    stream = Keys(node.settings.redis.prefix).stream(TASKS_STREAM)
    await node.redis.xadd(stream, {"d": encode(again)})
    ended = await wait_status(card_shop, waiting["id"], {"succeeded", "failed"}, timeout=20)
    assert ended["status"] == "succeeded", ended


async def test_a_declined_card_fails_the_payment(
    node: Stack, http: aiohttp.ClientSession, card_shop: MerchantClient, stripe: LocalStripe
) -> None:
    waiting = await _pay(card_shop, "5.00", method="card")
    card = await stripe.card_payment_method(DECLINED)
    status, _ = await _submit_card(node, http, waiting["id"], card)
    assert status == 202
    failed = await wait_status(card_shop, waiting["id"], {"failed"}, timeout=20)
    assert failed["failure_code"] == "card_declined"


async def test_forged_stripe_webhooks_are_refused(
    node: Stack, http: aiohttp.ClientSession, card_shop: MerchantClient
) -> None:
    body = b'{"id": "evt_forged", "type": "payment_intent.succeeded"}'
    headers = {"Stripe-Signature": f"t={int(time.time())},v1={'0' * 64}"}
    url = f"{node.url}/api/v1/payments/callback/stripe"
    async with http.post(url, data=body, headers=headers) as response:
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "invalid_signature"


async def test_a_card_for_a_channel_without_cards_is_refused(
    node: Stack, http: aiohttp.ClientSession
) -> None:
    shop = await merchant_on(node, http, "nocards")
    waiting = await _pay(shop, "1.00")
    status, body = await _submit_card(node, http, waiting["id"], "pm_whatever")
    assert status == 409
    assert body["error"]["code"] in ("card_not_accepted", "payment_not_awaiting_card")
    status, body = await _submit_card(node, http, waiting["id"], "4242424242424242")
    assert (status, body["error"]["code"]) == (400, "invalid_field"), "a card number is refused"
