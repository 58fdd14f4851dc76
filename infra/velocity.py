"""Velocity counters in Redis: exact sliding windows, every counter of a payment in one call.

Each (dimension, value) — an IP, an e-mail, a device, a card, a customer, a merchant — has one
sorted set of its events of the last 24 h, scored by time in ms. An event is
`payment id|usd minor|ip|email|device|card|customer|merchant`, the values as digests, so a
distinct count of one dimension within another's events needs no other key, and no customer's
e-mail or IP is written to Redis in clear. One Lua script adds the payment to every set it
belongs to (once: ZADD NX on its id, so a redelivered payment is not counted twice), prunes
what has left the longest window and computes each counter the rule set reads over
(now − window, now], this payment included. Scripts run one at a time, so concurrent payments
each see an exact, distinct count. A whole envelope of payments is one pipelined round trip.

Costs: a count is ZCOUNT (log n). A sum or distinct count is a running aggregate per key and
window, moved along by the events that entered or left it since the key's last payment, so a
busy key (a large merchant's 24 h) costs what changed, not what its window holds; a key idle
for longer than PRUNE_MARGIN_MS, or a counter a new rule set reads for the first time, is
rebuilt once from the set. The keys of one payment are in different slots: on Redis Cluster
this script would have to be split per slot.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from redis.asyncio import Redis

from domain.risk.anomaly import VOLUME_MAX_GAP, Alphas, Rate, Volume
from domain.risk.facts import Transaction, Usual
from domain.risk.velocity import DIMENSIONS, HORIZON_MS, Feature
from infra.anomaly import DECLINE, EWMA, NEW_COUNTRY, VOLUME, rate_of
from infra.keys import Keys

_METRIC = {"count": "c", "sum_usd": "s", "distinct": "d"}
# Events leave a key's set this long after its longest window, so a window whose start went
# back a little (another process's clock behind) finds them; an aggregate idle longer than
# this is rebuilt from the set.
PRUNE_MARGIN_MS = 60_000
USUAL_ALPHA = 0.02  # weight of each new payment in the merchant's usual amount (~50 payments)
_FIELD = {dim: n + 3 for n, dim in enumerate(DIMENSIONS)}  # 1: id, 2: usd, then dimensions

SCRIPT = (
    EWMA
    + """
local now = tonumber(ARGV[1])
local horizon = tonumber(ARGV[2])
local member = ARGV[3]
local ttl = tonumber(ARGV[4])
local tail = 6
local keep = ARGV[tail] == '1'
local dims = tonumber(ARGV[tail + 1])
-- Each key's sums and distinct counts are kept as running aggregates in a hash beside its set
-- (KEYS[dims + 5 + i]), so a payment costs the events that entered or left a window since
-- the last one, not the whole window. An aggregate holds the events after its cursor (the
-- start of the window it last answered); it is stamped with the key's event count `e` when
-- it was last brought up to date, and rebuilt from the set if it missed an event (a rule set
-- that did not read it) or if the set was pruned past its cursor (`p`: the key idle longer
-- than PRUNE_MARGIN_MS).
local cutoff = now - horizon - tonumber(ARGV[tail + 10])
local added, before, pruned = {}, {}, {}
for i = 1, dims do
  local agg = KEYS[dims + 5 + i]
  local st = redis.call('HMGET', agg, 'e', 'p')
  before[i], pruned[i] = tonumber(st[1]) or 0, tonumber(st[2]) or -math.huge
  if redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', cutoff) > 0 and cutoff > pruned[i] then
    pruned[i] = cutoff
    redis.call('HSET', agg, 'p', string.format('%.0f', cutoff))
  end
  added[i] = redis.call('ZADD', KEYS[i], 'NX', now, member)
  redis.call('EXPIRE', KEYS[i], ttl)
end
local function field(m, n)
  local start = 1
  for _ = 1, n - 1 do
    local bar = string.find(m, '|', start, true)
    if not bar then return '' end
    start = bar + 1
  end
  local stop = string.find(m, '|', start, true)
  return string.sub(m, start, (stop or 0) - 1)
end
local function aggregate(i, metric, width, which)
  local key, agg = KEYS[i], KEYS[dims + 5 + i]
  local id = metric .. width .. '.' .. which
  local low = now - width
  local st = redis.call('HMGET', agg, id .. 'c', id .. 'e', id .. 'v')
  local cursor, value = tonumber(st[1]), tonumber(st[3]) or 0
  local function held(v) return tonumber(redis.call('HGET', agg, id .. ':' .. v)) or 0 end
  local function apply(m, sign)
    if metric == 's' then value = value + sign * tonumber(field(m, 2)) return end
    local v = field(m, which)
    if v == '' then return end
    local n = redis.call('HINCRBY', agg, id .. ':' .. v, sign)
    if sign > 0 and n == 1 then value = value + 1
    elseif sign < 0 and n <= 0 then redis.call('HDEL', agg, id .. ':' .. v) value = value - 1 end
  end
  local new = added[i] == 1
  if cursor == nil or tonumber(st[2]) ~= before[i] or cursor < pruned[i] then
    if metric == 'd' then
      local prefix = id .. ':'
      for _, f in ipairs(redis.call('HKEYS', agg)) do
        if string.sub(f, 1, #prefix) == prefix then redis.call('HDEL', agg, f) end
      end
    end
    value = 0
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', key, '(' .. low, '+inf')) do
      if not (new and m == member) then apply(m, 1) end
    end
  elseif low > cursor then
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', key, '(' .. cursor, low)) do apply(m, -1) end
  elseif low < cursor then
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', key, '(' .. low, cursor)) do apply(m, 1) end
  end
  -- the aggregate is now every event after `low` but this payment's own
  local answer = value
  if new and keep then
    apply(member, 1)
    answer = value
  elseif new then  -- an evaluation: counted in the answer, never kept
    if metric == 's' then answer = value + tonumber(field(member, 2))
    else
      local v = field(member, which)
      if v ~= '' and held(v) == 0 then answer = value + 1 end
    end
  end
  -- events stamped after `now` (another process's clock a little ahead) are not in its window
  local later = redis.call('ZRANGEBYSCORE', key, '(' .. now, '+inf')
  if #later > 0 then
    local count = {}
    for _, m in ipairs(later) do
      if metric == 's' then answer = answer - tonumber(field(m, 2))
      else
        local v = field(m, which)
        if v ~= '' then count[v] = (count[v] or 0) + 1 end
      end
    end
    for v, k in pairs(count) do
      local n = held(v)
      if new and not keep and field(member, which) == v then n = n + 1 end
      if n <= k then answer = answer - 1 end
    end
  end
  redis.call('HSET', agg, id .. 'c', string.format('%.0f', low),
    id .. 'e', before[i] + ((new and keep) and 1 or 0), id .. 'v', string.format('%.0f', value))
  return answer
end
local out = {}
-- ARGV[5]: the counters asked for, `key index,metric,window ms,field;` each
for i, metric, width, which in string.gmatch(ARGV[5], '(%d+),(%a),(%d+),(%d+);') do
  i, width = tonumber(i), tonumber(width)
  if metric == 'c' then
    out[#out + 1] = redis.call('ZCOUNT', KEYS[i], '(' .. (now - width), now)
  else
    out[#out + 1] = aggregate(i, metric, width, tonumber(which))
  end
end
for i = 1, dims do
  local agg = KEYS[dims + 5 + i]
  if keep and added[i] == 1 and redis.call('EXISTS', agg) == 1 then
    redis.call('HINCRBY', agg, 'e', 1)
  end
  redis.call('EXPIRE', agg, ttl)
end
-- the merchant's usual amount: an exponentially weighted mean and variance of its payments'
-- USD amounts, read before this payment and updated once per new payment (not on a redelivery)
local usual = KEYS[dims + 1]
local state = redis.call('HMGET', usual, 'mean', 'var', 'n')
local mean, var, seen = tonumber(state[1]) or 0, tonumber(state[2]) or 0, tonumber(state[3]) or 0
local x = tonumber(ARGV[tail + 3])
if keep and x >= 0 and added[tonumber(ARGV[tail + 4])] == 1 then
  local alpha = tonumber(ARGV[tail + 2])
  local m, v = x, 0
  if seen > 0 then
    local diff = x - mean
    m = mean + alpha * diff
    v = (1 - alpha) * (var + alpha * diff * diff)
  end
  redis.call('HSET', usual, 'mean', tostring(m), 'var', tostring(v), 'n', seen + 1)
  redis.call('EXPIRE', usual, 30 * 86400)
end
-- the merchant's new-country share: this payment's country (if any) new to the merchant is 1,
-- else 0; learned once per new payment, an evaluation sees what it would be
local countries, model = KEYS[dims + 2], KEYS[dims + 3]
local country = ARGV[tail + 5]
local cf, cm, cv, cn = ewma_state(model)
if country ~= '' then
  local new = 1 - redis.call('SISMEMBER', countries, country)
  cf, cm, cv, cn = ewma(cf, cm, cv, cn, new, tonumber(ARGV[tail + 6]), tonumber(ARGV[tail + 7]))
  if keep and added[tonumber(ARGV[tail + 4])] == 1 then
    redis.call('SADD', countries, country)
    redis.call('EXPIRE', countries, 90 * 86400)
    ewma_save(model, cf, cm, cv, cn, 30 * 86400)
  end
end
-- the merchant's volume, payments per window (domain.risk.anomaly.volume_step): a new payment
-- counts once; an evaluation sees the count with it, and a redelivery the count as it is
local vkey = KEYS[dims + 5]
local vs = redis.call('HMGET', vkey, 'w', 'c', 'mean', 'var', 'n')
local vw, vc = tonumber(vs[1]) or -1, tonumber(vs[2]) or 0
local vm, vv, vn = tonumber(vs[3]) or 0, tonumber(vs[4]) or 0, tonumber(vs[5]) or 0
if added[tonumber(ARGV[tail + 4])] == 1 then
  local w = math.floor(now / tonumber(ARGV[tail + 8]))
  local va = tonumber(ARGV[tail + 7])
  local function learn(x)
    if vn == 0 then vm, vv = x, 0 else
      local a = math.max(va, 1 / (vn + 1))
      local diff = x - vm
      vm, vv = vm + a * diff, (1 - a) * (vv + a * diff * diff)
    end
    vn = vn + 1
  end
  if w <= vw then vc = vc + 1
  elseif vw < 0 then vw, vc = w, 1
  else
    learn(vc)
    for _ = 1, math.min(w - vw - 1, tonumber(ARGV[tail + 9])) do learn(0) end
    vw, vc = w, 1
  end
  if keep then
    redis.call('HSET', vkey, 'w', vw, 'c', vc, 'mean', tostring(vm), 'var', tostring(vv), 'n', vn)
    redis.call('EXPIRE', vkey, 30 * 86400)
  end
end
local df, dm, dv, dn = ewma_state(KEYS[dims + 4])
if not keep then
  for i = 1, dims do
    if added[i] == 1 then redis.call('ZREM', KEYS[i], member) end
  end
end
for _, v in ipairs({mean, var, seen, cf, cm, cv, cn, df, dm, dv, dn, vw, vc, vm, vv, vn}) do
  out[#out + 1] = tostring(v)
end
return out
"""
)


class Observed(NamedTuple):
    counters: dict[Feature, int]
    usual: Usual  # the merchant's usual amount, before this payment
    new_country: Rate  # the merchant's new-country share, with this payment
    decline: Rate  # the merchant's decline rate, as the ledger pool last learned it
    volume: Volume  # the merchant's payments per window, with this payment


def digest(value: str) -> str:
    return hashlib.blake2b(value.encode(), digest_size=10, person=b"juhe-velocity").hexdigest()


class Velocity:
    def __init__(
        self, redis: Redis, keys: Keys, alphas: Alphas | None = None, volume_window_s: int = 60
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.alphas = alphas or Alphas()
        self.volume_window_ms = volume_window_s * 1000
        self.script = redis.register_script(SCRIPT)
        self._specs: dict[tuple[tuple[str, ...], tuple[Feature, ...]], bytes] = {}

    def _spec(self, dims: tuple[str, ...], asked: tuple[Feature, ...]) -> bytes:
        """The counters asked for as the script reads them, one argument however many (each
        argument is encoded per payment); the same few shapes recur, so each is made once."""
        spec = self._specs.get((dims, asked))
        if spec is None:
            spec = "".join(
                f"{dims.index(f.key) + 1},{_METRIC[f.metric]},{f.window_ms},"
                f"{_FIELD.get(f.of or '', 0)};"
                for f in asked
            ).encode()
            if len(self._specs) < 1024:
                self._specs[(dims, asked)] = spec
        return spec

    def _call(
        self,
        tx: Transaction,
        amount_usd: int | None,
        features: Sequence[Feature],
        now_ms: int,
        keep: bool,
        country: str | None,
    ) -> tuple[list[str], list[str | int | float | bytes], list[Feature]]:
        values = {dim: digest(v) for dim, v in tx.keys().items()}
        dims = list(values)
        member = "|".join(
            [
                tx.id or uuid.uuid4().hex,
                str(max(amount_usd or 0, 0)),
                *(values.get(d, "") for d in DIMENSIONS),
            ]
        )
        asked = [f for f in features if f.key in values]
        args: list[str | int | float | bytes] = [
            now_ms,
            HORIZON_MS,
            member,
            HORIZON_MS // 1000 + 60,
            self._spec(tuple(dims), tuple(asked)),
        ]
        usd = -1 if amount_usd is None else amount_usd
        args += [1 if keep else 0, len(dims), USUAL_ALPHA, usd, dims.index("merchant") + 1]
        args += [country or "", self.alphas.fast, self.alphas.slow]
        args += [self.volume_window_ms, VOLUME_MAX_GAP, PRUNE_MARGIN_MS]
        m = tx.merchant_id
        keys = [self.keys.velocity(d, values[d]) for d in dims]
        keys += [
            self.keys.usual_amount(m),
            self.keys.countries_seen(m),
            self.keys.anomaly(NEW_COUNTRY, m),
            self.keys.anomaly(DECLINE, m),
            self.keys.anomaly(VOLUME, m),
        ]
        keys += [self.keys.velocity_aggregates(d, values[d]) for d in dims]
        return keys, args, asked

    async def observe_many(
        self,
        payments: Iterable[tuple[Transaction, int | None]],
        features: Iterable[Feature],
        now_ms: int,
        keep: bool = True,
        countries: Sequence[str | None] = (),
    ) -> list[Observed]:
        """Record each payment and read the counters asked for, in one round trip. Counters of
        a dimension the payment has no value for (no e-mail…) are 0. With `keep` false the
        counters are what they would be with the payment, and nothing stays recorded (an
        evaluation). `countries`, one per payment, feed the merchant's new-country model."""
        wanted = sorted(features)
        pairs = list(payments)
        where = list(countries) or [None] * len(pairs)
        calls = [
            self._call(tx, usd, wanted, now_ms, keep, country)
            for (tx, usd), country in zip(pairs, where, strict=True)
        ]
        async with self.redis.pipeline(transaction=False) as pipe:
            for keys, args, _ in calls:
                await self.script(keys=keys, args=args, client=pipe)
            answers = await pipe.execute()
        out = []
        for (_, _, asked), answer in zip(calls, answers, strict=True):
            counters = dict.fromkeys(wanted, 0)
            counters.update(zip(asked, (int(v) for v in answer[:-16]), strict=True))
            mean, var, seen = (float(v) for v in answer[-16:-13])
            vw, vc, vm, vv, vn = answer[-5:]
            out.append(
                Observed(
                    counters,
                    Usual(mean, var, int(seen)),
                    rate_of(answer[-13:-9]),
                    rate_of(answer[-9:-5]),
                    Volume(int(vw), int(vc), float(vm), float(vv), int(vn)),
                )
            )
        return out
