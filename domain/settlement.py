"""Settlement's functional core: balances, availability, reserves and statements over plain data.

Every merchant and agent holds, per currency, four accounts: `pending` (captured, not yet
available; for an agent, its `commission` account), `available`, `reserve` (held) and
`paid_out`. Funds move between them only by balanced journal entries built here:

- `release` moves one source entry's share (a payment, or a refund that reversed from pending)
  from pending to available on the entity's cycle, less the rolling reserve it holds back;
  its ref is `<entity>:<source entry id>`, so no source is released twice.
- `reserve_release` moves that hold back to available once its days have passed; its ref is
  `<entity>:<release entry id>`.
- A refund after its payment was released reverses from available (`redirect_released`), which
  may go negative: a statement with a negative net is `carried` into the next one.

A statement closes a period of the entity's cycle and takes every entry that moved its available
or reserve and is in no earlier statement (a line belongs to the first statement closed after
it was posted), so lines are fixed by the ledger and a closed statement never changes.
Business days are Monday to Friday, in UTC, with no holiday calendar.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from domain.fees import BPS, scale_half_up
from domain.ledger import Posting, agent_commission, ensure_balanced, merchant_pending, net

MANUAL = "manual"  # released and closed only when an operator's run names the entity
CYCLES = (*(f"T+{n}" for n in range(8)), "daily", "weekly", "monthly", MANUAL)
EntityKind = Literal["merchant", "agent"]
Bucket = Literal["pending", "available", "reserve", "paid_out"]
RELEASE, RESERVE_RELEASE = "release", "reserve_release"
# Entries of settlement's own, which move funds inside an entity and are never released.
INTERNAL = (RELEASE, RESERVE_RELEASE)


class CycleError(ValueError):
    pass


def check_cycle(cycle: str) -> str:
    if cycle not in CYCLES:
        raise CycleError(f"cycle must be one of {', '.join(CYCLES)}")
    return cycle


# --- accounts ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Entity:
    kind: EntityKind
    id: str

    def account(self, bucket: Bucket) -> str:
        if bucket == "pending":
            pending = merchant_pending if self.kind == "merchant" else agent_commission
            return pending(self.id)
        return f"{self.kind}:{self.id}:{bucket}"


_BUCKETS: dict[str, Bucket] = {
    "pending": "pending",
    "commission": "pending",  # an agent's pending
    "available": "available",
    "reserve": "reserve",
    "paid_out": "paid_out",
}


def account_of(name: str) -> tuple[Entity, Bucket] | None:
    """The entity and bucket an account name belongs to; None for anyone else's account."""
    kind, _, rest = name.partition(":")
    entity_id, _, suffix = rest.rpartition(":")
    bucket = _BUCKETS.get(suffix)
    if kind not in ("merchant", "agent") or not entity_id or bucket is None:
        return None
    if (kind, suffix) in (("merchant", "commission"), ("agent", "pending")):
        return None
    return Entity(kind, entity_id), bucket  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Balance:
    """What the entity is owed, per bucket (the accounts are credits, so their sign flipped)."""

    pending: int = 0
    available: int = 0
    reserved: int = 0
    paid_out: int = 0

    @property
    def total(self) -> int:
        return self.pending + self.available + self.reserved + self.paid_out


def balances(entity: Entity, rows: Iterable[tuple[str, str, int]]) -> dict[str, Balance]:
    """Per currency, from (account, currency, ledger balance) rows; others' accounts ignored."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    field_of = {"pending": "pending", "available": "available", "reserve": "reserved"}
    for name, currency, amount in rows:
        owner = account_of(name)
        if owner is None or owner[0] != entity:
            continue
        key = field_of.get(owner[1], owner[1])
        out[currency][key] = out[currency].get(key, 0) - amount
    return {c: Balance(**v) for c, v in sorted(out.items())}


# --- availability -----------------------------------------------------------------------------


def _midnight(t: datetime) -> datetime:
    return datetime(t.year, t.month, t.day, tzinfo=UTC)


def _next_business_day(day: datetime) -> datetime:
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def available_on(cycle: str, anchor: datetime) -> datetime | None:
    """When funds captured at `anchor` become available; None for `manual` (an operator
    releases them). T+N: the Nth business day after the capture's (T+0: the capture's own
    business day, so at once on a weekday), from midnight UTC; daily, weekly, monthly: the
    start of the next day, Monday, or month."""
    check_cycle(cycle)
    anchor = anchor.astimezone(UTC)
    if cycle.startswith("T+"):
        day = _next_business_day(_midnight(anchor))
        for _ in range(int(cycle[2:])):
            day = _next_business_day(day + timedelta(days=1))
        return max(day, anchor)
    if cycle == MANUAL:
        return None
    return period(cycle, anchor)[1]


def period(cycle: str, t: datetime) -> tuple[datetime, datetime]:
    """The statement period holding `t`: a day for T+N and daily, a week (from Monday) for
    weekly, a calendar month for monthly and manual."""
    day = _midnight(t.astimezone(UTC))
    if cycle == "weekly":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    if cycle in ("monthly", "manual"):
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
        return start, end
    return day, day + timedelta(days=1)


# --- releases ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Terms:
    cycle: str
    reserve_bps: int = 0
    reserve_days: int = 0

    def __post_init__(self) -> None:
        check_cycle(self.cycle)
        if not 0 <= self.reserve_bps <= BPS or self.reserve_days < 0:
            raise ValueError("a reserve is 0–10000 bps held for a non-negative number of days")


@dataclass(frozen=True, slots=True)
class Source:
    """One entry's posting to an entity's pending account, not yet released. `anchor` is when
    the payment it belongs to was captured (a refund is released with its payment)."""

    entry_id: int
    entity: Entity
    currency: str
    amount: int  # the posting, credit negative
    anchor: datetime


@dataclass(frozen=True, slots=True)
class Release:
    """An entry to post (kind `release` or `reserve_release`), with what it holds back."""

    kind: str
    ref: str
    entity: Entity
    currency: str
    source_entry_id: int  # the entry released: a payment or refund, or the release it held
    postings: tuple[Posting, ...]
    held: int = 0
    hold_until: datetime | None = None


def due(
    sources: Iterable[Source],
    terms: dict[Entity, Terms],
    now: datetime,
    settling: str | None = None,
) -> list[Source]:
    """The sources to release at `now`. A `manual` entity's are due only in an operator's run
    that names it (`settling`, its id), and then all of them captured by `now`."""
    out = []
    for s in sources:
        cycle = terms[s.entity].cycle
        if cycle == MANUAL:
            on = s.anchor if s.entity.id == settling else None
        else:
            on = available_on(cycle, s.anchor)
        if on is not None and on <= now:
            out.append(s)
    return out


def release(source: Source, terms: Terms, now: datetime) -> Release:
    """Pending → available for one source, with the rolling reserve held back from what it
    credits (never from a refund's debit)."""
    e, owed = source.entity, -source.amount
    held = scale_half_up(owed, terms.reserve_bps, BPS) if owed > 0 and terms.reserve_days > 0 else 0
    postings = net(
        [
            Posting(e.account("pending"), source.currency, owed),
            Posting(e.account("available"), source.currency, -(owed - held)),
            Posting(e.account("reserve"), source.currency, -held),
        ]
    )
    ensure_balanced(postings)
    until = now + timedelta(days=terms.reserve_days) if held else None
    ref = f"{e.id}:{source.entry_id}"
    return Release(RELEASE, ref, e, source.currency, source.entry_id, tuple(postings), held, until)


def reserve_release(entity: Entity, currency: str, release_entry_id: int, held: int) -> Release:
    """The reserve a release held, back to available once its days have passed."""
    postings = (
        Posting(entity.account("available"), currency, -held),
        Posting(entity.account("reserve"), currency, held),
    )
    ensure_balanced(postings)
    ref = f"{entity.id}:{release_entry_id}"
    return Release(RESERVE_RELEASE, ref, entity, currency, release_entry_id, postings)


def redirect_released(postings: Sequence[Posting], released: Iterable[Entity]) -> list[Posting]:
    """A refund's reversal for entities whose share of the payment was already released: their
    lines move from pending to available (which may go negative), since pending no longer
    holds that money."""
    moved = {e.account("pending"): e.account("available") for e in released}
    return net(Posting(moved.get(p.account, p.account), p.currency, p.amount) for p in postings)


# --- statements -------------------------------------------------------------------------------


class StatementStatus(enum.StrEnum):
    """`open` is the current period (computed, never stored); closing it makes a row `closed`
    (net ≥ 0, to be paid by the payout work: `paid`) or `carried` (net < 0, taken into the
    entity's next statement as a line)."""

    OPEN = "open"
    CLOSED = "closed"
    CARRIED = "carried"
    PAID = "paid"


TRANSITIONS: dict[StatementStatus, frozenset[StatementStatus]] = {
    StatementStatus.OPEN: frozenset({StatementStatus.CLOSED, StatementStatus.CARRIED}),
    StatementStatus.CLOSED: frozenset({StatementStatus.PAID}),
    StatementStatus.CARRIED: frozenset(),
    StatementStatus.PAID: frozenset(),
}


def statement_sources(target: StatementStatus) -> list[str]:
    """The statuses a statement may move to `target` from: the guard of its UPDATE."""
    return sorted(s.value for s, targets in TRANSITIONS.items() if target in targets)


@dataclass(frozen=True, slots=True)
class Line:
    """One entry's effect on an entity in one currency. Amounts are what the entity is owed;
    net = gross + refunds − fees + commission − reserve + adjustments + carried."""

    entry_id: int
    kind: str  # payment | refund | reserve_release | adjustment | carried
    ref: str  # the payment, refund or statement it stands for
    at: datetime
    gross: int = 0
    refunds: int = 0
    fees: int = 0
    commission: int = 0
    reserve: int = 0
    adjustments: int = 0
    carried: int = 0
    # withdrawals: what left for the entity's account (−) or came back (+). Not in net: a
    # payout pays what statements owed, it is not the period's business (its fee is a fee).
    paid_out: int = 0
    payment_id: str | None = None
    merchant_id: str | None = None

    @property
    def net(self) -> int:
        return (
            self.gross
            - self.fees
            + self.refunds
            + self.commission
            - self.reserve
            + self.adjustments
            + self.carried
        )


@dataclass(frozen=True, slots=True)
class Movement:
    """What one entry did to an entity's available and reserve, and what it stood for."""

    entry_id: int
    kind: str  # the entry's kind
    ref: str
    at: datetime
    available: int  # owed more (+) or less (−)
    reserve: int
    source_kind: str | None = None  # a release's source: payment | refund
    source_ref: str | None = None
    amount: int = 0  # the payment's, refund's or withdrawal's amount, in this currency
    payment_id: str | None = None
    merchant_id: str | None = None
    fee: int = 0  # a withdrawal's fee


# A withdrawal's entries (domain.withdrawals): the hold takes amount + fee from available, a
# release (refused, failed) gives both back, the payout moves the hold out, a return the amount.
W_HOLD, W_PAID, W_RELEASE, W_RETURN = (
    "withdrawal_hold",
    "withdrawal_paid",
    "withdrawal_release",
    "withdrawal_return",
)


def line_of(entity: Entity, m: Movement) -> Line:
    """A statement line from an entry's movement: a released payment shows its gross and fee
    (a merchant) or commission (an agent), a refund the amount refunded and the fee returned; a
    withdrawal what it paid out (outside net) and its fee (inside)."""
    common_w = dict(entry_id=m.entry_id, kind=m.kind, ref=m.ref, at=m.at)
    if m.kind == W_HOLD:
        return Line(**common_w, paid_out=-m.amount, fees=m.fee)
    if m.kind == W_RELEASE:
        return Line(**common_w, paid_out=m.amount, fees=-m.fee)
    if m.kind == W_RETURN:
        return Line(**common_w, paid_out=m.amount)
    if m.kind == W_PAID:
        return Line(**common_w)  # the hold moved out: nothing more owed or paid
    kind = m.source_kind if m.kind == RELEASE else m.kind
    owed = m.available + m.reserve
    common = dict(
        entry_id=m.entry_id,
        at=m.at,
        reserve=m.reserve,
        payment_id=m.payment_id,
        merchant_id=m.merchant_id,
    )
    ref = m.source_ref if m.kind == RELEASE else m.ref
    if kind == "payment" and entity.kind == "merchant":
        return Line(kind="payment", ref=ref, gross=m.amount, fees=m.amount - owed, **common)
    if kind == "refund" and entity.kind == "merchant":
        return Line(kind="refund", ref=ref, refunds=-m.amount, fees=-(m.amount + owed), **common)
    if kind in ("payment", "refund"):
        return Line(kind=kind, ref=ref, commission=owed, **common)
    if m.kind == RESERVE_RELEASE:
        return Line(kind=RESERVE_RELEASE, ref=m.ref, **common)
    return Line(kind="adjustment", ref=m.ref, adjustments=owed, **common)


TOTALS = ("gross", "refunds", "fees", "commission", "reserve", "adjustments", "carried", "paid_out")


@dataclass(frozen=True, slots=True)
class Draft:
    """A statement about to be closed: its period, lines and totals."""

    id: str
    entity: Entity
    currency: str
    start: datetime
    end: datetime
    lines: tuple[Line, ...]
    totals: dict[str, int] = field(default_factory=dict)

    @property
    def net(self) -> int:
        return sum(line.net for line in self.lines)

    @property
    def status(self) -> StatementStatus:
        return StatementStatus.CARRIED if self.net < 0 else StatementStatus.CLOSED


@dataclass(frozen=True, slots=True)
class Previous:
    """The entity's latest statement in the currency."""

    id: str
    end: datetime
    net: int
    status: StatementStatus


def close(
    entity: Entity,
    currency: str,
    cycle: str,
    lines: Sequence[Line],
    previous: Previous | None,
    now: datetime,
    new_id: Callable[[], str],
    settling: bool = False,
) -> list[Draft]:
    """The statements to close now: each period after the previous statement that has ended
    by `now` and has lines, taking every line posted before its end (and the previous net if
    it was carried). Periods without lines are skipped; lines of an unended period wait. A
    `manual` entity's period ends only in an operator's run that names it (`settling`): at
    `now`, taking every line up to and including `now` (the run's own releases are dated so)."""
    waiting = sorted(lines, key=lambda line: (line.at, line.entry_id))
    drafts: list[Draft] = []
    carry = previous if previous and previous.status is StatementStatus.CARRIED else None
    floor = previous.end if previous else None
    while waiting:
        if cycle == MANUAL:
            if not settling or waiting[0].at > now:
                break
            start, end = floor or _midnight(waiting[0].at), now
            taken = [line for line in waiting if line.at <= now]
        else:
            start, end = period(cycle, max(waiting[0].at, floor) if floor else waiting[0].at)
            if end > now:
                break
            taken = [line for line in waiting if line.at < end]
        waiting = waiting[len(taken) :]
        if carry is not None:
            taken.insert(0, Line(0, "carried", carry.id, start, carried=carry.net))
        totals = {name: sum(getattr(line, name) for line in taken) for name in TOTALS}
        draft = Draft(new_id(), entity, currency, start, end, tuple(taken), totals)
        drafts.append(draft)
        carry = Previous(draft.id, end, draft.net, draft.status) if draft.net < 0 else None
        floor = end
    return drafts
