"""The facts a rule can read, built from one payment (or a transaction to evaluate) and what
the risk pool looked up for it: counters, the IP's country, the USD equivalent.

Absent text is "" and absent lists are empty, so a rule like `email_domain == "x.example"`
reads plainly whether or not the merchant sent an e-mail; `amount_usd` is null when no rate
was available, and a rule reading it then records an error instead of firing.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from domain.risk.velocity import Feature, every_feature, nested

VELOCITY = "velocity"
# Every fact, with a typical value: what publishing checks rules' types against.
FACTS: dict[str, Any] = {
    "amount": 12_345,  # minor units of `currency`
    "amount_usd": 12_345,  # USD minor units (cents), null when no rate was available
    "currency": "USD",
    "method": "card",
    "merchant": "mch_x",
    "agents": ["agt_x"],  # the merchant's agent chain, nearest first
    "email": "a@example.com",
    "email_domain": "example.com",
    "ip": "203.0.113.7",
    "ip_country": "US",  # from the local range table; "" when unknown
    "country": "US",  # the country the merchant sent for its customer
    "card_country": "US",  # as sent, else from the local BIN table; "" when unknown
    "card_bin": "424242",
    "card_fingerprint": "fp_x",
    "device": "dev_x",  # the cashier page's device id
    "customer": "cus_x",  # the merchant's id for its customer
    "merchant_usual_usd": 12_345,  # the merchant's usual amount (EWMA, USD minor units)
    "merchant_amount_z": 0.5,  # this amount against it, in standard deviations (0.0: too new)
    # the merchant's recent decline rate and new-country share against their usual, in standard
    # deviations (domain.risk.anomaly; 0.0 until enough history)
    "merchant_decline_z": 0.5,
    "merchant_new_country_z": 0.5,
    # this window's payments so far against the merchant's usual per window (0.0: too new)
    "merchant_volume_z": 0.5,
    "hour": 13,  # 0–23, UTC
    "weekday": 2,  # 0 Monday … 6 Sunday
    # what is judged: a payment or a withdrawal (withdrawal_facts); for a withdrawal
    # `merchant` is the withdrawing entity's id and the customer's facts are blank
    "kind": "payment",
    "entity_kind": "merchant",  # merchant or agent
    "payout_account_kind": "bank_account",  # bank_account or crypto_wallet ("" for payments)
    "withdrawn_today": 12_345,  # the entity's withdrawals since 00:00 UTC, minor units of currency
    "withdrawals_today": 2,  # and how many (before this one)
    VELOCITY: {},
}
# Every fact at its type's zero: what a withdrawal's customer facts read, and what a backtest
# reads for a fact that was added after a stored decision was made.
BLANK: dict[str, Any] = {k: type(v)() for k, v in FACTS.items()}


@dataclass(frozen=True, slots=True)
class Transaction:
    """What is known of a payment before any channel sees it."""

    merchant_id: str
    amount: int
    currency: str
    at: float  # unix seconds
    method: str | None = None
    agents: Sequence[str] = ()
    email: str | None = None
    ip: str | None = None
    country: str | None = None
    device: str | None = None
    customer: str | None = None
    card_fingerprint: str | None = None
    card_bin: str | None = None
    card_country: str | None = None
    id: str | None = None  # the payment's: its events are counted once, however redelivered

    def keys(self) -> dict[str, str]:
        """The values velocity is counted by, normalised; absent ones left out."""
        values = {
            "ip": self.ip,
            "email": self.email.lower() if self.email else None,
            "device": self.device,
            "card": self.card_fingerprint,
            "customer": self.customer,
            "merchant": self.merchant_id,
        }
        return {k: v for k, v in values.items() if v}


@dataclass(frozen=True, slots=True)
class Usual:
    """A merchant's usual amount before this payment: the exponentially weighted mean and
    variance of its payments in USD minor units, over `seen` payments."""

    mean: float = 0.0
    var: float = 0.0
    seen: int = 0

    def z(self, amount_usd: int | None) -> float:
        """How far from usual, in standard deviations; 0.0 until the merchant has enough
        history (MIN_SEEN payments) or when the amount has no USD equivalent."""
        if amount_usd is None or self.seen < MIN_SEEN or self.var <= 0:
            return 0.0
        return (amount_usd - self.mean) / math.sqrt(self.var)


MIN_SEEN = 30


@dataclass(frozen=True, slots=True)
class Lookups:
    amount_usd: int | None = None
    ip_country: str | None = None
    velocity: Mapping[Any, int] = field(default_factory=dict)
    usual: Usual = field(default_factory=Usual)
    decline_z: float = 0.0
    new_country_z: float = 0.0
    volume_z: float = 0.0
    card_country: str | None = None  # from the BIN table, where the payment did not say


def email_domain(email: str | None) -> str:
    return email.rsplit("@", 1)[-1].lower() if email and "@" in email else ""


def facts_of(tx: Transaction, found: Lookups) -> dict[str, Any]:
    at = datetime.fromtimestamp(tx.at, UTC)
    return {
        "amount": tx.amount,
        "amount_usd": found.amount_usd,
        "currency": tx.currency,
        "method": tx.method or "",
        "merchant": tx.merchant_id,
        "agents": list(tx.agents),
        "email": (tx.email or "").lower(),
        "email_domain": email_domain(tx.email),
        "ip": tx.ip or "",
        "ip_country": found.ip_country or "",
        "country": tx.country or "",
        "card_country": tx.card_country or found.card_country or "",
        "card_bin": tx.card_bin or "",
        "card_fingerprint": tx.card_fingerprint or "",
        "device": tx.device or "",
        "customer": tx.customer or "",
        "merchant_usual_usd": round(found.usual.mean),
        "merchant_amount_z": float(found.usual.z(found.amount_usd)),
        "merchant_decline_z": float(found.decline_z),
        "merchant_new_country_z": float(found.new_country_z),
        "merchant_volume_z": float(found.volume_z),
        "hour": at.hour,
        "weekday": at.weekday(),
        "kind": "payment",
        "entity_kind": "merchant",
        "payout_account_kind": "",
        "withdrawn_today": 0,
        "withdrawals_today": 0,
        VELOCITY: nested(dict(found.velocity)),
    }


@dataclass(frozen=True, slots=True)
class WithdrawalRequest:
    """What a withdrawal's rules see: the entity, its chain, the payout account, its day."""

    entity_kind: str  # merchant or agent
    entity_id: str
    agents: Sequence[str]  # a merchant's agent chain, or an agent itself and those above it
    amount: int
    currency: str
    at: float
    payout_account_kind: str
    withdrawn_today: int
    withdrawals_today: int


def withdrawal_facts(
    w: WithdrawalRequest, amount_usd: int | None, features: Iterable[Feature]
) -> dict[str, Any]:
    """A withdrawal's facts, in the payments' shape so every published rule type-checks on
    them: customer facts blank, the merchant's models at 0.0 and the velocity counters the
    rules read at 0 (withdrawals are not counted with payments)."""
    at = datetime.fromtimestamp(w.at, UTC)
    return {
        **BLANK,
        "amount": w.amount,
        "amount_usd": amount_usd,
        "currency": w.currency,
        "merchant": w.entity_id,
        "agents": list(w.agents),
        "hour": at.hour,
        "weekday": at.weekday(),
        "kind": "withdrawal",
        "entity_kind": w.entity_kind,
        "payout_account_kind": w.payout_account_kind,
        "withdrawn_today": w.withdrawn_today,
        "withdrawals_today": w.withdrawals_today,
        VELOCITY: nested(dict.fromkeys(features, 0)),
    }


@lru_cache(maxsize=4096)
def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr, strict=False)


@lru_cache(maxsize=4096)
def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(ip)
    except ValueError:
        return None


def in_cidr(ip: str, cidr: str) -> bool:
    """`in_cidr(ip, "10.0.0.0/8")`: false for an absent or malformed IP; a malformed range is
    an error (the rule records it), found at publish for a literal one."""
    network = _network(cidr)
    address = _address(ip)
    return address is not None and address in network


FUNCTIONS: dict[str, Callable[..., Any]] = {"in_cidr": in_cidr}


def _probe(empty: bool) -> dict[str, Any]:
    counters = {f: 0 if empty else 3 for f in every_feature()}
    return {**(BLANK if empty else FACTS), VELOCITY: nested(counters)}


# An empty payment and a typical one: each rule must evaluate to a bool on both.
PROBES = (_probe(empty=True), _probe(empty=False))


def resolve(facts: Mapping[str, Any], path: str) -> Any:
    value: Any = facts
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value
