"""What a rule version would have decided, compared with what was decided: the shared core of
shadow mode (a draft judged beside the live version on live traffic) and backtests (a version
run again over stored payments' facts).

A decision keeps the facts it was judged on (`facts_doc`: a customer's e-mail and IP only in
part, and only the velocity counters some version read), so a backtest judges exactly what
publishing would have judged, except for rules on whole e-mails or IPs and counters no
version read at the time. The list entries hit at the time are kept too, and stand.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from domain.risk.engine import Verdict, judge
from domain.risk.facts import BLANK
from domain.risk.lists import Hit, Kind, ListName
from domain.risk.rules import CompiledRuleSet, personal

# Rejections by the merchant's own limits, before any rule: a version cannot change them.
LIMIT_CODES = frozenset({"currency_not_allowed", "amount_too_small", "amount_too_large"})


def facts_doc(facts: Mapping[str, Any]) -> dict[str, Any]:
    """The facts as a decision stores them."""
    return {k: personal(k, v) for k, v in facts.items()}


def hits_of(doc: Mapping[str, Any]) -> list[Hit]:
    return [Hit(ListName(h["list"]), Kind(h["kind"]), h["entry"]) for h in doc.get("lists", ())]


def rejudge(rules: CompiledRuleSet, decision: Mapping[str, Any]) -> Verdict | None:
    """The stored decision judged again by `rules`; None when it cannot be (no facts kept, or
    the merchant's limits decided it)."""
    facts = decision.get("facts")
    if facts is None or decision.get("code") in LIMIT_CODES:
        return None
    return judge(rules, {**BLANK, **facts}, hits_of(decision))


@dataclass(frozen=True, slots=True)
class Flip:
    payment_id: str
    before: str
    after: str


@dataclass(frozen=True, slots=True)
class Report:
    """`changes`: (outcome before, outcome after) → payments; `flips`: those that changed."""

    compared: int
    before: dict[str, int]
    after: dict[str, int]
    flips: tuple[Flip, ...] = field(default_factory=tuple)

    def to_doc(self, flips_shown: int = 100) -> dict[str, Any]:
        return {
            "compared": self.compared,
            "before": self.before,
            "after": self.after,
            "changed": len(self.flips),
            "flips": [
                {"payment_id": f.payment_id, "before": f.before, "after": f.after}
                for f in self.flips[:flips_shown]
            ],
        }


def compare(pairs: Iterable[tuple[str, str, str]]) -> Report:
    """(payment id, outcome before, outcome after) for each payment compared."""
    before: Counter[str] = Counter()
    after: Counter[str] = Counter()
    flips = []
    for payment_id, was, now in pairs:
        before[was] += 1
        after[now] += 1
        if was != now:
            flips.append(Flip(payment_id, was, now))
    return Report(sum(before.values()), dict(before), dict(after), tuple(flips))
