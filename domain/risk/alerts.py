"""Which decisions operators hear of at once (the ops webhook): a high score, an amount far
from the merchant's usual, a streaming model's anomaly (domain.risk.anomaly), a rule firing
far above its usual share. An alert names the payment, its merchant, the version and the
rules, never the customer's data."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from domain.risk.engine import Verdict


@dataclass(frozen=True, slots=True)
class AlertLimits:
    score: int  # a decision scoring this or more
    z: float  # an amount this many standard deviations or more from the merchant's usual


def alerts_for(
    payment_id: str, verdict: Verdict, facts: Mapping[str, Any], limits: AlertLimits
) -> list[tuple[str, dict[str, Any]]]:
    detail = {
        "payment_id": payment_id,
        "merchant_id": facts["merchant"],
        "outcome": verdict.outcome.value,
        "score": verdict.score,
        "version": verdict.version,
        "rules": [f.rule for f in verdict.fired],
    }
    found = []
    if verdict.score >= limits.score:
        found.append(("risk.high_score", detail))
    z = facts.get("merchant_amount_z") or 0.0
    if abs(z) >= limits.z:
        found.append(("risk.unusual_amount", {**detail, "z": round(z, 2)}))
    return found


def anomaly_alerts(
    scores: Iterable[tuple[str, str, float]], z: float
) -> list[tuple[str, str, dict[str, Any]]]:
    """(model, subject, z-score) → (alert kind, subject, detail) for each score of `z` or more:
    a recent rate above its usual (one below is good news)."""
    return [
        (f"risk.anomaly.{model}", subject, {"subject": subject, "z": round(score, 2)})
        for model, subject, score in scores
        if score >= z
    ]


def surge_alerts(surging: Mapping[str, float], version: int | None) -> list[dict[str, Any]]:
    """The details of `risk.rule_surge` alerts, one per rule firing far above its usual."""
    return [
        {"rule": rule, "version": version, "z": round(z, 2)} for rule, z in sorted(surging.items())
    ]
