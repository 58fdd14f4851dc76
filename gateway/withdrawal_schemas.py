"""Request and response shapes of payout accounts, withdrawals and their rules. Amounts are
decimal strings in major units of the currency; times are unix seconds."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from domain.withdrawals import WithdrawalStatus
from gateway.schemas import AmountText, CurrencyCode
from gateway.settlement_schemas import EntityId

Text = Annotated[str, Meta(min_length=1, max_length=200)]
Status = Literal[tuple(s.value for s in WithdrawalStatus)]  # type: ignore[valid-type]


class AddPayoutAccount(msgspec.Struct, forbid_unknown_fields=True):
    """A bank account (`number` the IBAN or account number, `bank_name`) or a crypto wallet
    (`number` the address, `bank_name` the network). `entity`: platform users only."""

    kind: Literal["bank_account", "crypto_wallet"]
    number: Annotated[str, Meta(min_length=6, max_length=128, pattern=r"^[A-Za-z0-9 ]+$")]
    holder: Text | None = None
    bank_name: Text | None = None
    entity: EntityId | None = None


class PayoutAccountView(msgspec.Struct):
    id: str
    object: Literal["payout_account"]
    entity_id: str
    kind: str
    number: str  # masked: the last four characters
    created: int


class PayoutAccountList(msgspec.Struct):
    object: Literal["list"]
    data: list[PayoutAccountView]
    has_more: bool


class CreateWithdrawal(msgspec.Struct, forbid_unknown_fields=True):
    """`amount` is what reaches the account; the fee is taken on top from available.
    `entity`: platform users only (a withdrawal on an entity's behalf). `settlement_id`: pay a
    closed statement, its net in its currency (it becomes `paid` with the payout)."""

    amount: AmountText
    currency: CurrencyCode
    payout_account_id: Annotated[str, Meta(min_length=1, max_length=64)]
    entity: EntityId | None = None
    settlement_id: Annotated[str, Meta(min_length=1, max_length=64)] | None = None


class Withdrawal(msgspec.Struct, kw_only=True):
    id: str
    object: Literal["withdrawal"] = "withdrawal"
    entity_id: str
    entity_kind: Literal["merchant", "agent"]
    payout_account_id: str
    amount: str
    fee: str
    currency: str
    status: Status
    requested_by: str
    decided_by: str | None
    decision_reason: str | None
    failure_code: str | None
    failure_message: str | None
    settlement_id: str | None
    # the risk decision: outcome, score, rule version, fired rules with the values they saw
    risk: dict[str, Any] | None = None
    created: int
    updated: int


class WithdrawalList(msgspec.Struct):
    object: Literal["list"]
    data: list[Withdrawal]
    has_more: bool


class Decide(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, Meta(min_length=1, max_length=500)]


class PutRules(msgspec.Struct, forbid_unknown_fields=True):
    """An entity's rules in one currency (major units). No `daily_limit`: none; no
    `approval_above`: never waits for approval."""

    currency: CurrencyCode
    min_amount: AmountText
    fee_fixed: AmountText = "0"
    fee_bps: Annotated[int, Meta(ge=0, le=10_000)] = 0
    daily_limit: AmountText | None = None
    approval_above: AmountText | None = None


class RulesView(msgspec.Struct):
    object: Literal["withdrawal_rules"]
    entity_id: str
    currency: str
    min_amount: str
    fee_fixed: str
    fee_bps: int
    daily_limit: str | None
    approval_above: str | None
