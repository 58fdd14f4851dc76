"""Reconciliation with a channel (對帳): the channel's statement lines against Juhe's records.

Pure: facts in, matches and discrepancies out. A channel line is matched on the channel's
reference (a payment's `channel_order_id`, a refund's `channel_refund_id`), else on Juhe's own
id (the merchant_ref the channel was given). Each Juhe record is claimed by one line at most: a
second line for a claimed record is a `duplicate`. A matched pair is compared on amount,
currency, status and fee, one discrepancy per field that differs. A Juhe record the channel
should have listed (it succeeded, in the window) but no line claimed is `missing_at_channel`;
records outside the window are only there to be found by a line (looked up by reference).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from domain.ledger import Posting, ensure_balanced
from domain.states import ENDED_WITHOUT_MONEY

SUCCEEDED = "succeeded"
_PAID = frozenset({"succeeded", "partially_refunded", "refunded"})
_OPEN = frozenset({"pending", "in_review", "processing", "awaiting_payment"})
_ENDED = frozenset(s.value for s in ENDED_WITHOUT_MONEY)


def outcome_of(status: str) -> str:
    """A Juhe payment or refund status in a statement's words: the money moved or it did not
    (a refunded payment was still paid: its refunds are lines of their own)."""
    return SUCCEEDED if status in _PAID else "pending" if status in _OPEN else "failed"


class Kind(StrEnum):
    MISSING_IN_JUHE = "missing_in_juhe"  # the channel has it, Juhe does not
    MISSING_AT_CHANNEL = "missing_at_channel"  # Juhe has it, the channel's file does not
    AMOUNT = "amount_mismatch"
    CURRENCY = "currency_mismatch"
    STATUS = "status_mismatch"
    FEE = "fee_mismatch"  # the channel's fee against the cost Juhe posted
    DUPLICATE = "duplicate"  # a second line for a record already claimed
    # Not found by a run: the channel, asked about a payment Juhe had ended without its money,
    # said it was paid (recorded by the ledger pool as it refuses that word)
    PAID_AFTER_END = "paid_after_end"
    # Not found by a run either: the chain watcher's, for crypto deposits (domain.chain). What
    # arrived beyond a credited deposit's tolerance, and a deposit short when its payment
    # ended; their amount in the asset's minor units is the discrepancy's `channel_value`.
    CRYPTO_SURPLUS = "crypto_surplus"
    CRYPTO_UNDERPAID = "crypto_underpaid"


@dataclass(frozen=True, slots=True)
class Line:
    """One transaction as one side knows it; statuses are Juhe's words (`succeeded`, `failed`,
    `pending`), the channel's mapped by its adapter. `expected`: Juhe's record belongs in the
    channel's file (succeeded inside the window); a channel line is always expected."""

    type: str  # "payment" | "refund"
    reference: str  # the channel's id for it
    juhe_id: str  # the payment or refund id
    amount: int
    currency: str
    status: str
    fee: int = 0
    expected: bool = True


@dataclass(frozen=True, slots=True)
class Discrepancy:
    kind: Kind
    type: str
    reference: str
    juhe_id: str
    channel_value: str | None  # the compared field as each side has it; None: no record
    juhe_value: str | None


@dataclass(slots=True)
class Tally:
    """How many lines and their amounts, per currency."""

    count: int = 0
    amounts: dict[str, int] = field(default_factory=dict)

    def add(self, line: Line) -> None:
        self.count += 1
        self.amounts[line.currency] = self.amounts.get(line.currency, 0) + line.amount


@dataclass(slots=True)
class Outcome:
    channel: Tally = field(default_factory=Tally)  # every line of the file
    juhe: Tally = field(default_factory=Tally)  # every record expected in it
    matched: Tally = field(default_factory=Tally)  # pairs that agree on every field
    discrepancies: list[Discrepancy] = field(default_factory=list)


_COMPARED = (
    (Kind.AMOUNT, "amount"),
    (Kind.CURRENCY, "currency"),
    (Kind.STATUS, "status"),
    (Kind.FEE, "fee"),
)


def reconcile(channel: Iterable[Line], juhe: Sequence[Line]) -> Outcome:
    """Match the channel's lines against Juhe's records; see the module docstring."""
    by_reference = {(r.type, r.reference): r for r in juhe if r.reference}
    by_id = {(r.type, r.juhe_id): r for r in juhe}
    claimed: set[tuple[str, str]] = set()
    out = Outcome()
    for line in channel:
        out.channel.add(line)
        record = by_reference.get((line.type, line.reference)) or by_id.get(
            (line.type, line.juhe_id)
        )
        if record is None:
            out.discrepancies.append(_gap(Kind.MISSING_IN_JUHE, line, str(line.amount), None))
            continue
        key = (record.type, record.juhe_id)
        if key in claimed:
            out.discrepancies.append(_gap(Kind.DUPLICATE, line, str(line.amount), None))
            continue
        claimed.add(key)
        differences = [
            _gap(kind, record, str(getattr(line, name)), str(getattr(record, name)))
            for kind, name in _COMPARED
            if getattr(line, name) != getattr(record, name)
        ]
        out.discrepancies += differences
        if not differences:
            out.matched.add(line)
    for record in juhe:
        if record.expected:
            out.juhe.add(record)
            if (record.type, record.juhe_id) not in claimed:
                out.discrepancies.append(
                    _gap(Kind.MISSING_AT_CHANNEL, record, None, str(record.amount))
                )
    return out


def _gap(kind: Kind, line: Line, channel: str | None, juhe: str | None) -> Discrepancy:
    return Discrepancy(kind, line.type, line.reference, line.juhe_id, channel, juhe)


def due_days(now: datetime, due_after_s: int, lookback_days: int) -> list[date]:
    """The UTC days whose statements are due by `now` (a day's file is due `due_after_s`
    after it ends), newest first, going back `lookback_days` days from today."""
    today = now.astimezone(UTC).date()
    days = (today - timedelta(days=n) for n in range(1, lookback_days + 1))
    return [
        d
        for d in days
        if datetime.combine(d + timedelta(days=1), time(), UTC) + timedelta(seconds=due_after_s)
        <= now
    ]


class Action(StrEnum):
    IGNORE = "ignore"  # closed as it is
    ADJUST = "adjust"  # a balanced entry to named accounts
    REFUND = "refund"  # the money the channel holds for a payment Juhe ended goes back
    ACCEPT_CHANNEL = "accept_channel"  # the payment takes the channel's status


def refused_action(
    action: Action, type_: str, juhe_status: str | None, at_channel: str | None
) -> str | None:
    """Why `refund` or `accept_channel` cannot settle a discrepancy, as an error code, or None.
    `juhe_status` is the payment's status (None: Juhe has no such payment), `at_channel` the
    order's status as the channel answers now (`paid`, `failed`, `pending`, `refunded`)."""
    if type_ != "payment" or juhe_status is None:
        return "not_a_payment"
    paid_here = outcome_of(juhe_status) == SUCCEEDED
    if action is Action.REFUND:
        if paid_here:
            return "refund_through_api"  # the money is in Juhe's books: POST /refunds
        if juhe_status in _OPEN:
            return "payment_not_ended"  # it may still take the channel's word
        return None if at_channel == "paid" else "not_paid_at_channel"
    if at_channel not in ("paid", "failed"):
        return "channel_undecided"
    if paid_here:
        return "nothing_to_accept" if at_channel == "paid" else "cannot_reverse"
    if juhe_status not in _OPEN and juhe_status not in _ENDED:
        return "payment_rejected"  # risk refused it: its money goes back (`refund`)
    if at_channel == "failed" and juhe_status in _ENDED:
        return "nothing_to_accept"
    return None


def adjustment(debit: str, credit: str, currency: str, amount: int) -> list[Posting]:
    """The balanced entry that settles a discrepancy: `amount` from `credit` to `debit`."""
    if debit == credit or amount <= 0:
        raise ValueError("an adjustment moves a positive amount between two accounts")
    postings = [Posting(debit, currency, amount), Posting(credit, currency, -amount)]
    ensure_balanced(postings)
    return postings


class StatementError(ValueError):
    """A statement file that cannot be read as its columns say."""


@dataclass(frozen=True, slots=True)
class Columns:
    """Which CSV column holds what (amounts and fees in minor units), and which status values
    mean the money moved; the defaults are the simulator's statement."""

    reference: str = "order_no"
    juhe_id: str = "merchant_ref"
    type: str = "type"  # "payment" or "refund"
    amount: str = "amount_minor"
    currency: str = "currency"
    fee: str = "fee_minor"
    status: str = "status"
    succeeded: tuple[str, ...] = ("SUCCESS",)


_MINOR = re.compile(r"[0-9]{1,78}")
_FIELDS = ("reference", "juhe_id", "type", "amount", "currency", "fee", "status")


def parse_statement(text: str, columns: Columns = Columns()) -> tuple[Line, ...]:
    """A statement's CSV text as lines; `StatementError` names the first line it cannot read."""
    reader = csv.DictReader(io.StringIO(text))
    names = [getattr(columns, f) for f in _FIELDS]
    missing = [name for name in names if name not in (reader.fieldnames or ())]
    if missing:
        raise StatementError(f"the file has no column {missing[0]!r}")
    lines = []
    for number, row in enumerate(reader, start=2):
        amount, fee = row[columns.amount] or "", row[columns.fee] or ""
        kind = row[columns.type]
        if kind not in ("payment", "refund"):
            raise StatementError(f"line {number}: type is payment or refund, not {kind!r}")
        if not (_MINOR.fullmatch(amount) and _MINOR.fullmatch(fee)) or int(amount) == 0:
            raise StatementError(f"line {number}: amount and fee are minor units, amount > 0")
        if not row[columns.reference] or not row[columns.juhe_id] or not row[columns.currency]:
            raise StatementError(f"line {number}: a reference, an id and a currency are needed")
        status = SUCCEEDED if row[columns.status] in columns.succeeded else "failed"
        lines.append(
            Line(
                kind,
                row[columns.reference],
                row[columns.juhe_id],
                int(amount),
                row[columns.currency],
                status,
                int(fee),
            )
        )
    return tuple(lines)
