"""The streaming anomaly models' state in Redis (domain.risk.anomaly): one hash per model and
subject (`fast`, `mean`, `var`, `n`), updated by a script so concurrent processes never lose an
observation. Decline rates learn from the ledger pool, once per payment that ends succeeded or
failed at a channel, after its transaction commits; the new-country share learns in the risk
pool's velocity script (infra.velocity), in the round trip it already makes.

An alert for a model and subject is sent at most once per `anomaly_alert_window_s`.

Rule fire shares are counted per wall-clock window in Redis by every risk process
(`RuleWindows`), so the usual share of a rule is learned from all the traffic, survives a
restart and is the same in every process. A window is closed once, two windows later (when
every envelope judged in it has been counted), by whichever process first asks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from redis.asyncio import Redis

from config.settings import Risk
from domain.risk.anomaly import Alphas, Rate, RuleWindow, rule_surges, score
from infra.keys import Keys

DECLINE = "decline"  # a merchant's
CHANNEL_DECLINE = "channel_decline"
NEW_COUNTRY = "new_country"
VOLUME = "volume"  # a merchant's payments per window (infra.velocity keeps it)
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


JUDGED = "_judged"  # the field counting the payments judged in a window (never a rule id)


class RuleWindows:
    def __init__(self, redis: Redis, keys: Keys, window_s: int) -> None:
        self.redis = redis
        self.keys = keys
        self.window_s = window_s

    async def count(self, fires: Mapping[str, int], judged: int, now: float) -> int | None:
        """Add an envelope's fires to its window, in one round trip; the number of the window
        this process is now to close (two before this one), if no other process took it."""
        window = int(now // self.window_s)
        key, ttl = self.keys.rule_fires(window), self.window_s * 4
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(key, JUDGED, judged)
            for rule, fired in fires.items():
                pipe.hincrby(key, rule, fired)
            pipe.expire(key, ttl)
            pipe.set(self.keys.rule_window_closed(window - 2), 1, nx=True, ex=ttl)
            answers = await pipe.execute()
        return window - 2 if answers[-1] else None

    async def close(
        self, window: int, rules: frozenset[str], alpha: float, z_limit: float
    ) -> dict[str, float]:
        """Each live rule's usual share learns the window's; the rules surging in it, with z."""
        counted = await self.redis.hgetall(self.keys.rule_fires(window))
        fires = {k.decode(): int(v) for k, v in counted.items()}
        judged = fires.pop(JUDGED, 0)
        stored = await self.redis.hgetall(self.keys.rule_usual())
        usual = {}
        for rule, text in stored.items():
            mean, var, seen = text.decode().split(",")
            usual[rule.decode()] = RuleWindow(float(mean), float(var), int(seen))
        after, surging = rule_surges(usual, fires, judged, rules, alpha, z_limit)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.rule_usual())
            if after:
                pipe.hset(
                    self.keys.rule_usual(),
                    mapping={r: f"{u.mean!r},{u.var!r},{u.seen}" for r, u in after.items()},
                )
                pipe.expire(self.keys.rule_usual(), TTL_S)
            await pipe.execute()
        return surging
