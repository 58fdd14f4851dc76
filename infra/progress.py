"""How far each queue's consumers have got: what re-drive needs to tell lost work from work that
is only waiting in a backlog.

Every message carries its publish time. Each consumer (a pool process's mailbox) reports, about
once a second, the newest publish time it has been delivered and the oldest one it holds
unfinished. RabbitMQ delivers a queue in order, so a message published before every consumer's
oldest unfinished one, and before the newest delivered one while others still wait in the queue,
is no longer anywhere: if its work has not happened, it was lost (or dead-lettered).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from redis.asyncio import Redis

from infra.keys import Keys

# A consumer that has not reported for this long is gone; what it held went back to the queue.
STALE_S = 15.0


@dataclass(frozen=True, slots=True)
class Report:
    delivered: float  # the newest publish time this consumer has been delivered (0: none)
    oldest_open: float | None  # the oldest publish time it holds unfinished, if any
    at: float

    def encode(self) -> str:
        open_ = "" if self.oldest_open is None else repr(self.oldest_open)
        return f"{self.delivered!r},{open_},{self.at!r}"

    @classmethod
    def decode(cls, raw: bytes | str) -> Report:
        text = raw.decode() if isinstance(raw, bytes) else raw
        delivered, open_, at = text.split(",")
        return cls(float(delivered), float(open_) if open_ else None, float(at))


async def report(redis: Redis, keys: Keys, queue: str, consumer: str, report: Report) -> None:
    key = keys.progress(queue)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hset(key, consumer, report.encode())
        pipe.expire(key, int(STALE_S * 4))
        await pipe.execute()


def horizon(reports: Iterable[Report], waiting: int, now: float) -> float:
    """The publish time before which a message of this queue can no longer be waiting anywhere.

    `waiting` is how many messages the queue holds ready. With none and no consumer holding
    anything, nothing is waiting at all (the horizon is now)."""
    live = [r for r in reports if now - r.at <= STALE_S]
    bound = now
    for r in live:
        if r.oldest_open is not None:
            bound = min(bound, r.oldest_open)
    if waiting:
        # What still waits was published after the newest delivery; none delivered yet means
        # everything may still be waiting.
        bound = min(bound, max((r.delivered for r in live), default=0.0))
    return bound


async def horizons(
    redis: Redis, keys: Keys, depths: dict[str, int], now: float | None = None
) -> dict[str, float]:
    """Each queue's horizon (see `horizon`), from its consumers' reports and its ready count."""
    now = time.time() if now is None else now
    async with redis.pipeline(transaction=False) as pipe:
        for queue in depths:
            pipe.hvals(keys.progress(queue))
        replies = await pipe.execute()
    return {
        queue: horizon([Report.decode(v) for v in values], depths[queue], now)
        for queue, values in zip(depths, replies, strict=True)
    }
