"""Withdrawals' functional core: the state machine, the rules a request must meet, the
maker–checker decision, and the journal entries that move the money, over plain data.

The money moves by four entries, each unique per (kind, withdrawal id), so a redelivery or a
re-run posts nothing twice:

- `withdrawal_hold` at request: amount + fee from the entity's available to its reserve, so
  a second request sees the first one's funds gone (the caller locks the available row).
- `withdrawal_paid` when the channel pays: the amount from reserve to `paid_out`, the fee to
  the platform's `platform:withdrawal_fees`.
- `withdrawal_release` when it is rejected or fails before paying: all of it back to available.
- `withdrawal_return` when a paid payout comes back: the amount back to available; the fee
  stays with the platform, which did the payout.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from domain.fees import BPS, scale_half_up
from domain.ledger import Posting, ensure_balanced
from domain.settlement import W_HOLD, W_PAID, W_RELEASE, W_RETURN, Entity

PLATFORM_WITHDRAWAL_FEES = "platform:withdrawal_fees"
HOLD, PAID, RELEASE, RETURN = W_HOLD, W_PAID, W_RELEASE, W_RETURN


class WithdrawalStatus(enum.StrEnum):
    """`pending_approval` waits for a checker; `requested` for the payout pool; `sending` is
    claimed, the payout may be at the channel (asked before any resend); `sent` the channel
    took it; `succeeded` paid (and `returned` if it came back); `failed` and `rejected` gave
    the funds back."""

    PENDING_APPROVAL = "pending_approval"
    REQUESTED = "requested"
    SENDING = "sending"
    SENT = "sent"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    RETURNED = "returned"


S = WithdrawalStatus
TRANSITIONS: dict[WithdrawalStatus, frozenset[WithdrawalStatus]] = {
    S.PENDING_APPROVAL: frozenset({S.REQUESTED, S.REJECTED}),
    S.REQUESTED: frozenset({S.SENDING}),
    S.SENDING: frozenset({S.SENT, S.SUCCEEDED, S.FAILED}),
    S.SENT: frozenset({S.SUCCEEDED, S.FAILED}),
    S.SUCCEEDED: frozenset({S.RETURNED}),
    S.FAILED: frozenset(),
    S.REJECTED: frozenset(),
    S.RETURNED: frozenset(),
}
# Where the payout pool still has something to do (a paid one only to notice a return).
OPEN = (S.REQUESTED, S.SENDING, S.SENT, S.SUCCEEDED)


def sources(target: WithdrawalStatus) -> list[str]:
    """The statuses a withdrawal may move to `target` from: the guard of its UPDATE."""
    return sorted(s.value for s, targets in TRANSITIONS.items() if target in targets)


# --- rules ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rules:
    """One entity's rules in one currency, in minor units. `daily_limit` counts what was
    requested since midnight UTC and not given back; None: no limit. Above `approval_above` a
    withdrawal waits for a checker; None: never."""

    min_amount: int = 1
    fee_fixed: int = 0
    fee_bps: int = 0
    daily_limit: int | None = None
    approval_above: int | None = None

    def __post_init__(self) -> None:
        if self.min_amount < 1 or self.fee_fixed < 0 or not 0 <= self.fee_bps <= BPS:
            raise ValueError("a minimum of at least 1, a fee of 0 or more, 0–10000 bps")
        if (self.daily_limit is not None and self.daily_limit < 0) or (
            self.approval_above is not None and self.approval_above < 0
        ):
            raise ValueError("limits are not negative")


class Refused(ValueError):
    """A request the rules refuse: `code` and `param` for the API's 4xx."""

    def __init__(self, code: str, message: str, param: str = "amount") -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


def fee(rules: Rules, amount: int) -> int:
    return rules.fee_fixed + scale_half_up(amount, rules.fee_bps, BPS)


@dataclass(frozen=True, slots=True)
class Decision:
    fee: int
    needs_approval: bool


def check(rules: Rules, amount: int, available: int, today: int) -> Decision:
    """Whether `amount` may be withdrawn now, from `available` (owed, minor units), with
    `today` already requested today; the fee is paid on top, from available too."""
    if amount < rules.min_amount:
        raise Refused(
            "amount_too_small", f"the minimum withdrawal is {rules.min_amount} minor units"
        )
    charged = fee(rules, amount)
    if amount + charged > available:
        raise Refused("insufficient_funds", "the amount and its fee exceed the available balance")
    if rules.daily_limit is not None and today + amount > rules.daily_limit:
        raise Refused("daily_limit_exceeded", "the amount exceeds what is left of the daily limit")
    needs = rules.approval_above is not None and amount > rules.approval_above
    return Decision(charged, needs)


def check_statement(status: str, currency: str, net: int, amount: int, wanted: str) -> None:
    """A withdrawal paying a statement pays exactly its net, in its currency, once it is
    closed (not carried, not paid)."""
    if status != "closed":
        raise Refused("settlement_not_payable", f"the statement is {status}", "settlement_id")
    if (amount, wanted) != (net, currency):
        raise Refused("amount_mismatch", "a statement is paid its net, in its currency")


class DecisionRefused(ValueError):
    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def decide(status: str, requested_by: str, checker: str, reason: str) -> None:
    """Maker–checker: only a withdrawal waiting for approval, only by someone other than who
    requested it, and only with a reason."""
    if checker == requested_by:
        raise DecisionRefused(
            "self_approval", "a withdrawal is approved or rejected by someone else", 403
        )
    if status != S.PENDING_APPROVAL:
        raise DecisionRefused("not_pending_approval", f"the withdrawal is {status}", 409)
    if not reason.strip():
        raise DecisionRefused("reason_required", "a decision needs a reason", 400)


# --- entries ----------------------------------------------------------------------------------


def _entry(*postings: Posting) -> tuple[Posting, ...]:
    lines = tuple(p for p in postings if p.amount)
    ensure_balanced(lines)
    return lines


def hold(who: Entity, currency: str, amount: int, charged: int) -> tuple[Posting, ...]:
    """Available (a credit account: debited) → reserve."""
    total = amount + charged
    return _entry(
        Posting(who.account("available"), currency, total),
        Posting(who.account("reserve"), currency, -total),
    )


def paid(who: Entity, currency: str, amount: int, charged: int) -> tuple[Posting, ...]:
    return _entry(
        Posting(who.account("paid_out"), currency, -amount),
        Posting(who.account("reserve"), currency, amount + charged),
        Posting(PLATFORM_WITHDRAWAL_FEES, currency, -charged),
    )


def release(who: Entity, currency: str, amount: int, charged: int) -> tuple[Posting, ...]:
    total = amount + charged
    return _entry(
        Posting(who.account("available"), currency, -total),
        Posting(who.account("reserve"), currency, total),
    )


def returned(who: Entity, currency: str, amount: int) -> tuple[Posting, ...]:
    return _entry(
        Posting(who.account("available"), currency, -amount),
        Posting(who.account("paid_out"), currency, amount),
    )


# --- the channel's word -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """What the channel's payout state does to a withdrawal: its next status, the entry to post
    (kind; None: none) and the webhook (None: none)."""

    target: WithdrawalStatus
    entry: str | None
    event: str | None


def step(status: WithdrawalStatus, channel_status: str) -> Step | None:
    """The move the channel's state (`processing`, `paid`, `failed`, `returned`) calls for from
    `status`; None when there is none (already there, or a stale word)."""
    if channel_status == "processing":
        target = Step(S.SENT, None, None)
    elif channel_status == "paid":
        target = Step(S.SUCCEEDED, PAID, "withdrawal.succeeded")
    elif channel_status == "failed":
        target = Step(S.FAILED, RELEASE, "withdrawal.failed")
    elif channel_status == "returned":
        # Paid, then back: a return of one we never saw paid posts the payment first.
        if status != S.SUCCEEDED:
            return step(status, "paid")
        target = Step(S.RETURNED, RETURN, "withdrawal.failed")
    else:
        return None
    return target if target.target in TRANSITIONS[status] else None


def postings(
    kind: str, who: Entity, currency: str, amount: int, charged: int
) -> tuple[Posting, ...]:
    if kind == PAID:
        return paid(who, currency, amount, charged)
    if kind == RELEASE:
        return release(who, currency, amount, charged)
    if kind == RETURN:
        return returned(who, currency, amount)
    return hold(who, currency, amount, charged)
