"""Request and response shapes of the merchant onboarding, configuration and key endpoints."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from domain.fees import PriceBps, PriceFixed
from gateway.agent_schemas import Name, Url
from gateway.identity_schemas import Email, Secret
from gateway.schemas import NotifyUrl

Currency = Annotated[str, Meta(pattern=r"^[A-Z]{3,5}$")]
Method = Literal["card", "ewallet", "bank_transfer", "crypto"]
Text = Annotated[str, Meta(min_length=1, max_length=200)]


class Legal(msgspec.Struct, forbid_unknown_fields=True):
    entity_name: Text
    registration_number: Text
    country: Annotated[str, Meta(pattern=r"^[A-Z]{2}$")]
    address: Annotated[str, Meta(min_length=1, max_length=500)]


class Owner(msgspec.Struct, forbid_unknown_fields=True):
    name: Text
    share_percent: Annotated[int, Meta(ge=0, le=100)]
    nationality: Annotated[str, Meta(pattern=r"^[A-Z]{2}$")] | None = None


class Document(msgspec.Struct, forbid_unknown_fields=True):
    """Metadata only: the file itself lives in the document store."""

    kind: Literal["registration_certificate", "id_card", "passport", "bank_statement", "other"]
    filename: Text
    sha256: Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$")]


class BankAccount(msgspec.Struct, forbid_unknown_fields=True):
    holder: Text
    number: Annotated[str, Meta(min_length=6, max_length=34, pattern=r"^[A-Za-z0-9 ]+$")]
    bank_name: Text
    swift: Annotated[str, Meta(pattern=r"^[A-Z0-9]{8,11}$")] | None = None


class RegisterMerchant(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    email: Email
    password: Secret  # the merchant owner's portal sign-in
    notify_url: NotifyUrl
    currencies: Annotated[list[Currency], Meta(min_length=1)]
    legal: Legal
    owners: Annotated[list[Owner], Meta(min_length=1)]
    documents: list[Document]
    bank_account: BankAccount
    return_url: Url | None = None
    # Apply under an agent: with that agent's invitation (its token); agent_id is optional
    # beside it and must then be the invitation's agent.
    invitation: Annotated[str, Meta(max_length=200)] | None = None
    agent_id: str | None = None


class UpdateMerchant(msgspec.Struct, forbid_unknown_fields=True):
    name: Name | None = None
    email: Email | None = None
    status: Literal["under_review", "approved", "rejected", "active", "suspended"] | None = None
    reason: Annotated[str, Meta(max_length=500)] | None = None


class Settlement(msgspec.Struct, forbid_unknown_fields=True):
    cycle: Literal["T+0", "T+1", "T+2", "T+3", "T+7", "weekly", "monthly"]
    account: BankAccount | None = None


class RoutingRule(msgspec.Struct, forbid_unknown_fields=True):
    """Conditions (all must hold; absent means any) and how to order the channels then."""

    strategy: Literal["pinned", "priority", "weighted", "least_cost", "success_rate"]
    channels: list[Annotated[str, Meta(max_length=64)]] = []
    methods: list[Method] = []
    currencies: list[Currency] = []
    min_amount_minor: Annotated[int, Meta(ge=0)] | None = None
    max_amount_minor: Annotated[int, Meta(ge=0)] | None = None
    countries: list[Annotated[str, Meta(pattern=r"^[A-Z]{2}$")]] = []


class PaymentConfig(msgspec.Struct, forbid_unknown_fields=True):
    """Fees, currencies, methods, channels and routing are set by the platform or the
    merchant's agents with `set_rates`; URLs and settlement by the merchant too. Absent fields
    stay as they are."""

    methods: list[Method] | None = None
    currencies: list[Currency] | None = None
    channels: list[Annotated[str, Meta(max_length=64)]] | None = None
    routing: list[RoutingRule] | None = None  # tried in order; the first that matches decides
    fee_bps: PriceBps | None = None
    fee_fixed_minor: PriceFixed | None = None
    notify_url: NotifyUrl | None = None
    return_url: Url | None = None
    settlement: Settlement | None = None


class RotateKey(msgspec.Struct, forbid_unknown_fields=True):
    overlap_s: Annotated[int, Meta(ge=0, le=7 * 86_400)] = 86_400
