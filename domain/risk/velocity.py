"""Velocity counters as rules name them: `velocity.<key>.<counter>`, e.g. `velocity.ip.count_1h`,
`velocity.email.sum_usd_24h`, `velocity.device.distinct_card_24h`.

Windows slide: a counter covers the events of the last `window` milliseconds up to and
including the payment being judged (an event exactly one window old is out).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DIMENSIONS = ("ip", "email", "device", "card", "customer", "merchant")
WINDOWS = {"1m": 60_000, "1h": 3_600_000, "24h": 86_400_000}
HORIZON_MS = max(WINDOWS.values())
METRICS = ("count", "sum_usd", "distinct")
_NAME = re.compile(r"^(count|sum_usd|distinct_([a-z]+))_(1m|1h|24h)$")


@dataclass(frozen=True, slots=True, order=True)
class Feature:
    key: str  # the dimension the events are grouped by
    metric: str  # count, sum_usd (USD minor units), distinct
    window: str
    of: str | None = None  # for distinct: which other dimension is counted

    @property
    def name(self) -> str:
        metric = f"distinct_{self.of}" if self.metric == "distinct" else self.metric
        return f"{metric}_{self.window}"

    @property
    def window_ms(self) -> int:
        return WINDOWS[self.window]


def feature_of(key: str, name: str) -> Feature:
    if key not in DIMENSIONS:
        raise ValueError(f"velocity is kept per {', '.join(DIMENSIONS)}, not {key!r}")
    match = _NAME.match(name)
    if match is None:
        raise ValueError(
            f"unknown counter {name!r}: count_W, sum_usd_W or distinct_<key>_W, W in 1m, 1h, 24h"
        )
    of = match.group(2)
    if of is not None and (of not in DIMENSIONS or of == key):
        raise ValueError(f"distinct counts another of {', '.join(DIMENSIONS)}, not {of!r}")
    metric = "distinct" if of else match.group(1)
    return Feature(key, metric, match.group(3), of)


def every_feature() -> list[Feature]:
    out = []
    for key in DIMENSIONS:
        for window in WINDOWS:
            out.append(Feature(key, "count", window))
            out.append(Feature(key, "sum_usd", window))
            out.extend(Feature(key, "distinct", window, of) for of in DIMENSIONS if of != key)
    return out


def nested(values: dict[Feature, int]) -> dict[str, dict[str, int]]:
    """Counters as the `velocity` fact: {key: {counter name: value}}, every key present."""
    out: dict[str, dict[str, int]] = {key: {} for key in DIMENSIONS}
    for feature, value in values.items():
        out[feature.key][feature.name] = value
    return out
