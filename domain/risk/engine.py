"""Facts in, decision out: the one function that judges a payment.

Precedence, strongest first: the merchant's own limits, a block-list entry, a `reject` rule
(each rejects whatever the score); then an allow-list entry or an `allow` rule (approve,
whatever would review or reject by score); then `review` rules and the score against the
version's thresholds. The score is the sum of the points of every `score +N` rule that fired.
A rule that fails to evaluate does not fire; the decision names it among `errors`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import cel

from domain.risk.facts import FUNCTIONS
from domain.risk.limits import MerchantLimits, outside
from domain.risk.lists import Hit, Kind, ListName
from domain.risk.rules import Action, CompiledRuleSet, values_seen


class Outcome(StrEnum):
    APPROVE = "approve"
    REVIEW = "review"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class Fired:
    rule: str
    action: str
    points: int
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    score: int
    version: int | None
    fired: tuple[Fired, ...] = ()
    lists: tuple[Hit, ...] = ()
    errors: tuple[str, ...] = ()
    code: str | None = None  # why, when not approved: the payment's failure_code
    reason: str | None = None

    @property
    def approved(self) -> bool:
        return self.outcome is Outcome.APPROVE

    def to_doc(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "score": self.score,
            "version": self.version,
            "code": self.code,
            "reason": self.reason,
            "fired": [
                {"rule": f.rule, "action": f.action, "points": f.points, "values": f.values}
                for f in self.fired
            ],
            "lists": [
                {"list": h.list.value, "kind": h.kind.value, "entry": h.entry} for h in self.lists
            ],
            "errors": list(self.errors),
        }


def list_values(facts: Mapping[str, Any]) -> dict[Kind, list[str]]:
    """What of a payment's facts each kind of list entry is matched against."""
    countries = {facts["ip_country"], facts["country"], facts["card_country"]} - {""}
    return {
        Kind.IP: [facts["ip"]],
        Kind.EMAIL: [facts["email"]],
        Kind.DOMAIN: [facts["email_domain"]],
        Kind.DEVICE: [facts["device"]],
        Kind.CARD: [facts["card_fingerprint"]],
        Kind.BIN: [facts["card_bin"]],
        Kind.COUNTRY: sorted(countries),
        Kind.CUSTOMER: [facts["customer"]],
    }


def judge(
    rules: CompiledRuleSet,
    facts: Mapping[str, Any],
    hits: Sequence[Hit],
    limits: MerchantLimits | None = None,
) -> Verdict:
    version = rules.version
    if limits is not None and (fault := outside(facts["currency"], facts["amount"], limits)):
        return Verdict(Outcome.REJECT, 0, version, code=fault[0], reason=fault[1])
    context = cel.Context({k: facts[k] for k in rules.reads if k in facts}, dict(FUNCTIONS))
    fired: list[Fired] = []
    errors: list[str] = []
    for rule in rules.applicable(facts["merchant"], facts["agents"]):
        try:
            result = rule.program.execute(context)
        except Exception:  # the interpreter's errors are plain exceptions: the rule did not fire
            errors.append(rule.rule.id)
            continue
        if result is True:
            fired.append(
                Fired(rule.rule.id, rule.action.value, rule.points, values_seen(rule, facts))
            )
    score = sum(f.points for f in fired)
    made = dict(version=version, fired=tuple(fired), lists=tuple(hits), errors=tuple(errors))
    blocked = [h for h in hits if h.list is ListName.BLOCK]
    if blocked:
        kind = blocked[0].kind.value
        return Verdict(
            Outcome.REJECT,
            score,
            code=f"blocked_{kind}",
            reason=f"the {kind} is block-listed",
            **made,
        )
    if rejecting := [f for f in fired if f.action == Action.REJECT]:
        rule = rejecting[0].rule
        return Verdict(Outcome.REJECT, score, code="risk_rule", reason=f"rule {rule}", **made)
    if any(h.list is ListName.ALLOW for h in hits) or any(f.action == Action.ALLOW for f in fired):
        return Verdict(Outcome.APPROVE, score, **made)
    if score >= rules.thresholds.reject:
        reason = f"risk score {score} at or above {rules.thresholds.reject}"
        return Verdict(Outcome.REJECT, score, code="risk_score", reason=reason, **made)
    if score >= rules.thresholds.review or any(f.action == Action.REVIEW for f in fired):
        return Verdict(Outcome.REVIEW, score, code="risk_review", reason="sent to review", **made)
    return Verdict(Outcome.APPROVE, score, **made)
