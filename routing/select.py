"""Which channel takes a payment: a pure decision over cached configuration and health.

The spine routes by currency and breaker state with priority by configuration order; the
strategies of the routing issue (weights, least cost, success rate) extend this function.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Candidate:
    code: str
    currencies: frozenset[str]  # empty: any currency


def choose_channel(
    currency: str, candidates: Mapping[str, Candidate], unavailable: Set[str] = frozenset()
) -> str | None:
    for code, candidate in candidates.items():
        if code in unavailable:
            continue
        if not candidate.currencies or currency in candidate.currencies:
            return code
    return None
