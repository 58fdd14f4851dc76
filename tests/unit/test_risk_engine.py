"""Facts in, decision out (domain/risk/engine.py): score, thresholds, and what overrides them."""

from __future__ import annotations

import pytest

from domain.risk import (
    Lookups,
    Outcome,
    Rule,
    Thresholds,
    Transaction,
    compile_rules,
    facts_of,
    judge,
)
from domain.risk.alerts import AlertLimits, alerts_for
from domain.risk.backtest import compare, facts_doc, rejudge
from domain.risk.engine import list_values
from domain.risk.facts import MIN_SEEN, Usual
from domain.risk.geo import BinTable, CountryTable
from domain.risk.lists import Entry, Hit, Kind, ListIndex, ListName, normalize
from domain.risk.velocity import Feature

RULES = compile_rules(
    4,
    [
        Rule("big", "amount_usd > 100000", "score +30"),
        Rule("night", "hour < 6", "score +25"),
        Rule("fast_ip", "velocity.ip.count_1h > 3", "review"),
        Rule("private_ip", "in_cidr(ip, '10.0.0.0/8')", "reject"),
        Rule("vip", "customer == 'cus_vip'", "allow"),
        Rule("agent_only", "amount > 0", "score +1", scope="agent:agt_top"),
        Rule("other_merchant", "amount > 0", "score +100", scope="merchant:mch_other"),
    ],
    Thresholds(review=50, reject=80),
)
NOON = 1_780_000_000 - 1_780_000_000 % 86_400 + 12 * 3600  # 12:00 UTC
DAWN = NOON - 9 * 3600  # 03:00 UTC


def facts(amount_usd: int = 1_000, at: float = NOON, ip_count: int = 1, **tx: str) -> dict:
    fields = {"ip": "203.0.113.9", "email": "Buyer@Shop.Example", **tx}
    transaction = Transaction(
        "mch_1", amount_usd, "USD", at, agents=("agt_near", "agt_top"), **fields
    )
    return facts_of(
        transaction, Lookups(amount_usd, "US", {Feature("ip", "count", "1h"): ip_count})
    )


def test_approve_with_the_version_and_no_points() -> None:
    verdict = judge(RULES, facts(), [])
    assert (verdict.outcome, verdict.score, verdict.version) == (Outcome.APPROVE, 1, 4)
    assert [f.rule for f in verdict.fired] == ["agent_only"]  # the merchant is in agt_top's subtree


def test_score_sums_fired_rules_and_records_what_they_saw() -> None:
    verdict = judge(RULES, facts(amount_usd=200_000, at=DAWN), [])
    assert verdict.outcome is Outcome.REVIEW and verdict.score == 56
    seen = {f.rule: f.values for f in verdict.fired}
    assert seen["big"] == {"amount_usd": 200_000} and seen["night"] == {"hour": 3}


def test_score_at_the_reject_threshold_rejects() -> None:
    rules = compile_rules(1, [Rule("a", "amount > 0", "score +80")], Thresholds(50, 80))
    verdict = judge(rules, facts(), [])
    assert verdict.outcome is Outcome.REJECT and verdict.code == "risk_score"


def test_review_rule_reviews_below_the_threshold() -> None:
    verdict = judge(RULES, facts(ip_count=4), [])
    assert verdict.outcome is Outcome.REVIEW and verdict.score == 1
    seen = {f.rule: f.values for f in verdict.fired}
    assert seen["fast_ip"] == {"velocity.ip.count_1h": 4}


def test_reject_rule_overrides_an_allow() -> None:
    verdict = judge(RULES, facts(ip="10.2.3.4", customer="cus_vip"), [])
    assert verdict.outcome is Outcome.REJECT and verdict.code == "risk_rule"


def test_allow_rule_overrides_review_and_score() -> None:
    verdict = judge(RULES, facts(amount_usd=200_000, at=DAWN, ip_count=9, customer="cus_vip"), [])
    assert verdict.outcome is Outcome.APPROVE and verdict.score == 56


def test_allow_entry_overrides_review_but_not_a_block_entry() -> None:
    allow = Hit(ListName.ALLOW, Kind.EMAIL, "rle_1")
    block = Hit(ListName.BLOCK, Kind.IP, "rle_2")
    assert judge(RULES, facts(ip_count=9), [allow]).outcome is Outcome.APPROVE
    blocked = judge(RULES, facts(ip_count=9), [allow, block])
    assert blocked.outcome is Outcome.REJECT and blocked.code == "blocked_ip"


def test_a_failing_rule_does_not_fire_and_is_named() -> None:
    rules = compile_rules(1, [Rule("usd", "amount_usd > 10", "reject")], Thresholds())
    verdict = judge(rules, facts_of(Transaction("mch_1", 5, "XYZ", NOON), Lookups()), [])
    assert verdict.outcome is Outcome.APPROVE and verdict.errors == ("usd",)


def test_decision_document() -> None:
    doc = judge(
        RULES, facts(amount_usd=200_000, at=DAWN), [Hit(ListName.ALLOW, Kind.DEVICE, "rle_9")]
    ).to_doc()
    assert doc["outcome"] == "approve" and doc["version"] == 4 and doc["score"] == 56
    assert doc["lists"] == [{"list": "allow", "kind": "device", "entry": "rle_9"}]
    assert {f["rule"] for f in doc["fired"]} == {"big", "night", "agent_only"}


def test_facts() -> None:
    f = facts(device="dev_1", card_bin="424242", country="TW")
    assert f["email"] == "buyer@shop.example" and f["email_domain"] == "shop.example"
    assert (f["hour"], f["ip_country"], f["country"], f["agents"]) == (
        12,
        "US",
        "TW",
        ["agt_near", "agt_top"],
    )
    assert f["velocity"]["ip"] == {"count_1h": 1} and f["velocity"]["email"] == {}


# --- lists -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "raw", "stored"),
    [
        (Kind.IP, "203.0.113.9", "203.0.113.9"),
        (Kind.IP, "10.1.2.3/8", "10.0.0.0/8"),
        (Kind.IP, "2001:DB8::1", "2001:db8::1"),
        (Kind.EMAIL, " A@B.Example ", "a@b.example"),
        (Kind.DOMAIN, "@Mailinator.COM", "mailinator.com"),
        (Kind.BIN, "424242", "424242"),
        (Kind.COUNTRY, "ng", "NG"),
        (Kind.DEVICE, "dev_abc-1", "dev_abc-1"),
    ],
)
def test_normalize(kind: Kind, raw: str, stored: str) -> None:
    assert normalize(kind, raw) == stored


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        (Kind.IP, "10.0.0.300"),
        (Kind.EMAIL, "nobody"),
        (Kind.DOMAIN, "no domain"),
        (Kind.BIN, "42"),
        (Kind.COUNTRY, "USA"),
        (Kind.CARD, "x" * 200),
        (Kind.CUSTOMER, "a b"),
    ],
)
def test_normalize_refuses(kind: Kind, raw: str) -> None:
    with pytest.raises(ValueError):
        normalize(kind, raw)


def test_list_index_matches_values_ranges_and_expiry() -> None:
    index = ListIndex(
        [
            Entry("e1", ListName.BLOCK, Kind.IP, "10.0.0.0/8"),
            Entry("e2", ListName.BLOCK, Kind.EMAIL, "buyer@shop.example", expires_at=NOON + 60),
            Entry("e3", ListName.ALLOW, Kind.DOMAIN, "shop.example"),
            Entry("e4", ListName.BLOCK, Kind.COUNTRY, "US"),
            Entry("e5", ListName.BLOCK, Kind.IP, "2001:db8::/32"),
        ]
    )
    values = list_values(facts(ip="10.9.9.9"))
    assert {h.entry for h in index.hits(values, NOON)} == {"e1", "e2", "e3", "e4"}
    assert {h.entry for h in index.hits(values, NOON + 60)} == {"e1", "e3", "e4"}  # e2 expired
    assert [h.entry for h in index.hits({Kind.IP: ["2001:db8::5"]}, NOON)] == ["e5"]
    assert index.hits({Kind.IP: ["not an ip"], Kind.EMAIL: [""]}, NOON) == []


def test_ip_country_table() -> None:
    table = CountryTable(
        [
            ("192.0.2.0", "192.0.2.255", "tw"),
            ("198.51.100.0", "198.51.100.127", "US"),
            ("2001:db8::", "2001:db8::ffff", "DE"),
        ]
    )
    assert [table.country(ip) for ip in ("192.0.2.0", "192.0.2.255", "198.51.100.127")] == [
        "TW",
        "TW",
        "US",
    ]
    assert table.country("198.51.100.128") is None and table.country("10.0.0.1") is None
    assert table.country("2001:db8::1") == "DE" and table.country("nonsense") is None
    with pytest.raises(ValueError):
        CountryTable([("10.0.0.9", "10.0.0.1", "US")])


def test_the_card_country_is_the_longest_matching_bin_prefix_unless_sent() -> None:
    table = BinTable([("4", "US"), ("400005", "gb"), ("40000566", "TW")])
    assert [table.country(b) for b in ("41111111", "400005", "40000566", "40000567")] == [
        "US",
        "GB",
        "TW",
        "GB",
    ]
    assert table.country("555555") is None and table.country(None) is None
    for bad in ("4x", "123456789"):
        with pytest.raises(ValueError):
            BinTable([(bad, "US")])
    tx = Transaction("mch_1", 100, "USD", NOON, card_bin="400005")
    assert facts_of(tx, Lookups(card_country="GB"))["card_country"] == "GB"
    sent = Transaction("mch_1", 100, "USD", NOON, card_bin="400005", card_country="FR")
    assert facts_of(sent, Lookups(card_country="GB"))["card_country"] == "FR"


def test_a_decision_keeps_personal_values_only_in_part() -> None:
    rules = compile_rules(
        1,
        [Rule("who", "email != '' && ip != '' && email_domain == 'shop.example'", "score +1")],
        Thresholds(),
    )
    (fired,) = judge(rules, facts(), []).fired
    assert fired.values == {
        "email": "***@shop.example",
        "ip": "203.0.113.0/24",
        "email_domain": "shop.example",
    }


def test_a_backtest_judges_the_stored_facts_as_publishing_would() -> None:
    stored = judge(RULES, facts(amount_usd=200_000, at=DAWN), [])
    doc = {**stored.to_doc(), "facts": facts_doc(facts(amount_usd=200_000, at=DAWN))}
    assert rejudge(RULES, doc) == judge(RULES, doc["facts"], [])
    stricter = compile_rules(5, [Rule("big", "amount_usd > 100000", "reject")], Thresholds())
    assert rejudge(stricter, doc).outcome is Outcome.REJECT
    older = {**doc, "facts": {k: v for k, v in doc["facts"].items() if k != "merchant_volume_z"}}
    bursts = compile_rules(6, [Rule("burst", "merchant_volume_z > 4.0", "reject")], Thresholds())
    assert rejudge(bursts, older).outcome is Outcome.APPROVE, "a fact added since reads zero"
    assert not rejudge(bursts, older).errors
    limited = {**doc, "code": "amount_too_large"}
    assert rejudge(stricter, limited) is None and rejudge(stricter, {"outcome": "approve"}) is None
    report = compare([("p1", "review", "reject"), ("p2", "approve", "approve")])
    assert report.to_doc() == {
        "compared": 2,
        "before": {"review": 1, "approve": 1},
        "after": {"reject": 1, "approve": 1},
        "changed": 1,
        "flips": [{"payment_id": "p1", "before": "review", "after": "reject"}],
    }


def test_the_merchants_usual_amount_as_facts() -> None:
    usual = Usual(mean=1_000.0, var=10_000.0, seen=MIN_SEEN)
    tx = Transaction("mch_1", 2_500, "USD", NOON)
    f = facts_of(tx, Lookups(2_500, None, {}, usual))
    assert f["merchant_usual_usd"] == 1_000 and f["merchant_amount_z"] == 15.0
    assert Usual(1_000.0, 10_000.0, MIN_SEEN - 1).z(2_500) == 0.0, "too little history"
    assert usual.z(None) == 0.0 and Usual().z(5) == 0.0
    rules = compile_rules(1, [Rule("odd", "merchant_amount_z > 4.0", "review")], Thresholds())
    assert judge(rules, f, []).outcome is Outcome.REVIEW


def test_alerts_name_the_payment_never_the_customer() -> None:
    limits = AlertLimits(score=50, z=6.0)
    f = facts(amount_usd=200_000, at=DAWN)
    verdict = judge(RULES, f, [])
    ((kind, detail),) = alerts_for("pay_1", verdict, f, limits)
    assert kind == "risk.high_score" and detail["score"] == 56 and detail["payment_id"] == "pay_1"
    assert "buyer" not in str(detail).lower() and "203.0.113" not in str(detail)
    unusual = {**f, "merchant_amount_z": -7.5}
    kinds = [k for k, _ in alerts_for("pay_1", verdict, unusual, AlertLimits(1000, 6.0))]
    assert kinds == ["risk.unusual_amount"]
    assert alerts_for("pay_1", judge(RULES, facts(), []), facts(), limits) == []
