"""Request and response shapes of the channel administration endpoints (and `juhe channels`).

Amounts here are integers in minor units of each currency, as channels state their limits;
a channel's credentials go in and never come out (views name the keys only)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import UNSET, Meta, UnsetType

from gateway.agent_schemas import Bps, Minor, Url
from gateway.merchant_schemas import Currency, Method, Text

Code = Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]{1,31}$")]
AdapterName = Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]{1,31}$")]
Credential = Annotated[str, Meta(min_length=1, max_length=4096)]
TimeoutMs = Annotated[int, Meta(ge=50, le=120_000)]
Retries = Annotated[int, Meta(ge=1, le=10)]
Weight = Annotated[int, Meta(ge=0, le=1_000_000)]
Priority = Annotated[int, Meta(ge=-1_000_000, le=1_000_000)]


class FeeLine(msgspec.Struct, forbid_unknown_fields=True):
    """What the channel charges: basis points plus a fixed part in minor units; a line
    without method or currency applies to any, and the most specific line wins."""

    bps: Bps
    fixed_minor: Minor = 0
    method: Method | None = None
    currency: Currency | None = None


class CreateChannel(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    code: Code
    adapter: AdapterName
    base_url: Url
    credentials: dict[str, Credential]
    timeout_ms: TimeoutMs = 3000
    retries: Retries = 3
    methods: list[Method] = []  # empty: any
    currencies: list[Currency] = []  # empty: any
    min_amount_minor: Minor = 0
    max_amount_minor: Minor | None = None
    daily_caps: dict[Currency, Minor] = {}
    fees: list[FeeLine] = []
    settlement_currency: Currency | None = None
    priority: Priority = 100
    weight: Weight = 1
    enabled: bool = True


class UpdateChannel(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Only the fields given change. `credentials` replaces the whole set. With `version`,
    the change applies only to that version of the channel (else 409)."""

    version: int | UnsetType = UNSET
    adapter: AdapterName | UnsetType = UNSET
    base_url: Url | UnsetType = UNSET
    credentials: dict[str, Credential] | UnsetType = UNSET
    timeout_ms: TimeoutMs | UnsetType = UNSET
    retries: Retries | UnsetType = UNSET
    methods: list[Method] | UnsetType = UNSET
    currencies: list[Currency] | UnsetType = UNSET
    min_amount_minor: Minor | UnsetType = UNSET
    max_amount_minor: Minor | UnsetType | None = UNSET
    daily_caps: dict[Currency, Minor] | UnsetType = UNSET
    fees: list[FeeLine] | UnsetType = UNSET
    settlement_currency: Currency | UnsetType | None = UNSET
    priority: Priority | UnsetType = UNSET
    weight: Weight | UnsetType = UNSET
    enabled: bool | UnsetType = UNSET


class SwitchOver(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Send a merchant's traffic (or, with merchant_id "*", everyone's) for this channel to
    `to_channel` until the switch-over is ended."""

    to_channel: Code
    merchant_id: Annotated[str, Meta(min_length=1, max_length=64)] = "*"
    reason: Text | None = None


class SwitchOverView(msgspec.Struct, kw_only=True):
    object: str
    merchant_id: str
    from_channel: str
    to_channel: str
    reason: str | None
    created_at: int


class ChannelView(msgspec.Struct, kw_only=True):
    object: str
    code: str
    adapter: str
    base_url: str
    credential_keys: list[str]  # the names of the stored credentials, never their values
    timeout_ms: int
    retries: int
    methods: list[str]
    currencies: list[str]
    min_amount_minor: int
    max_amount_minor: int | None
    daily_caps: dict[str, int]
    fees: list[FeeLine]
    settlement_currency: str | None
    priority: int
    weight: int
    enabled: bool
    version: int
    created_at: int
    updated_at: int
    routed_today: dict[str, int] | None = None  # in a single channel's view
    routable: bool | None = None  # in a single channel's view: its breaker lets traffic through
