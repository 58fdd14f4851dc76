"""Per-channel circuit breakers whose state every process shares through Redis.

closed → open after `failure_threshold` failures within `window_s`; open → half-open once
`open_s` has passed, letting one probe through; the probe's success closes the breaker, its
failure opens it again. Each step is one Lua call, so processes never see a torn state.

A process remembers for `LOCAL_TTL_S` that a breaker was closed and then asks Redis nothing on
the happy path: another process's opening is seen here within that time, and the calls made
meanwhile are exactly what a breaker tolerates anyway (failures are always reported at once).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from enum import IntEnum

from redis.asyncio import Redis

from config.settings import Breaker as BreakerSettings
from infra import metrics
from infra.keys import Keys


class State(IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


# KEYS[1] breaker hash; ARGV now, open_s → 1 allowed / 0 refused, and the state after.
_ALLOW = """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local now = tonumber(ARGV[1])
if state == 'closed' then return {1, 0} end
local since = tonumber(redis.call('HGET', KEYS[1], 'since') or '0')
if now - since < tonumber(ARGV[2]) then return {0, state == 'open' and 2 or 1} end
redis.call('HSET', KEYS[1], 'state', 'half_open', 'since', ARGV[1])
return {1, 1}
"""

# KEYS[1]; ARGV ok(1/0), now, threshold, window_s → {state after, 1 if this call changed it}.
_RECORD = """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local now = tonumber(ARGV[2])
if ARGV[1] == '1' then
  if state ~= 'closed' then
    redis.call('DEL', KEYS[1])
    return {0, 1}
  end
  return {0, 0}
end
if state == 'half_open' then
  redis.call('HSET', KEYS[1], 'state', 'open', 'since', ARGV[2])
  return {2, 1}
end
if state == 'open' then return {2, 0} end
local start = tonumber(redis.call('HGET', KEYS[1], 'window') or '0')
local failures = 0
if now - start <= tonumber(ARGV[4]) then
  failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')
else
  redis.call('HSET', KEYS[1], 'window', ARGV[2])
end
failures = failures + 1
redis.call('HSET', KEYS[1], 'failures', failures)
if failures >= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'since', ARGV[2], 'failures', 0)
  return {2, 1}
end
return {0, 0}
"""


LOCAL_TTL_S = 1.0
log = logging.getLogger("juhe.breaker")


class CircuitBreakers:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        settings: BreakerSettings,
        on_change: Callable[[str, State], Awaitable[None]] | None = None,
    ) -> None:
        """`on_change` hears every state change this process caused (exactly one process
        causes each change)."""
        self._keys = keys
        self._redis = redis
        self._on_change = on_change
        self._settings = settings
        self._allow = redis.register_script(_ALLOW)
        self._record = redis.register_script(_RECORD)
        self._closed_until: dict[str, float] = {}

    def _known_closed(self, channel: str) -> bool:
        return self._closed_until.get(channel, 0.0) > time.monotonic()

    def _remember(self, channel: str, state: State) -> None:
        if state is State.CLOSED:
            self._closed_until[channel] = time.monotonic() + LOCAL_TTL_S
        else:
            self._closed_until.pop(channel, None)
        metrics.breaker_state.labels(channel).set(state)

    async def allow(self, channel: str) -> bool:
        if self._known_closed(channel):
            return True
        allowed, state = await self._allow(
            keys=[self._keys.breaker(channel)], args=[time.time(), self._settings.open_s]
        )
        self._remember(channel, State(state))
        return bool(allowed)

    async def routable(self, channel: str) -> bool:
        """Whether routing may send payments to the channel: not while its breaker is open and
        cooling down. Read only: the probe of a half-open breaker is the channel pool's to take
        (through `allow`), not routing's."""
        if self._known_closed(channel):
            return True
        state, since = await self._redis.hmget(self._keys.breaker(channel), "state", "since")
        if state is None or state == b"closed":
            self._remember(channel, State.CLOSED)
            return True
        return state != b"open" or time.time() - float(since or 0) >= self._settings.open_s

    async def record(self, channel: str, ok: bool) -> State:
        if ok and self._known_closed(channel):
            return State.CLOSED  # a success changes nothing on a closed breaker
        after, changed = await self._record(
            keys=[self._keys.breaker(channel)],
            args=[
                "1" if ok else "0",
                time.time(),
                self._settings.failure_threshold,
                self._settings.window_s,
            ],
        )
        state = State(after)
        self._remember(channel, state)
        if changed:
            log.warning("circuit breaker changed", extra={"channel": channel, "state": state.name})
            if self._on_change is not None:
                await self._on_change(channel, state)
        return state
