"""Request and response shapes of reconciliation runs and their discrepancies. Run totals are
decimal strings in major units per currency; a discrepancy's values are each side's field as
compared (amounts and fees in minor units); times are unix seconds."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from domain.reconciliation import Action, Kind

Day = Annotated[str, Meta(pattern=r"^\d{4}-\d{2}-\d{2}$", description="a UTC day, YYYY-MM-DD")]
ChannelCode = Annotated[str, Meta(min_length=1, max_length=64)]
DiscrepancyStatus = Literal["open", "resolved", "ignored"]
DISCREPANCY_STATUSES = ("open", "resolved", "ignored")


ColumnName = Annotated[str, Meta(min_length=1, max_length=128)]


class StatementColumns(msgspec.Struct, forbid_unknown_fields=True):
    """Which column of an uploaded CSV holds what (amounts and fees in minor units), and the
    status values that mean the money moved."""

    reference: ColumnName = "order_no"  # the channel's id
    juhe_id: ColumnName = "merchant_ref"  # the payment or refund id Juhe gave the channel
    type: ColumnName = "type"  # payment | refund
    amount: ColumnName = "amount_minor"
    currency: ColumnName = "currency"
    fee: ColumnName = "fee_minor"
    status: ColumnName = "status"
    succeeded: Annotated[list[ColumnName], Meta(min_length=1, max_length=20)] = msgspec.field(
        default_factory=lambda: ["SUCCESS"]
    )


class RunReconciliation(msgspec.Struct, forbid_unknown_fields=True):
    """Reconcile the channel's statement for the day: fetched through its adapter, or the
    `csv` given, read through `columns`."""

    channel: ChannelCode
    day: Day
    csv: Annotated[str, Meta(min_length=1, max_length=8_000_000)] | None = None
    columns: StatementColumns | None = None


AccountName = Annotated[
    str,
    Meta(
        pattern=r"^(channel|merchant|agent|platform):[A-Za-z0-9_.:-]{1,120}$",
        description="a ledger account, e.g. channel:sim:clearing or platform:reconciliation",
    ),
]


class Adjustment(msgspec.Struct, forbid_unknown_fields=True):
    """A balanced entry: `amount` (major units) from `credit` to `debit`."""

    debit: AccountName
    credit: AccountName
    amount: Annotated[str, Meta(max_length=80)]
    currency: Annotated[str, Meta(pattern=r"^[A-Z]{3,5}$")]


class ResolveDiscrepancy(msgspec.Struct, forbid_unknown_fields=True):
    """`ignore` closes it as it is; `adjust` posts the adjustment; `refund` returns at the
    channel the money it holds for a payment Juhe ended without it; `accept_channel` moves the
    payment to the status the channel gives it now, through the ledger's guarded transition."""

    action: Action
    reason: Annotated[str, Meta(min_length=1, max_length=500)]
    adjustment: Adjustment | None = None
    # `refund` on a crypto channel: the address the money goes back to
    destination: Annotated[str, Meta(max_length=128)] | None = None


class Tally(msgspec.Struct):
    count: int
    amounts: dict[str, str]  # currency → total, major units


class RunView(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["reconciliation_run"] = "reconciliation_run"
    channel: str
    day: str
    file_sha256: str
    status: Literal["matched", "discrepancies"]
    channel_lines: Tally  # every line of the channel's file
    juhe_records: Tally  # every record of Juhe's expected in it
    matched: Tally  # pairs that agree on every field
    discrepancies: int
    actor: str
    created: int
    replayed: bool = False  # this file was reconciled before: the earlier run, unchanged


class RunList(msgspec.Struct):
    object: Literal["list"]
    data: list[RunView]
    has_more: bool


class Returned(msgspec.Struct):
    amount: str  # major units
    currency: str


class DiscrepancyView(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["reconciliation_discrepancy"] = "reconciliation_discrepancy"
    run_id: str | None  # None: a payment the channel said was paid after it ended
    channel: str
    kind: Kind
    type: Literal["payment", "refund"]
    reference: str  # the channel's id
    juhe_id: str
    channel_value: str | None
    juhe_value: str | None
    status: DiscrepancyStatus
    action: Action | None
    reason: str | None
    resolved_by: str | None
    resolved_at: int | None
    entry_id: int | None  # the adjustment's journal entry
    channel_ref: str | None  # the return's refund id at the channel, or the accepted event
    returned: Returned | None  # what a `refund` gave back at the channel
    created: int


class DiscrepancyList(msgspec.Struct):
    object: Literal["list"]
    data: list[DiscrepancyView]
    has_more: bool
