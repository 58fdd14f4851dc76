"""Risk control on a running node of its own: lists and rule sets through the API and the
command line, decisions stored on payments, and hot reload of a published version."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import orjson
import pytest_asyncio

from domain.access import Realm
from domain.ids import new_id
from domain.messages import PaymentIntent
from domain.risk import Outcome, Verdict
from gateway.client import MerchantClient
from infra import agents
from infra.keys import Keys
from infra.risk import Judged
from tests.conftest import merchant_on, wait_status
from tests.portal import Portal, make_user
from tests.stack import Stack
from workers.risk import RiskActor

ROOT = Path(__file__).resolve().parents[2]
# where a payment rests once risk has judged it (a review holds it `in_review`)
FINAL = {"succeeded", "failed", "rejected", "awaiting_payment", "expired", "in_review"}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def node(ops_inbox: tuple[str, list[dict[str, Any]]]) -> AsyncIterator[Stack]:
    overrides = {
        "JUHE_ALERTS__OPS_WEBHOOK_URL": ops_inbox[0],
        "JUHE_RISK__ALERT_REVIEW_QUEUE": "1",
    }
    stack = Stack("risk", overrides)
    try:
        await stack.start()
        yield stack
    finally:
        await stack.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def admin(node: Stack, http: aiohttp.ClientSession) -> Portal:
    return await make_user(node, http, Realm.PLATFORM, None, ["risk_analyst"])


async def pay(shop: MerchantClient, amount: str = "5.00", **customer: str) -> dict:
    order = f"r-{time.time_ns()}"
    status, created = await shop.create_payment(
        amount=amount, currency="USD", merchant_order_id=order, customer=customer or None
    )
    assert status == 201, created
    return await wait_status(shop, created["id"], FINAL)


async def test_a_block_entry_rejects_and_an_allow_entry_overrides_review(
    node: Stack, http: aiohttp.ClientSession, admin: Portal
) -> None:
    shop = await merchant_on(node, http, "risk-lists")
    status, entry = await admin.call(
        "POST",
        "/api/v1/risk/lists",
        {"list": "block", "kind": "ip", "value": "198.51.100.0/25", "reason": "card testing"},
    )
    assert status == 201 and entry["value"] == "198.51.100.0/25", entry
    status, again = await admin.call(
        "POST", "/api/v1/risk/lists", {"list": "block", "kind": "ip", "value": "198.51.100.7/25"}
    )
    assert status == 409 and again["error"]["code"] == "list_entry_exists"
    status, bad = await admin.call(
        "POST", "/api/v1/risk/lists", {"list": "block", "kind": "ip", "value": "10.0.0.300"}
    )
    assert status == 400 and bad["error"]["code"] == "invalid_list_value"
    assert bad["error"]["param"] == "value"
    await asyncio.sleep(1.0)  # every risk process has it within a second
    blocked = await pay(shop, ip="198.51.100.9")
    assert blocked["status"] == "rejected" and blocked["failure_code"] == "blocked_ip"
    assert blocked["risk"]["lists"] == [{"list": "block", "kind": "ip", "entry": entry["id"]}]
    assert (await pay(shop, ip="198.51.100.200"))["status"] != "rejected"  # outside the /25

    status, _ = await admin.call("DELETE", f"/api/v1/risk/lists/{entry['id']}")
    assert status == 200
    status, gone = await admin.call("DELETE", f"/api/v1/risk/lists/{entry['id']}")
    assert status == 404 and gone["error"]["code"] == "resource_missing"
    await asyncio.sleep(1.0)
    assert (await pay(shop, ip="198.51.100.9"))["status"] != "rejected"

    # a rule that reviews every payment of this merchant, and an allow entry for one customer
    await publish(
        admin, [rule("all", "amount > 0", "review", scope=f"merchant:{shop.merchant_id}")]
    )
    status, allow = await admin.call(
        "POST", "/api/v1/risk/lists", {"list": "allow", "kind": "customer", "value": "cus_vip"}
    )
    assert status == 201
    await asyncio.sleep(1.0)
    assert (await pay(shop, id="cus_other"))["risk"]["outcome"] == "review"
    vip = await pay(shop, id="cus_vip")
    assert vip["risk"]["outcome"] == "approve" and vip["risk"]["lists"][0]["list"] == "allow"
    status, page = await admin.call("GET", "/api/v1/risk/lists?list=allow&kind=customer")
    assert status == 200 and [e["id"] for e in page["data"]] == [allow["id"]]


def rule(rule_id: str, expression: str, action: str, **fields: str) -> dict:
    return {"id": rule_id, "expression": expression, "action": action, **fields}


async def publish(admin: Portal, rules: list[dict], **thresholds: int) -> dict:
    body = {"rules": rules, "thresholds": {"review": 50, "reject": 100, **thresholds}}
    status, published = await admin.call("PUT", "/api/v1/risk/rules", body)
    assert status == 200, published
    return published


async def test_a_bad_rule_set_is_refused_naming_rule_and_position(admin: Portal) -> None:
    status, before = await admin.call("GET", "/api/v1/risk/rules")
    assert status == 200
    rules = [
        rule("fine", "amount > 100", "score +10"),
        rule("broken", "amount > 100 &&\n  currency = 'USD'", "review"),
    ]
    status, body = await admin.call("PUT", "/api/v1/risk/rules", {"rules": rules})
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == "invalid_rules"
    assert body["error"]["param"] == "rules[1].expression"
    assert "rule 'broken', expression at 2:" in body["error"]["message"]
    typed = [rule("typed", "amount > 'ten'", "review")]
    status, body = await admin.call("PUT", "/api/v1/risk/rules", {"rules": typed})
    assert status == 400 and "type error" in body["error"]["message"]
    status, body = await admin.call(
        "PUT", "/api/v1/risk/rules", {"rules": [rule("x", "amount > 1", "score 5")]}
    )
    assert status == 400 and body["error"]["param"] == "rules[0].action"
    status, after = await admin.call("GET", "/api/v1/risk/rules")
    assert after == before, "nothing was published"


async def test_published_version_judges_within_a_second_and_rolls_back(
    node: Stack, http: aiohttp.ClientSession, admin: Portal
) -> None:
    shop = await merchant_on(node, http, "risk-rules")
    scope = f"merchant:{shop.merchant_id}"
    first = await publish(
        admin,
        [
            rule("big", "amount_usd >= 10000", "score +30", scope=scope),
            rule("burst", "velocity.device.count_1h > 2", "score +40", scope=scope),
        ],
    )
    await asyncio.sleep(1.0)
    small = await pay(shop, "1.00", device_id="dev_burst_01")
    assert small["risk"]["version"] == first["version"] and small["risk"]["outcome"] == "approve"
    await pay(shop, "1.00", device_id="dev_burst_01")
    third = await pay(shop, "150.00", device_id="dev_burst_01")
    assert third["risk"]["outcome"] == "review" and third["risk"]["score"] == 70
    fired = {f["rule"]: f["values"] for f in third["risk"]["fired"]}
    assert fired == {"big": {"amount_usd": 15000}, "burst": {"velocity.device.count_1h": 3}}

    second = await publish(admin, [rule("huge", "amount_usd >= 10000", "reject", scope=scope)])
    await asyncio.sleep(1.0)
    rejected = await pay(shop, "150.00")
    assert rejected["status"] == "rejected" and rejected["failure_code"] == "risk_rule"
    assert rejected["risk"]["version"] == second["version"]

    status, versions = await admin.call("GET", "/api/v1/risk/rules/versions?limit=2")
    assert status == 200 and [v["version"] for v in versions["data"]] == [
        second["version"],
        first["version"],
    ]
    assert [v["live"] for v in versions["data"]] == [True, False]
    status, back = await admin.call(
        "POST", f"/api/v1/risk/rules/versions/{first['version']}/publish"
    )
    assert status == 200 and back["live"] and back["version"] == first["version"]
    await asyncio.sleep(1.0)
    again = await pay(shop, "150.00")
    assert again["status"] != "rejected" and again["risk"]["version"] == first["version"]
    status, _ = await admin.call("POST", "/api/v1/risk/rules/versions/999999/publish")
    assert status == 404


async def test_one_payment_is_judged_by_one_version_while_versions_change(
    node: Stack, http: aiohttp.ClientSession, admin: Portal
) -> None:
    """Payments created while versions are published back and forth: each decision's fired
    rules are exactly those of the version it names."""
    shop = await merchant_on(node, http, "risk-switch")
    scope = f"merchant:{shop.merchant_id}"
    rules_of = {}
    for name in ("even", "odd"):
        published = await publish(admin, [rule(name, "amount > 0", "score +1", scope=scope)])
        rules_of[published["version"]] = [name]

    async def flip() -> None:
        for version in list(rules_of) * 3:
            await admin.call("POST", f"/api/v1/risk/rules/versions/{version}/publish")
            await asyncio.sleep(0.05)

    async def create(n: int) -> str:
        _, created = await shop.create_payment(
            amount="1.00", currency="USD", merchant_order_id=f"flip-{n}-{time.time_ns()}"
        )
        return created["id"]

    flipping = asyncio.create_task(flip())
    ids = await asyncio.gather(*(create(n) for n in range(30)))
    await flipping
    for payment_id in ids:
        decided = await wait_status(shop, payment_id, FINAL)
        decision = decided["risk"]
        assert [f["rule"] for f in decision["fired"]] == rules_of[decision["version"]]


async def test_the_command_line_manages_lists_and_rules(node: Stack, admin: Portal) -> None:
    def juhe(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", "risk", *args],
            env={**os.environ, **node.env},
            cwd=ROOT,
            input=stdin,
            capture_output=True,
            timeout=60,
        )

    added = juhe("list", "add", "block", "email", "Fraud@Example.com", "--reason", "chargebacks")
    assert added.returncode == 0, added.stderr
    entry = orjson.loads(added.stdout)
    assert entry["value"] == "fraud@example.com" and entry["actor"].startswith("cli:")
    bad = juhe("list", "add", "block", "bin", "42")
    assert bad.returncode == 2 and b"invalid_list_value" in bad.stderr
    legacy = juhe("block", "--email", "fraud@example.com", "--ip", "192.0.2.1")
    assert orjson.loads(legacy.stdout) == {"blocked_ips": 1, "blocked_emails": 1}
    shown = orjson.loads(juhe("list", "show", "--kind", "email").stdout)
    assert entry["id"] in [e["id"] for e in shown["data"]]
    assert juhe("list", "remove", entry["id"]).returncode == 0

    body = orjson.dumps({"rules": [rule("cli_rule", "amount > 1000000", "review")]})
    published = juhe("rules", "publish", "--json", "-", stdin=body)
    assert published.returncode == 0, published.stderr
    version = orjson.loads(published.stdout)["version"]
    status, live = await admin.call("GET", "/api/v1/risk/rules")
    assert status == 200 and live["version"] == version and live["rules"][0]["id"] == "cli_rule"
    broken = juhe(
        "rules",
        "publish",
        "--json",
        '{"rules": [{"id": "b", "expression": "amount >", "action": "review"}]}',
    )
    assert broken.returncode == 2 and b"invalid_rules" in broken.stderr and b"1:9" in broken.stderr
    assert juhe("rules", "rollback", str(version - 1)).returncode == 0
    assert node.pg is not None
    actions = await node.pg.fetch(
        "SELECT action, target FROM audit_log WHERE action LIKE 'risk.%' AND actor LIKE 'cli:%'"
    )
    assert {"risk.list_add", "risk.list_remove", "risk.rules_publish"} <= {
        a["action"] for a in actions
    }
    assert not any("fraud@example.com" in str(a) for a in actions), "no e-mail in the audit"


async def events_of(node: Stack, payment_id: str) -> list[str]:
    assert node.pg is not None
    rows = await node.pg.fetch(
        "SELECT type FROM webhook_events WHERE convert_from(payload, 'UTF8') LIKE '%' || $1 || '%' "
        "ORDER BY created_at, id",
        payment_id,
    )
    return [r["type"] for r in rows]


async def until(check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := await check():
            return found
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


async def held(shop: MerchantClient, customer: str) -> dict:
    status, created = await shop.create_payment(
        amount="20.00",
        currency="USD",
        merchant_order_id=f"rv-{time.time_ns()}",
        customer={"id": customer},
    )
    assert status == 201, created
    payment = await wait_status(shop, created["id"], FINAL)
    assert payment["status"] == "in_review" and payment["risk"]["outcome"] == "review", payment
    return payment


async def test_review_queue_approve_reject_and_the_default(
    node: Stack, http: aiohttp.ClientSession, admin: Portal
) -> None:
    shop = await merchant_on(node, http, "risk-review")
    scope = f"merchant:{shop.merchant_id}"
    await publish(admin, [rule("watch", "customer.startsWith('cus_watch')", "review", scope=scope)])
    await asyncio.sleep(1.0)
    other = await make_user(node, http, Realm.PLATFORM, None, ["risk_analyst"])
    owner = await make_user(node, http, Realm.MERCHANT, shop.merchant_id, ["merchant_owner"])

    # approved: on to routing as if approved, and paid
    first = await held(shop, "cus_watch_1")
    status, queue = await admin.call(
        "GET", f"/api/v1/risk/reviews?status=open&merchant_id={shop.merchant_id}"
    )
    assert status == 200 and [r["payment_id"] for r in queue["data"]] == [first["id"]]
    assert queue["data"][0]["amount"] == "20.00" and queue["data"][0]["score"] == 0
    path = f"/api/v1/risk/reviews/{first['id']}"
    status, _ = await owner.call("POST", f"{path}/approve", {"reason": "my own customer"})
    assert status == 403, "a merchant never decides its own reviews"
    status, claimed = await admin.call("POST", f"{path}/claim")
    assert status == 200 and claimed["status"] == "claimed"
    status, taken = await other.call("POST", f"{path}/approve", {"reason": "looks fine"})
    assert status == 409 and taken["error"]["code"] == "review_claimed"
    status, bad = await admin.call("POST", f"{path}/approve", {})
    assert status == 400 and bad["error"]["param"] == "reason"
    status, approved = await admin.call("POST", f"{path}/approve", {"reason": "known buyer"})
    assert status == 200 and approved["status"] == "approved"
    paid = await wait_status(shop, first["id"], {"succeeded", "failed", "rejected"})
    assert paid["status"] == "succeeded" and paid["channel"]
    assert paid["risk"]["review"]["outcome"] == "approve"
    status, again = await admin.call("POST", f"{path}/reject", {"reason": "changed my mind"})
    assert status == 409 and again["error"]["code"] == "review_closed"
    kinds = await until(lambda: _having(events_of(node, first["id"]), "payment.succeeded"))
    assert kinds.index("payment.review_opened") < kinds.index("payment.review_closed")
    assert node.redis is not None  # the ledger pool's decline models learned the success
    key = Keys(node.settings.redis.prefix).anomaly("decline", shop.merchant_id)
    model = await node.redis.hgetall(key)
    assert int(model[b"n"]) >= 1 and float(model[b"mean"]) == 0.0, model

    # rejected: ends rejected, the merchant notified
    second = await held(shop, "cus_watch_2")
    status, _ = await admin.call(
        "POST", f"/api/v1/risk/reviews/{second['id']}/reject", {"reason": "stolen card"}
    )
    assert status == 200
    rejected = await wait_status(shop, second["id"], {"rejected"})
    assert rejected["failure_code"] == "risk_review_rejected"
    kinds = await until(lambda: _having(events_of(node, second["id"]), "payment.rejected"))
    assert {"payment.review_opened", "payment.review_closed"} <= set(kinds)

    # nobody decided in time: the default (reject)
    third = await held(shop, "cus_watch_3")
    assert node.pg is not None
    await node.pg.execute(
        "UPDATE risk_reviews SET due_at = now() - interval '1 second' WHERE payment_id = $1",
        third["id"],
    )
    ended = await wait_status(shop, third["id"], {"rejected"})
    assert ended["risk"]["review"] == {
        "outcome": "reject",
        "by": "system:review_timeout",
        "reason": "not decided in time",
        "by_default": True,
    }
    status, closed = await admin.call("GET", f"/api/v1/risk/reviews/{third['id']}")
    assert status == 200 and closed["by_default"] is True and closed["status"] == "rejected"
    actions = await node.pg.fetch(
        "SELECT action FROM audit_log WHERE target = $1 ORDER BY seq", f"payment:{first['id']}"
    )
    assert [a["action"] for a in actions] == ["risk.review_claim", "risk.review_approve"]


async def _having(kinds_soon, wanted: str) -> list[str] | None:
    kinds = await kinds_soon
    return kinds if wanted in kinds else None


async def test_evaluate_judges_without_a_payment_or_a_count(
    node: Stack, http: aiohttp.ClientSession, admin: Portal
) -> None:
    shop = await merchant_on(node, http, "risk-evaluate")
    scope = f"merchant:{shop.merchant_id}"
    await publish(
        admin,
        [
            rule("test_bin", "card_bin.startsWith('400000')", "reject", scope=scope),
            rule("busy", "velocity.device.count_1h > 1", "review", scope=scope),
            rule("abroad", "card_country != ip_country", "score +20", scope=scope),
        ],
    )
    await asyncio.sleep(1.0)
    body = {
        "amount": "12.50",
        "currency": "USD",
        "method": "card",
        "customer": {"ip": "192.0.2.10", "device_id": "dev_evaluate_1"},
        "card": {"bin": "424242", "country": "TW"},
    }
    for amount in ("12.50", "12.51"):  # not counted: the second sees the first's counters
        status, decision = await shop.request(
            "POST", "/api/v1/risk/evaluate", {**body, "amount": amount}
        )
        assert status == 200, decision
        assert decision["object"] == "risk_decision" and decision["outcome"] == "approve"
        assert decision["fired"] == []  # the sample table puts 192.0.2.0/24 in TW
    status, decision = await shop.request(
        "POST", "/api/v1/risk/evaluate", {**body, "card": {"bin": "40000012", "country": "US"}}
    )
    assert status == 200 and decision["outcome"] == "reject" and decision["code"] == "risk_rule"
    assert {f["rule"] for f in decision["fired"]} == {"test_bin", "abroad"}
    status, bad = await shop.request("POST", "/api/v1/risk/evaluate", {**body, "amount": "1.001"})
    assert status == 400 and bad["error"]["param"] == "amount"
    status, page = await shop.request("GET", "/api/v1/payments?limit=1")
    assert status == 200 and page["data"] == [], "nothing was created"


async def test_metrics_show_decisions_rules_and_the_review_queue(
    node: Stack, http: aiohttp.ClientSession
) -> None:
    async def scrape() -> str | None:
        async with http.get(f"{node.url}/metrics") as response:
            text = await response.text()
        wanted = ('juhe_risk_decisions_total{outcome="review"}', "juhe_risk_review_queue")
        return text if all(w in text for w in wanted) else None

    text = await until(scrape)  # the scheduler samples the queue every tick
    assert 'juhe_risk_rule_results_total{result="fired",rule="watch"}' in text
    assert "juhe_risk_rules_version" in text


async def test_shadow_and_backtest_decide_as_publishing_would(
    node: Stack, http: aiohttp.ClientSession, admin: Portal
) -> None:
    shop = await merchant_on(node, http, "risk-shadow")
    scope = f"merchant:{shop.merchant_id}"
    start = int(time.time()) - 1
    await publish(admin, [rule("large", "amount_usd >= 5000", "score +60", scope=scope)])
    draft_rules = [
        rule("strict", "amount_usd >= 2000", "reject", scope=scope),
        rule("busy_ip", "velocity.ip.count_1h > 100", "review", scope=scope),
    ]
    status, draft = await admin.call("POST", "/api/v1/risk/rules/versions", {"rules": draft_rules})
    assert status == 201 and draft["live"] is False
    status, shadow = await admin.call(
        "PUT", "/api/v1/risk/rules/shadow", {"version": draft["version"]}
    )
    assert status == 200 and shadow["version"] == draft["version"]
    await asyncio.sleep(1.0)
    amounts = ("10.00", "30.00", "60.00")
    live = {a: await pay(shop, a, ip="198.51.100.77") for a in amounts}
    assert [live[a]["risk"]["outcome"] for a in amounts] == ["approve", "approve", "review"]
    assert "shadow" not in live["30.00"]["risk"] and "facts" not in live["30.00"]["risk"]

    status, compared = await admin.call(
        "GET", f"/api/v1/risk/rules/shadow?since={start}&merchant_id={shop.merchant_id}"
    )
    assert status == 200 and compared["version"] == draft["version"]
    assert compared["before"] == {"approve": 2, "review": 1}
    assert compared["after"] == {"approve": 1, "reject": 2}
    shadow_flips = {(f["payment_id"], f["before"], f["after"]) for f in compared["flips"]}
    assert shadow_flips == {
        (live["30.00"]["id"], "approve", "reject"),
        (live["60.00"]["id"], "review", "reject"),
    }
    until = int(time.time()) + 1
    status, backtested = await admin.call(
        "POST",
        f"/api/v1/risk/rules/versions/{draft['version']}/backtest",
        {"since": start, "until": until, "merchant_id": shop.merchant_id},
    )
    assert status == 200, backtested
    flips = {(f["payment_id"], f["before"], f["after"]) for f in backtested["flips"]}
    assert flips == shadow_flips and backtested["after"] == compared["after"]

    # published, the draft decides what its shadow and its backtest said it would
    status, _ = await admin.call("POST", f"/api/v1/risk/rules/versions/{draft['version']}/publish")
    assert status == 200
    status, stopped = await admin.call("DELETE", "/api/v1/risk/rules/shadow")
    assert status == 200 and stopped["version"] is None
    await asyncio.sleep(1.0)
    after = [(await pay(shop, a, ip="198.51.100.77"))["risk"]["outcome"] for a in amounts]
    assert after == ["approve", "reject", "reject"]
    status, again = await admin.call(
        "POST",
        f"/api/v1/risk/rules/versions/{draft['version']}/backtest",
        {"since": until, "until": int(time.time()) + 1, "merchant_id": shop.merchant_id},
    )
    assert status == 200 and again["compared"] == 3 and again["changed"] == 0
    status, none = await admin.call("GET", "/api/v1/risk/rules/shadow")
    assert status == 200 and none["version"] is None and none["compared"] == 0


async def test_operators_hear_of_high_scores_and_a_long_review_queue(
    node: Stack,
    http: aiohttp.ClientSession,
    admin: Portal,
    ops_inbox: tuple[str, list[dict[str, Any]]],
) -> None:
    _, inbox = ops_inbox
    shop = await merchant_on(node, http, "risk-alerts")
    scope = f"merchant:{shop.merchant_id}"
    await publish(
        admin,
        [
            rule("hot", "amount > 0", "score +200", scope=scope),
            rule("watch", "customer == 'cus_alert'", "review", scope=scope),
        ],
        reject=1000,
    )
    await asyncio.sleep(1.0)
    hot = await pay(shop, email="alert.me@shop.example", ip="198.51.100.44")

    async def heard(kind: str, payment_id: str | None = None) -> dict | None:
        return next(
            (
                a
                for a in inbox
                if a["type"] == kind and payment_id in (None, a["detail"].get("payment_id"))
            ),
            None,
        )

    alert = await until(lambda: heard("risk.high_score", hot["id"]))
    assert alert["detail"]["score"] == 200 and alert["detail"]["rules"] == ["hot"]
    assert "alert.me" not in str(alert) and "198.51.100.44" not in str(alert)
    await held(shop, "cus_alert")
    queue = await until(lambda: heard("risk.review_queue"))
    assert queue["detail"]["waiting"] >= 1 and queue["detail"]["limit"] == 1


async def test_an_agent_scoped_rule_judges_its_whole_subtree_only(
    node: Stack, http: aiohttp.ClientSession, admin: Portal
) -> None:
    assert node.pg is not None
    top, child = new_id("agt"), new_id("agt")
    under = await merchant_on(node, http, "risk-under")
    outside = await merchant_on(node, http, "risk-outside")
    async with node.pg.acquire() as conn, conn.transaction():
        for agent_id, parent in ((top, None), (child, top)):
            await agents.create_agent(
                conn,
                agent_id=agent_id,
                name=agent_id,
                email=f"{agent_id}@agents.example",
                parent_id=parent,
                status="active",
                grants=[],
            )
        await agents.place_merchant(conn, under.merchant_id, child)
    await publish(admin, [rule("subtree", f"'{child}' in agents", "review", scope=f"agent:{top}")])
    await asyncio.sleep(1.0)
    judged = await pay(under)
    assert judged["risk"]["outcome"] == "review"
    assert judged["risk"]["fired"][0]["values"] == {"agents": [child, top]}  # nearest first
    assert (await pay(outside))["risk"]["fired"] == []


async def test_the_card_on_a_payment_is_judged_with_its_countrys_bin(
    node: Stack, http: aiohttp.ClientSession, admin: Portal
) -> None:
    """A create may carry what the merchant's card tokenisation knows (never the number): the
    BIN's issuing country comes from the local table (config/bin_country.csv) unless sent."""
    shop = await merchant_on(node, http, "risk-cards")
    await publish(admin, [rule("abroad", "card_country == 'TW' && card_bin != ''", "review")])
    await asyncio.sleep(1.0)
    judged = {}
    for name, card in (
        ("by_bin", {"bin": "40000566", "fingerprint": "fp_a"}),
        ("sent", {"bin": "40000566", "country": "US"}),
        ("other", {"bin": "42424242"}),
    ):
        status, created = await shop.create_payment(
            amount="5.00", currency="USD", merchant_order_id=f"c-{time.time_ns()}", card=card
        )
        assert status == 201, created
        judged[name] = (await wait_status(shop, created["id"], FINAL))["risk"]
    assert judged["by_bin"]["outcome"] == "review"
    assert judged["by_bin"]["fired"][0]["values"]["card_country"] == "TW"
    assert judged["sent"]["outcome"] == "approve" and judged["other"]["outcome"] == "approve"
    status, bad = await shop.create_payment(
        amount="5.00", currency="USD", merchant_order_id="c-bad", card={"bin": "4242 4242"}
    )
    assert status == 400 and bad["error"]["param"] == "card.bin", bad


async def test_a_redelivered_decision_is_kept_and_neither_alerts_nor_counts_again(
    node: Stack, http: aiohttp.ClientSession
) -> None:
    """The risk pool stores a payment's decision once, in one statement, and tells which
    payments it decided now: only those raise alerts and count in the rule windows."""
    assert node.pg is not None and node.redis is not None
    shop = await merchant_on(node, http, "risk-again")
    pid = new_id("pay")
    await node.pg.execute(
        """INSERT INTO payments (id, merchant_id, merchant_order_id, amount, currency, status,
                                 created_at, expires_at)
           VALUES ($1, $2, $1, 500, 'USD', 'pending', now(), now() + interval '1 hour')""",
        pid,
        shop.merchant_id,
    )
    ctx = SimpleNamespace(
        settings=node.settings,
        pg=node.pg,
        redis=node.redis,
        keys=Keys(node.settings.redis.prefix),
        box=node.box,
        channels=SimpleNamespace(version=1, enabled=[]),
    )
    actor = RiskActor(ctx)  # type: ignore[arg-type]
    intent = PaymentIntent(
        id=pid,
        merchant_id=shop.merchant_id,
        merchant_order_id=pid,
        amount="500",
        currency="USD",
        created_at=0.0,
        expires_at=0.0,
    )
    first = Judged(Verdict(Outcome.REVIEW, 60, 7), None, {})
    decided, fresh = await actor.record([intent], [first])
    assert fresh == {pid} and decided[0]["outcome"] == "review" and decided[0]["version"] == 7
    second = Judged(Verdict(Outcome.REJECT, 999, 8), None, {})
    again, fresh = await actor.record([intent], [second])
    assert fresh == set(), "a redelivery is not decided again"
    assert again[0]["outcome"] == "review" and again[0]["version"] == 7
    stored = await node.pg.fetchval("SELECT risk FROM payments WHERE id = $1", pid)
    assert orjson.loads(stored)["version"] == 7
