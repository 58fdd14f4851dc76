"""Streaming anomaly models: a merchant's and a channel's decline rate, a merchant's share of
payments from a country it had not seen, a merchant's volume (payments per window), and how
often each rule fires.

Each is an EWMA with a z-score, chosen over a learned streaming model (river's HalfSpaceTrees)
because it needs no new dependency, its whole state is four numbers in one Redis hash that
every process updates atomically (so all risk, ledger and gateway processes share one model),
and its score is one number an operator can explain: "the last ~10 outcomes declined at 40 %
where this merchant's usual is 5 %, 4 standard deviations".

A model is a fast EWMA (the recent rate) beside a slow EWMA mean and variance (the usual).
The z-score compares them: an EWMA of weight a over independent observations of variance v has
variance v·a/(2−a), so z = (fast − usual) / sqrt(var · a/(2−a)). The Lua in infra.anomaly
computes the same `update`; tests hold the two equal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

MIN_SEEN = 30  # observations before a model scores anything but 0.0
RULE_MIN_FIRES = 5  # a rule firing fewer times in a window is never a surge
RULE_SD_FLOOR = 0.01  # a rule's usual fire share is never taken as steadier than ±1 point


@dataclass(frozen=True, slots=True)
class Rate:
    fast: float = 0.0  # the recent rate
    mean: float = 0.0  # the usual rate
    var: float = 0.0  # the usual variance of one observation
    seen: int = 0


@dataclass(frozen=True, slots=True)
class Alphas:
    fast: float = 0.1  # ~10 observations
    slow: float = 0.01  # ~100 observations


def update(state: Rate, x: float, alphas: Alphas) -> Rate:
    """The model after observing `x` (1.0 a decline or a new country, 0.0 not). While young
    each weight is at least 1/n (a plain running mean), so the first observations (a new
    merchant's every country is new) do not linger in the usual."""
    if state.seen == 0:
        return Rate(x, x, 0.0, 1)
    fast = max(alphas.fast, 1 / (state.seen + 1))
    slow = max(alphas.slow, 1 / (state.seen + 1))
    diff = x - state.mean
    return Rate(
        state.fast + fast * (x - state.fast),
        state.mean + slow * diff,
        (1 - slow) * (state.var + slow * diff * diff),
        state.seen + 1,
    )


def score(state: Rate, alphas: Alphas) -> float:
    """The recent rate against the usual, in standard deviations of the fast EWMA; 0.0 until
    MIN_SEEN observations or while the usual has never varied."""
    if state.seen < MIN_SEEN or state.var <= 0:
        return 0.0
    return (state.fast - state.mean) / math.sqrt(state.var * alphas.fast / (2 - alphas.fast))


@dataclass(frozen=True, slots=True)
class RuleWindow:
    """A rule's usual share of judged payments it fires on, one observation per window."""

    mean: float = 0.0
    var: float = 0.0
    seen: int = 0


def rule_surges(
    usual: Mapping[str, RuleWindow],
    fires: Mapping[str, int],
    judged: int,
    rules: frozenset[str],
    alpha: float,
    z_limit: float,
) -> tuple[dict[str, RuleWindow], dict[str, float]]:
    """Close one window of `judged` payments: each rule's usual updated with this window's
    fire share, and the rules whose share is `z_limit` standard deviations or more above their
    usual (with MIN_SEEN windows of history and RULE_MIN_FIRES fires), with their z. Rules no
    longer in the set are forgotten; a window with nothing judged changes nothing."""
    if judged == 0:
        return {r: u for r, u in usual.items() if r in rules}, {}
    after: dict[str, RuleWindow] = {}
    surging: dict[str, float] = {}
    for rule in rules:
        before = usual.get(rule, RuleWindow())
        fired = fires.get(rule, 0)
        x = fired / judged
        if before.seen >= MIN_SEEN and fired >= RULE_MIN_FIRES:
            z = (x - before.mean) / max(math.sqrt(before.var), RULE_SD_FLOOR)
            if z >= z_limit:
                surging[rule] = z
        if before.seen == 0:
            after[rule] = RuleWindow(x, 0.0, 1)
        else:
            diff = x - before.mean
            after[rule] = RuleWindow(
                before.mean + alpha * diff,
                (1 - alpha) * (before.var + alpha * diff * diff),
                before.seen + 1,
            )
    return after, surging


VOLUME_MAX_GAP = 1_440  # empty windows learned after a quiet spell, at most (a day of minutes)


@dataclass(frozen=True, slots=True)
class Volume:
    """A merchant's payments per window: the current window's count so far, and the usual
    count per window (an EWMA mean and variance over the windows that closed, the empty ones
    between payments included)."""

    window: int = -1  # the current window's number (unix seconds // window length)
    count: int = 0
    mean: float = 0.0
    var: float = 0.0
    seen: int = 0  # closed windows learned


def _learn(mean: float, var: float, seen: int, x: float, alpha: float) -> tuple[float, float]:
    if seen == 0:
        return x, 0.0
    a = max(alpha, 1 / (seen + 1))
    diff = x - mean
    return mean + a * diff, (1 - a) * (var + a * diff * diff)


def volume_step(state: Volume, window: int, alpha: float) -> Volume:
    """The model after one more payment in `window`. A later window closes the current one:
    its count is learned, then a zero for each empty window between (at most
    VOLUME_MAX_GAP), so a merchant's quiet hours are part of its usual. A payment dated in an
    earlier window than the current one counts in the current one."""
    if window <= state.window:
        return Volume(state.window, state.count + 1, state.mean, state.var, state.seen)
    if state.window < 0:
        return Volume(window, 1, state.mean, state.var, state.seen)
    mean, var = _learn(state.mean, state.var, state.seen, state.count, alpha)
    seen = state.seen + 1
    for _ in range(min(window - state.window - 1, VOLUME_MAX_GAP)):
        mean, var = _learn(mean, var, seen, 0.0, alpha)
        seen += 1
    return Volume(window, 1, mean, var, seen)


def volume_score(state: Volume) -> float:
    """This window's payments so far against the usual per window, in standard deviations,
    never taken as steadier than counting noise (a Poisson count's sqrt(mean), and at least
    one payment); 0.0 until MIN_SEEN windows. A window that has only begun scores low: the
    score finds a burst, not a lull."""
    if state.seen < MIN_SEEN:
        return 0.0
    spread = max(math.sqrt(state.var), math.sqrt(state.mean), 1.0)
    return (state.count - state.mean) / spread
