"""Daily volume caps: what each channel has been routed today (UTC), per currency, shared by
every process through Redis.

Volume is counted when a payment is routed to a channel (or fails over to it), before the
channel has seen it: a cap is never exceeded, at the price of counting payments that later
fail. The check and the count are one Lua call, so concurrent risk actors cannot overshoot.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from redis.asyncio import Redis

from domain.channels import ChannelSpec
from infra.keys import Keys

_DAY_S = 86_400
# KEYS[1] the day's hash; ARGV currency, amount, cap, ttl → 1 counted / 0 no room.
_TAKE = """
local now = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if now + tonumber(ARGV[2]) > tonumber(ARGV[3]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""


def utc_day(now: float) -> str:
    return time.strftime("%Y%m%d", time.gmtime(now))


class DailyVolume:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._take = redis.register_script(_TAKE)

    async def take(
        self,
        order: Sequence[str],
        specs: Mapping[str, ChannelSpec],
        currency: str,
        amount: int,
    ) -> list[str]:
        """`order` from the first channel with room for the payment, which is counted there;
        channels without a cap for the currency always have room (and cost no round trip)."""
        day = utc_day(time.time())
        for n, code in enumerate(order):
            spec = specs.get(code)
            cap = spec.daily_caps.get(currency) if spec else None
            if cap is None:
                return list(order[n:])
            key = self._keys.channel_volume(code, day)
            if await self._take(keys=[key], args=[currency, amount, cap, 2 * _DAY_S]):
                return list(order[n:])
        return []

    async def today(self, code: str) -> dict[str, int]:
        raw = await self._redis.hgetall(self._keys.channel_volume(code, utc_day(time.time())))
        return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
