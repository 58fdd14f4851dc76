"""The streaming anomaly models' state in Redis (domain.risk.anomaly): one hash per model and
subject (`fast`, `mean`, `var`, `n`), updated by a script so concurrent processes never lose an
observation. Decline rates learn from the ledger pool, once per payment that ends succeeded or
failed at a channel, after its transaction commits; the new-country share learns in the risk
pool's velocity script (infra.velocity), in the round trip it already makes.

An alert for a model and subject is sent at most once per `anomaly_alert_window_s`."""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from config.settings import Risk
from domain.risk.anomaly import Alphas, Rate, score
from infra.keys import Keys

DECLINE = "decline"  # a merchant's
CHANNEL_DECLINE = "channel_decline"
NEW_COUNTRY = "new_country"
TTL_S = 30 * 86_400

# domain.risk.anomaly.update in Lua: the state as 4 numbers, x, fast and slow weights
EWMA = """
local function ewma(fast, mean, var, seen, x, fa, sa)
  if seen == 0 then return x, x, 0, 1 end
  fa, sa = math.max(fa, 1 / (seen + 1)), math.max(sa, 1 / (seen + 1))
  local diff = x - mean
  return fast + fa * (x - fast), mean + sa * diff, (1 - sa) * (var + sa * diff * diff), seen + 1
end
local function ewma_state(key)
  local s = redis.call('HMGET', key, 'fast', 'mean', 'var', 'n')
  return tonumber(s[1]) or 0, tonumber(s[2]) or 0, tonumber(s[3]) or 0, tonumber(s[4]) or 0
end
local function ewma_save(key, fast, mean, var, seen, ttl)
  redis.call('HSET', key, 'fast', tostring(fast), 'mean', tostring(mean), 'var', tostring(var),
    'n', seen)
  redis.call('EXPIRE', key, ttl)
end
"""

OBSERVE = (
    EWMA
    + """
local fast, mean, var, seen = ewma_state(KEYS[1])
fast, mean, var, seen = ewma(fast, mean, var, seen, tonumber(ARGV[1]), tonumber(ARGV[2]),
  tonumber(ARGV[3]))
ewma_save(KEYS[1], fast, mean, var, seen, tonumber(ARGV[4]))
return {tostring(fast), tostring(mean), tostring(var), seen}
"""
)


def alphas_of(risk: Risk) -> Alphas:
    return Alphas(risk.anomaly_fast_alpha, risk.anomaly_slow_alpha)


def rate_of(answer: Sequence[bytes | str | int]) -> Rate:
    fast, mean, var, seen = answer
    return Rate(float(fast), float(mean), float(var), int(seen))


class Anomalies:
    def __init__(self, redis: Redis, keys: Keys, alphas: Alphas) -> None:
        self.redis = redis
        self.keys = keys
        self.alphas = alphas
        self.script = redis.register_script(OBSERVE)

    async def observe(
        self, observations: Sequence[tuple[str, str, float]]
    ) -> list[tuple[str, str, float]]:
        """Each (model, subject, x) learned, in one round trip; the z-score after each."""
        if not observations:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for model, subject, x in observations:
                await self.script(
                    keys=[self.keys.anomaly(model, subject)],
                    args=[x, self.alphas.fast, self.alphas.slow, TTL_S],
                    client=pipe,
                )
            answers = await pipe.execute()
        return [
            (model, subject, score(rate_of(answer), self.alphas))
            for (model, subject, _), answer in zip(observations, answers, strict=True)
        ]

    async def first_in_window(self, kind: str, window_s: int) -> bool:
        """True once per window for this alert kind (and subject, named in `kind`)."""
        return bool(await self.redis.set(self.keys.alerted(kind), 1, nx=True, ex=window_s))
