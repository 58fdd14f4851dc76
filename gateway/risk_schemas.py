"""Request and response shapes of risk control (`/api/v1/risk/…` and `juhe risk`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from domain.risk.rules import MAX_EXPRESSION, MAX_RULES
from gateway.schemas import AmountText, Card, CurrencyCode, Customer

ListName = Literal["block", "allow"]
ListKind = Literal["ip", "email", "domain", "device", "card", "bin", "country", "customer"]
Reason = Annotated[str, Meta(max_length=500)]
Note = Annotated[str, Meta(max_length=500)]
_MAX_TS = 253_402_300_799


class CreateListEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`value`: an IP or CIDR range, an e-mail, a domain, a device id, a card fingerprint, a
    BIN (6–8 digits), a country (ISO alpha-2) or the merchant's customer id. `expires_at`:
    unix seconds, in the future; absent, the entry stands until removed."""

    list: ListName
    kind: ListKind
    value: Annotated[str, Meta(min_length=1, max_length=254)]
    reason: Reason | None = None
    expires_at: Annotated[int, Meta(ge=0, le=_MAX_TS)] | None = None


class ListEntryView(msgspec.Struct, kw_only=True):
    object: Literal["risk_list_entry"]
    id: str
    list: ListName
    kind: ListKind
    value: str
    reason: str | None
    expires_at: int | None
    actor: str
    created: int


class RuleIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`expression`: CEL over the payment's facts (README: Risk rules), true when the rule
    fires. `action`: `score +N` (1–1000), `review`, `reject` or `allow`. `scope`:
    `platform`, `agent:<id>` (the agent's whole subtree) or `merchant:<id>`."""

    id: Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    expression: Annotated[str, Meta(min_length=1, max_length=MAX_EXPRESSION)]
    action: Annotated[str, Meta(max_length=16)]
    description: Annotated[str, Meta(max_length=500)] = ""
    scope: Annotated[str, Meta(max_length=80)] = "platform"


class ThresholdsIn(msgspec.Struct, forbid_unknown_fields=True):
    review: Annotated[int, Meta(ge=1, le=1_000_000)] = 50
    reject: Annotated[int, Meta(ge=1, le=1_000_000)] = 100


class RuleSetIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    rules: Annotated[list[RuleIn], Meta(max_length=MAX_RULES)]
    thresholds: ThresholdsIn = msgspec.field(default_factory=ThresholdsIn)
    note: Note | None = None


class RuleSetView(msgspec.Struct, kw_only=True):
    object: Literal["risk_rule_set"]
    version: int | None  # None: nothing published yet (no rules: every payment approved)
    live: bool
    rules: list[RuleIn]
    thresholds: ThresholdsIn
    note: str | None
    actor: str | None
    created: int | None
    published: int | None


class ReviewView(msgspec.Struct, kw_only=True):
    """A payment waiting for (or given) a person's decision. `age_s`: since it was opened."""

    object: Literal["risk_review"]
    payment_id: str
    merchant_id: str
    status: Literal["open", "claimed", "approved", "rejected"]
    score: int
    version: int | None
    amount: str
    currency: str
    payment_status: str
    claimed_by: str | None
    decided_by: str | None
    reason: str | None
    by_default: bool
    due_at: int
    created: int
    age_s: int


class DecideReview(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, Meta(min_length=1, max_length=500)]


class Evaluate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A transaction judged as a payment would be, by the live rules and lists; nothing is
    created and nothing is counted (`velocity` counters include it as if it were paid)."""

    amount: AmountText
    currency: CurrencyCode
    method: Literal["card", "ewallet", "bank_transfer", "crypto"] | None = None
    customer: Customer | None = None
    card: Card | None = None


class Decision(msgspec.Struct, kw_only=True):
    """What risk decided and why: every fired rule with the facts it read (a customer's
    e-mail and IP only in part), the list entries hit, the rules that failed to evaluate."""

    object: Literal["risk_decision"]
    outcome: Literal["approve", "review", "reject"]
    score: int
    version: int | None
    code: str | None
    reason: str | None
    fired: list[dict[str, Any]]
    lists: list[dict[str, str]]
    errors: list[str]


class ShadowIn(msgspec.Struct, forbid_unknown_fields=True):
    version: Annotated[int, Meta(ge=1, le=2_147_483_647)]


class ShadowView(msgspec.Struct, kw_only=True):
    object: Literal["risk_shadow"]
    version: int | None  # None: no shadow runs


class BacktestIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Payments created in [since, until) (unix seconds), oldest first, at most `limit`;
    with `merchant_id`, that merchant's only."""

    since: Annotated[int, Meta(ge=0, le=_MAX_TS)]
    until: Annotated[int, Meta(ge=0, le=_MAX_TS)]
    limit: Annotated[int, Meta(ge=1, le=10_000)] = 10_000
    merchant_id: Annotated[str, Meta(max_length=64)] | None = None


class ComparisonView(msgspec.Struct, kw_only=True):
    """Outcomes as decided (`before`) and as `version` decides (`after`), counted; `flips`
    lists the first 100 payments that change. `skipped`: payments it could not judge again
    (decided by the merchant's limits, or without stored facts)."""

    object: Literal["risk_comparison"]
    version: int | None  # the shadow's: None while no version runs in shadow
    compared: int
    skipped: int
    before: dict[str, int]
    after: dict[str, int]
    changed: int
    flips: list[dict[str, str]]
