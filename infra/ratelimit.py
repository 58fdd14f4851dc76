"""Sliding-window limits in Redis: each attempt is logged in a sorted set for one window, so a
limit holds over any window-long span (a fixed window lets twice the limit through across its
boundary). Meant for low-rate actions such as sign-ins, not for the payment path."""

from __future__ import annotations

import time
from collections.abc import Sequence

from redis.asyncio import Redis

from domain.ids import random_hex
from domain.signin import Failures


class RateLimiter:
    def __init__(self, redis: Redis, prefix: str, window_s: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self._window = window_s

    async def hit(self, scope: str, key: str, limit: int) -> bool:
        """Count one attempt; False once `limit` attempts were made within the window."""
        now = time.time()
        name = f"{self._prefix}:rl:{scope}:{key}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(name, 0, now - self._window)
            pipe.zadd(name, {f"{now:.6f}:{random_hex(4)}": now})
            pipe.zcard(name)
            pipe.expire(name, self._window + 1)
            _, _, count, _ = await pipe.execute()
        return int(count) <= limit

    async def attempt(self, names: Sequence[str], window_s: int) -> tuple[str, list[Failures]]:
        """Log one attempt under each name, kept for `window_s`, and return the attempt's id
        and what each name held before it. One MULTI/EXEC, so of two concurrent attempts the
        later sees the earlier: a burst cannot slip through between check and count. A failed
        attempt stays logged as the failure; `withdraw` takes back one that did not fail."""
        now = time.time()
        member = f"{now:.6f}:{random_hex(4)}"
        async with self._redis.pipeline(transaction=True) as pipe:
            for name in names:
                key = f"{self._prefix}:rl:{name}"
                pipe.zremrangebyscore(key, 0, now - window_s)
                pipe.zcard(key)
                pipe.zrevrange(key, 0, 0, withscores=True)
                pipe.zadd(key, {member: now})
                pipe.expire(key, window_s + 1)
            replies = await pipe.execute()
        before = []
        for n in range(len(names)):
            count, latest = replies[5 * n + 1], replies[5 * n + 2]
            before.append(Failures(int(count), float(latest[0][1]) if latest else 0.0))
        return member, before

    async def withdraw(self, names: Sequence[str], member: str) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.zrem(f"{self._prefix}:rl:{name}", member)
            await pipe.execute()

    async def forget(self, name: str) -> None:
        await self._redis.delete(f"{self._prefix}:rl:{name}")
