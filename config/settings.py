"""One typed place for configuration.

Layers, later wins: the packaged `default.toml`, the TOML file named by `JUHE_CONFIG`, then
environment variables `JUHE_<SECTION>__<KEY>[__<KEY>…]`. A value that parses as JSON is taken as
JSON (numbers, lists, booleans), anything else as text. msgspec validates the result, so a typo in
a key or a wrong type stops the process at start-up instead of misbehaving later.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec
import orjson

from domain.chain import Tolerance
from domain.fees import PriceBps, PriceFixed
from domain.money import check_ceilings
from domain.settlement import check_cycle

DEFAULTS = Path(__file__).with_name("default.toml")


class Base(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    pass


class Node(Base):
    profile: Literal["development", "production"]


class Gateway(Base):
    host: str
    port: int
    processes: int
    public_url: str
    callback_base_url: str
    durability: Literal["stream", "replicated", "database"]
    replicated_min_replicas: int
    replicated_timeout_ms: int
    max_body_bytes: int
    signature_tolerance_s: int
    idempotency_ttl_s: int
    hot_ttl_s: int
    callback_dedupe_ttl_s: int
    merchant_cache_ttl_s: int
    wait_ms_max: int


class Postgres(Base):
    dsn: str
    pool_min: int
    pool_max: int


class Redis(Base):
    url: str
    prefix: str
    max_connections: int


class RabbitMQ(Base):
    url: str
    prefix: str


class Relay(Base):
    batch: int
    block_ms: int
    claim_idle_ms: int


class Pool(Base):
    prefetch: int
    concurrency: int


class Risk(Pool):
    """`ip_country_table`: a `start,end,country` CSV of IP ranges (domain.risk.geo); empty is
    the sample bundled in config/ip_country.csv. `bin_country_table`: a `prefix,country` CSV
    of card BIN prefixes; empty is the sample in config/bin_country.csv. A review nobody
    decides within `review_timeout_s` takes `review_default`."""

    ip_country_table: str = ""
    bin_country_table: str = ""
    review_timeout_s: int = 86_400
    review_default: Literal["approve", "reject"] = "reject"
    # the ops webhook hears of a decision scoring `alert_score` or more, an amount `alert_z`
    # standard deviations from the merchant's usual, a review queue of `alert_review_queue`
    alert_score: int = 150
    alert_z: float = 6.0
    alert_review_queue: int = 100
    # streaming anomaly models (domain.risk.anomaly): the recent and usual EWMA weights, and
    # the z-score (of a decline rate, a new-country share, a rule's fire share) that alerts,
    # once per `anomaly_alert_window_s` per model and subject; rule fire shares are kept per
    # `rule_window_s` window in each risk process
    anomaly_fast_alpha: float = 0.1
    anomaly_slow_alpha: float = 0.01
    anomaly_z: float = 4.0
    anomaly_alert_window_s: int = 3_600
    rule_window_s: int = 60
    volume_window_s: int = 60

    def __post_init__(self) -> None:
        if self.review_timeout_s < 1:
            raise ValueError("risk.review_timeout_s is at least 1")


class Ledger(Base):
    prefetch: int
    batch_size: int
    batch_wait_ms: int


class Notify(Base):
    prefetch: int
    concurrency: int
    timeout_ms: int
    retry_schedule_s: list[float]
    # webhooks to loopback and private addresses: local development only (domain/targets.py)
    allow_private_targets: bool


class Scheduler(Base):
    interval_ms: int
    expire_batch: int
    outbox_grace_s: float
    redrive_after_s: float
    check_every_s: float
    check_for_s: float


class Chain(Base):
    """The chain watcher: how often it polls each crypto channel's node, how many blocks it
    reads per round, how many recent block hashes it keeps to notice a reorg, and the depth
    at which a deposit in each asset counts as paid (0: once its block is the chain's
    `finalized` one or older); a payment paid in full and waiting for that depth is kept from
    expiring for `confirming_grace_s` more. A deposit short or over by at most the larger of
    `tolerance_bps` of the amount due and `tolerance_minor[asset]` still pays it
    (domain.chain.Tolerance). `local_node_port`: where
    `juhe up` runs the development chain (infra.localchain), 0 for none; `local_node_state`:
    the file its state is kept in across restarts, "" for none."""

    poll_ms: int
    blocks_per_round: int
    keep_blocks: int
    confirmations: dict[str, int]
    confirming_grace_s: int
    tolerance_bps: int = 0
    tolerance_minor: dict[str, int] = msgspec.field(default_factory=dict)
    sweep_usdt: bool = False  # move credited USDT deposits into the hot wallet (the signer's)
    local_node_port: int = 0
    local_node_state: str = ""

    def __post_init__(self) -> None:
        if any(n < 0 for n in self.confirmations.values()):
            raise ValueError("chain.confirmations: a depth is a block count, 0 for finalized")
        Tolerance(self.tolerance_bps)  # its own bounds
        if any(n < 0 for n in self.tolerance_minor.values()):
            raise ValueError("chain.tolerance_minor: amounts are non-negative minor units")

    def tolerance(self, asset: str) -> Tolerance:
        return Tolerance(self.tolerance_bps, self.tolerance_minor.get(asset, 0))


class Signer(Base):
    """The hot-wallet signer (`juhe signer`; `juhe up` runs it when `port` is set): the hot
    wallet's private `key` (hex), the deposit account's `deposit_xprv` (sweeps), the bearer
    `token` its clients present, what it may send per
    transfer in each asset's minor units (`limits`: an asset not named is never sent), and the
    token contracts it knows (`tokens`). In production it runs on its own host with its key
    from a secret store, never in the gateway's or the pools' environment."""

    port: int = 0
    host: str = "127.0.0.1"
    key: str = ""
    token: str = ""
    limits: dict[str, int] = msgspec.field(default_factory=dict)
    tokens: dict[str, str] = msgspec.field(default_factory=dict)
    # the deposit account's extended private key (m/44'/60'/a'), whose xpub the crypto
    # channel derives deposit addresses from: for sweeping their tokens into the hot wallet
    deposit_xprv: str = ""


class Reconciliation(Base):
    """When the scheduler reconciles each channel's daily statement by itself."""

    due_after_s: int
    lookback_days: int
    interval_s: float

    def __post_init__(self) -> None:
        if self.due_after_s < 0 or not 1 <= self.lookback_days <= 31 or self.interval_s <= 0:
            raise ValueError("reconciliation: due_after_s ≥ 0, lookback_days 1–31, interval_s > 0")


class Settlement(Base):
    """Defaults for entities without their own cycle, and how often the job runs."""

    merchant_cycle: str
    agent_cycle: str
    interval_s: float
    # a TrueType font with Traditional Chinese glyphs, embedded in PDF statements and reports
    pdf_font: str = "/usr/share/fonts/truetype/arphic-bsmi00lp/bsmi00lp.ttf"

    def __post_init__(self) -> None:
        check_cycle(self.merchant_cycle)
        check_cycle(self.agent_cycle)


class Withdrawals(Base):
    """Rules for entities without their own (per currency, major units; a currency not named
    has a minimum of one minor unit, no fixed fee, no daily limit and no approval), the channel
    payouts go through (`channels` per currency, else `channel`), and when the scheduler hands
    a stuck withdrawal back to it."""

    channel: str
    min_amount: dict[str, str]
    fee_fixed: dict[str, str]
    fee_bps: int
    daily_limit: dict[str, str]
    approval_above: dict[str, str]
    redrive_after_s: float
    channels: dict[str, str] = msgspec.field(default_factory=dict)  # per currency, over `channel`

    def channel_for(self, currency: str) -> str:
        """The channel a withdrawal in `currency` is paid out through (a crypto currency's own
        chain, say)."""
        return self.channels.get(currency, self.channel)


class Payments(Base):
    default_expires_in_s: int
    max_expires_in_s: int
    max_amount: dict[str, str]  # per currency, in major units

    def __post_init__(self) -> None:
        check_ceilings(self.max_amount)


class Routing(Base):
    max_failover: int
    health_window_s: int
    min_samples: int
    explore_share: float


class Breaker(Base):
    failure_threshold: int
    window_s: float
    open_s: float


class Simulator(Base):
    host: str
    port: int
    pay_delay_ms: int
    latency_ms: int
    timeout_delay_ms: int
    state_file: str  # where the state is kept across a clean restart; "" keeps none
    # by merchant account (api_key); an account not named is an e-wallet
    personalities: dict[str, Literal["card", "ewallet", "bank_transfer"]] = {}


class Channel(Base):
    adapter: str
    base_url: str
    api_key: str
    secret: str
    timeout_ms: int
    retries: int
    cost_bps: int
    cost_fixed_minor: int
    currencies: list[str] = []  # empty: every supported currency
    methods: list[str] = []  # empty: every method
    min_amount_minor: int = 0
    max_amount_minor: int | None = None
    priority: int = 100  # lower is tried first
    weight: int = 1  # share of traffic under a weighted rule


class Fees(Base):
    merchant_bps: PriceBps
    merchant_fixed_minor: PriceFixed


class Supervisor(Base):
    restart_backoff_ms: int
    metrics_port_base: int


class Logging(Base):
    level: str


class Auth(Base):
    issuer: str
    access_ttl_s: int
    refresh_ttl_s: int
    key_cache_s: int
    login_limit_per_account: int
    login_limit_per_ip: int
    login_window_s: int
    failure_burst: int
    recovery_codes: int
    country_header: str


class Fx(Base):
    provider: Literal["static", "simulated"]
    spread_bps: int
    quote_ttl_s: int
    cache_ttl_s: int
    stale_s: int
    drift_bps: int
    rates: dict[str, str]


class Alerts(Base):
    ops_webhook_url: str
    timeout_ms: int


class Secrets(Base):
    keys: dict[str, str]
    active: str


class Settings(Base):
    node: Node
    gateway: Gateway
    postgres: Postgres
    redis: Redis
    rabbitmq: RabbitMQ
    relay: Relay
    risk: Risk
    channel: Pool
    ledger: Ledger
    notify: Notify
    scheduler: Scheduler
    settlement: Settlement
    reconciliation: Reconciliation
    withdrawals: Withdrawals
    payments: Payments
    breaker: Breaker
    routing: Routing
    simulator: Simulator
    channels: dict[str, Channel]
    fees: Fees
    supervisor: Supervisor
    logging: Logging
    auth: Auth
    secrets: Secrets
    alerts: Alerts
    fx: Fx
    chain: Chain
    signer: Signer = msgspec.field(default_factory=Signer)


def _merge(into: dict[str, Any], overlay: dict[str, Any]) -> None:
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _env_overlay(environ: dict[str, str]) -> dict[str, Any]:
    overlay: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith("JUHE_") or "__" not in name:
            continue
        path = [part.lower() for part in name[len("JUHE_") :].split("__")]
        try:
            value: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            value = raw
        node = overlay
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return overlay


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if environ is None else environ)
    data = tomllib.loads(DEFAULTS.read_text())
    if overlay_file := env.get("JUHE_CONFIG"):
        _merge(data, tomllib.loads(Path(overlay_file).read_text()))
    _merge(data, _env_overlay(env))
    return msgspec.convert(data, Settings)
