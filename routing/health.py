"""Channels' recent health, shared by every process through Redis: per channel, counts of
outcomes and a latency histogram in 10-second slots, read back over a sliding window.

Every channel call adds to its slot (one pipelined round trip); readers sum the slots of the
window and derive the success rate and latency percentiles. Declines count as successes for
health: the channel answered, the customer's card did not.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from redis.asyncio import Redis

from infra.keys import Keys

SLOT_S = 10
# Upper bounds of the latency buckets, in ms; the last bucket is everything slower.
LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)


@dataclass(frozen=True, slots=True)
class HealthWindow:
    attempts: int = 0
    successes: int = 0
    errors: Mapping[str, int] = field(default_factory=dict)
    p50_ms: float | None = None
    p95_ms: float | None = None

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.attempts if self.attempts else None


_BOUNDS = (*(float(b) for b in LATENCY_BUCKETS_MS), float("inf"))
_LABELS = (*(f"lat:{b}" for b in LATENCY_BUCKETS_MS), "lat:inf")


def bucket(latency_ms: float) -> str:
    return next(label for bound, label in zip(_BOUNDS, _LABELS, strict=True) if latency_ms <= bound)


def _percentile(histogram: Mapping[str, int], share: float) -> float | None:
    total = sum(histogram.values())
    if not total:
        return None
    seen = 0
    for bound, label in zip(_BOUNDS, _LABELS, strict=True):
        seen += histogram.get(label, 0)
        if seen >= share * total:
            return bound
    return _BOUNDS[-1]


def summarise(slots: Iterable[Mapping[str, int]]) -> HealthWindow:
    """One window from its slots' counters: `ok`, `err:<kind>`, `lat:<bound>`. Percentiles are
    the upper bound of the bucket they fall in."""
    totals: dict[str, int] = {}
    for slot in slots:
        for name, count in slot.items():
            totals[name] = totals.get(name, 0) + count
    errors = {k[4:]: v for k, v in totals.items() if k.startswith("err:")}
    successes = totals.get("ok", 0)
    latency = {k: v for k, v in totals.items() if k.startswith("lat:")}
    return HealthWindow(
        attempts=successes + sum(errors.values()),
        successes=successes,
        errors=errors,
        p50_ms=_percentile(latency, 0.5),
        p95_ms=_percentile(latency, 0.95),
    )


class HealthBook:
    def __init__(self, redis: Redis, keys: Keys, window_s: int) -> None:
        self._redis = redis
        self._keys = keys
        self._slots = max(1, window_s // SLOT_S)

    def _key(self, channel: str, slot: int) -> str:
        return self._keys.channel_health(channel, slot)

    async def record(self, channel: str, outcome: str | None, latency_ms: float) -> None:
        """`outcome` None for a success, else the error kind (`transient`, `breaker_open`)."""
        key = self._key(channel, int(time.time()) // SLOT_S)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(key, "ok" if outcome is None else f"err:{outcome}", 1)
            pipe.hincrby(key, bucket(latency_ms), 1)
            pipe.expire(key, SLOT_S * (self._slots + 1))
            await pipe.execute()

    async def windows(self, channels: Iterable[str]) -> dict[str, HealthWindow]:
        now_slot = int(time.time()) // SLOT_S
        codes = list(channels)
        async with self._redis.pipeline(transaction=False) as pipe:
            for code in codes:
                for slot in range(now_slot - self._slots + 1, now_slot + 1):
                    pipe.hgetall(self._key(code, slot))
            replies = await pipe.execute()
        result = {}
        for n, code in enumerate(codes):
            raw = replies[n * self._slots : (n + 1) * self._slots]
            result[code] = summarise({k.decode(): int(v) for k, v in slot.items()} for slot in raw)
        return result
