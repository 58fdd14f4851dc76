"""Request and response shapes of balances and settlement statements. Amounts are decimal
strings in major units of the currency, as everywhere in the API; times are unix seconds."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from domain.settlement import CYCLES

EntityId = Annotated[str, Meta(min_length=1, max_length=64)]
Cycle = Literal[CYCLES]  # type: ignore[valid-type]
Status = Literal["closed", "carried", "paid"]


class BalanceView(msgspec.Struct):
    object: Literal["balance"]
    currency: str
    pending: str
    available: str
    reserved: str
    paid_out: str


class Balances(msgspec.Struct):
    object: Literal["balances"]
    entity_id: str
    entity_kind: Literal["merchant", "agent"]
    data: list[BalanceView]


class StatementView(msgspec.Struct, kw_only=True):
    """A closed period: its totals; net = gross + refunds − fees + commission − reserve +
    adjustments + carried. `paid_out` (withdrawals in the period, out − and back +) is shown
    beside net, not in it: a payout pays what statements owed."""

    id: str
    object: Literal["settlement"] = "settlement"
    entity_id: str
    entity_kind: Literal["merchant", "agent"]
    currency: str
    cycle: str
    period_start: int
    period_end: int
    status: Status
    gross: str
    refunds: str
    fees: str
    commission: str
    reserve: str
    adjustments: str
    carried: str
    paid_out: str  # withdrawals out (−) and back (+): not in net
    net: str
    carried_from: str | None
    line_count: int
    created: int


class StatementList(msgspec.Struct):
    object: Literal["list"]
    data: list[StatementView]
    has_more: bool


class CommissionTerms(msgspec.Struct):
    """What an agent's commission line was earned under (seed §5.3): its level (1 is the top
    of the merchant's chain), mode, and rate: in mark-up mode the agent's own rate, in
    percentage mode its share of the amount, in fixed mode its amount per payment."""

    level: int
    mode: Literal["markup", "percentage", "fixed"]
    rate_bps: int
    fixed: str  # major units of the line's currency


class LineView(msgspec.Struct, kw_only=True):
    """One journal entry's effect on the statement (kind payment, refund, reserve_release,
    adjustment, or carried: the previous statement's negative net, `ref` naming it)."""

    id: int
    object: Literal["settlement_line"] = "settlement_line"
    entry_id: int | None
    kind: str
    ref: str
    at: int
    payment_id: str | None
    merchant_id: str | None
    gross: str
    refunds: str
    fees: str
    commission: str
    reserve: str
    adjustments: str
    carried: str
    paid_out: str  # withdrawals out (−) and back (+): not in net
    net: str
    commission_terms: CommissionTerms | None = None  # an agent's payment and refund lines


class LinePage(msgspec.Struct):
    object: Literal["list"]
    data: list[LineView]
    has_more: bool


class StatementDetail(msgspec.Struct):
    statement: StatementView
    lines: LinePage
    object: Literal["settlement_detail"] = "settlement_detail"


class RunSettlements(msgspec.Struct, forbid_unknown_fields=True):
    """Settle as of `until` (unix seconds, not in the future; default now), for one entity or
    all. The same body closes the same statements: a repeat is a no-op."""

    until: Annotated[int, Meta(ge=0)] | None = None
    entity: EntityId | None = None


class SettlementRun(msgspec.Struct):
    object: Literal["settlement_run"]
    until: int
    entity: str | None
    released: int
    reserve_released: int
    statements: list[str]
    withdrawals: list[str]  # auto-settlement: closed statements withdrawn by themselves


class PutTerms(msgspec.Struct, forbid_unknown_fields=True):
    """An entity's cycle (absent: the merchant's own, else the default) and rolling reserve:
    `reserve_bps` of each release held back for `reserve_days`. `payout_account_id`, one of the
    entity's payout accounts, makes it auto-settle: each closed statement is withdrawn to it."""

    cycle: Cycle | None = None
    reserve_bps: Annotated[int, Meta(ge=0, le=10_000)] = 0
    reserve_days: Annotated[int, Meta(ge=0, le=365)] = 0
    payout_account_id: Annotated[str, Meta(min_length=1, max_length=64)] | None = None


class TermsView(msgspec.Struct):
    object: Literal["settlement_terms"]
    entity_id: str
    cycle: str | None
    reserve_bps: int
    reserve_days: int
    payout_account_id: str | None = None
