"""Prometheus metrics shared by every process.

Under `juhe up` all processes write to one PROMETHEUS_MULTIPROC_DIR, so the gateway's /metrics
shows the whole node; a process run alone (one container each) exports its own registry.
"""

from __future__ import annotations

import functools
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

http_requests = Counter(
    "juhe_http_requests_total", "HTTP requests answered", ["route", "method", "status"]
)
http_latency = Histogram(
    "juhe_http_request_seconds", "HTTP request latency", ["route"], buckets=LATENCY_BUCKETS
)


@functools.lru_cache(maxsize=1024)
def http_series(route: str, method: str, status: int) -> tuple[Counter, Histogram]:
    """A request's two series, looked up once per label set: `labels()` costs more than the
    increment itself on the hot path."""
    return http_requests.labels(route, method, status), http_latency.labels(route)


pool_messages = Counter(
    "juhe_pool_messages_total", "Messages handled by worker pools", ["pool", "outcome"]
)
pool_latency = Histogram(
    "juhe_pool_handle_seconds",
    "Time to handle a message or batch",
    ["pool"],
    buckets=LATENCY_BUCKETS,
)
auth_logins = Counter("juhe_auth_logins_total", "Portal sign-in attempts", ["outcome"])
auth_anomalies = Counter(
    "juhe_auth_anomalies_total", "Sign-ins flagged as anomalous (alert on any)", ["reason"]
)
dead_items = Counter(
    "juhe_dead_items_total",
    "Items set aside for an operator: refused by the database or failing too often",
    ["source"],
)
redriven = Counter(
    "juhe_redriven_total", "Payments and refunds handed back to a pool after their message was lost"
)
relay_entries = Counter("juhe_relay_entries_total", "Stream entries relayed", ["stream"])
webhook_deliveries = Counter(
    "juhe_webhook_deliveries_total", "Webhook delivery attempts", ["outcome"]
)
channel_failovers = Counter(
    "juhe_channel_failovers_total", "Payments moved to their next channel", ["from", "to"]
)
channel_calls = Counter(
    "juhe_channel_calls_total", "Calls to channels", ["channel", "operation", "outcome"]
)
callbacks_refused = Counter(
    "juhe_callbacks_refused_total",
    "Verified channel callbacks not applied: not the named payment's (alert on any), or not "
    "yet confirmed",
    ["channel", "reason"],
)
pool_started = Gauge(
    "juhe_pool_started",
    "1 while a process of the pool is connected and taking work (its services opened)",
    ["pool"],
    multiprocess_mode="livemax",
)
breaker_state = Gauge(
    "juhe_breaker_state",
    "Circuit breaker state (0 closed, 1 half-open, 2 open)",
    ["channel"],
    multiprocess_mode="mostrecent",
)
channel_success_rate = Gauge(
    "juhe_channel_success_rate",
    "Share of a channel's calls that succeeded over the health window",
    ["channel"],
    multiprocess_mode="mostrecent",
)
channel_latency = Gauge(
    "juhe_channel_latency_ms",
    "A channel's call latency over the health window (bucket upper bound)",
    ["channel", "quantile"],
    multiprocess_mode="mostrecent",
)
stream_length = Gauge(
    "juhe_stream_length", "Entries in an intake stream", ["stream"], multiprocess_mode="mostrecent"
)
stream_lag = Gauge(
    "juhe_stream_consumer_lag",
    "Entries not yet delivered to the relay group",
    ["stream"],
    multiprocess_mode="mostrecent",
)
stream_pending = Gauge(
    "juhe_stream_pending",
    "Entries delivered to the relay but not acknowledged",
    ["stream"],
    multiprocess_mode="mostrecent",
)
queue_depth = Gauge(
    "juhe_queue_depth",
    "Messages ready in a RabbitMQ queue",
    ["queue"],
    multiprocess_mode="mostrecent",
)
channel_config_version = Gauge(
    "juhe_channel_config_version",
    "The channel configuration version this process routes with",
    multiprocess_mode="liveall",
)
outbox_backlog = Gauge(
    "juhe_outbox_pending", "Webhook events not yet delivered", multiprocess_mode="mostrecent"
)

risk_decisions = Counter(
    "juhe_risk_decisions_total", "Payments judged by risk, by outcome", ["outcome"]
)
risk_rules = Counter(
    "juhe_risk_rule_results_total",
    "Rules that fired or failed to evaluate, by rule id (a rule far above its usual rate "
    "is worth an alert)",
    ["rule", "result"],
)
risk_rules_version = Gauge(
    "juhe_risk_rules_version",
    "The rule set version this process judges with",
    multiprocess_mode="liveall",
)
risk_channel_anomaly = Gauge(
    "juhe_risk_channel_anomaly_z",
    "A channel's recent decline rate against its usual, in standard deviations (per merchant "
    "the same score is the merchant_decline_z fact, not a metric: one series per merchant)",
    ["channel"],
    multiprocess_mode="mostrecent",
)
review_queue = Gauge(
    "juhe_risk_review_queue",
    "Payments waiting in manual review",
    multiprocess_mode="mostrecent",
)
review_oldest = Gauge(
    "juhe_risk_review_oldest_seconds",
    "Age of the oldest payment waiting in manual review",
    multiprocess_mode="mostrecent",
)


def exposition() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
