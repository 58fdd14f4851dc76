"""Request and response shapes of the agent endpoints."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from domain.fees import PriceBps, PriceFixed
from gateway.identity_schemas import Email, Secret
from gateway.schemas import NotifyUrl

Name = Annotated[str, Meta(min_length=1, max_length=200)]
GrantName = Literal["open_children", "suspend_children", "view_children", "set_rates"]
Bps = Annotated[int, Meta(ge=0, le=10_000)]
Minor = Annotated[int, Meta(ge=0)]
Currency = Annotated[str, Meta(pattern=r"^([A-Z]{3,5}|\*)$")]
Url = Annotated[str, Meta(max_length=2048, pattern=r"^https?://")]


class RegisterAgent(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    email: Email
    password: Secret  # the agent owner's portal sign-in


class UpdateAgent(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | None = None
    email: Email | None = None
    status: Literal["under_review", "approved", "rejected", "active", "suspended"] | None = None
    reason: Annotated[str, Meta(max_length=500)] | None = None
    grants: list[GrantName] | None = None


class AgentView(msgspec.Struct):
    id: str
    object: Literal["agent"]
    name: str
    email: str
    parent_id: str | None
    path: list[str]
    status: str
    grants: list[str]
    created: int


class SubAgent(msgspec.Struct, forbid_unknown_fields=True, tag="agent", tag_field="type"):
    """Open a new sub-agent (`name`, `email`, `password`) or, for the platform, move an
    existing agent and its subtree here (`agent_id`)."""

    name: Name | None = None
    email: Email | None = None
    password: Secret | None = None
    grants: list[GrantName] = []
    agent_id: str | None = None


class SubMerchant(msgspec.Struct, forbid_unknown_fields=True, tag="merchant", tag_field="type"):
    """Open a new merchant here (`name`, `notify_url`, `currencies`, fees) or, for the
    platform, place an existing one here (`merchant_id`). Without fees the merchant gets the
    platform's default price; setting fees takes the `set_rates` grant."""

    name: Name | None = None
    notify_url: NotifyUrl | None = None
    currencies: list[Currency] = []
    fee_bps: PriceBps | None = None
    fee_fixed_minor: PriceFixed | None = None
    merchant_id: str | None = None


Subordinate = SubAgent | SubMerchant


class PutPolicy(msgspec.Struct, forbid_unknown_fields=True):
    """An agent's rate (what its parent charges it) and how it earns; set by its parent with
    `set_rates`, or by the platform for a top agent."""

    mode: Literal["markup", "percentage", "fixed"]
    rate_bps: PriceBps
    method: Literal["card", "ewallet", "bank_transfer", "crypto", "*"] = "*"
    rate_fixed: PriceFixed = 0
    share_bps: PriceBps = 0  # percentage mode
    share_fixed: PriceFixed = 0  # fixed mode
    effective_from: int | None = None  # unix seconds; now when absent


class PolicyView(msgspec.Struct):
    object: Literal["commission_policy"]
    agent_id: str
    currency: str
    method: str
    mode: str
    rate_bps: int
    rate_fixed: int
    share_bps: int
    share_fixed: int
    effective_from: int
    version: int


class CreateInvitation(msgspec.Struct, forbid_unknown_fields=True):
    """How long the invitation works: a week unless said, at most 30 days."""

    expires_in: Annotated[int, Meta(ge=60, le=30 * 86_400)] = 7 * 86_400


class InvitationView(msgspec.Struct):
    object: Literal["agent_invitation"]
    id: str
    agent_id: str
    token: str  # shown once; a registration's `invitation`
    expires_at: int
    created: int


class MerchantPricing(msgspec.Struct, forbid_unknown_fields=True):
    """A merchant's price, set by its agents with `set_rates` (or the platform)."""

    fee_bps: PriceBps
    fee_fixed_minor: PriceFixed = 0
