"""Sliding-window limits in Redis: each attempt is logged in a sorted set for one window, so a
limit holds over any window-long span (a fixed window lets twice the limit through across its
boundary). Meant for low-rate actions such as sign-ins, not for the payment path."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from domain.ids import random_hex


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
