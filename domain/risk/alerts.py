"""Which decisions operators hear of at once (the ops webhook): a high score, and an amount
far from the merchant's usual. An alert names the payment, its merchant, the version and the
rules, never the customer's data."""

from __future__ import annotations

from collections.abc import Mapping
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
