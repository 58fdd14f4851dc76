"""Redis key names, all under one prefix so tests and deployments never collide.

Streams carry a hash tag (`{…}`) so that on Redis Cluster each stream and its consumer group
stay on one slot.
"""

from __future__ import annotations

from dataclasses import dataclass

PAYMENTS_STREAM = "payments"
REFUNDS_STREAM = "refunds"
CALLBACKS_STREAM = "callbacks"
# work the gateway hands straight to a channel pool: a customer's card, an order to cancel
TASKS_STREAM = "tasks"
STREAMS = (PAYMENTS_STREAM, REFUNDS_STREAM, CALLBACKS_STREAM, TASKS_STREAM)
RELAY_GROUP = "relay"


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str

    def stream(self, name: str) -> str:
        return f"{self.prefix}:{{intake:{name}}}"

    def payment(self, payment_id: str) -> str:
        return f"{self.prefix}:pay:{payment_id}"

    def refund(self, refund_id: str) -> str:
        return f"{self.prefix}:refund:{refund_id}"

    def idempotency(self, merchant_id: str, key: str) -> str:
        return f"{self.prefix}:idem:{merchant_id}:{key}"

    def signed_request(self, key_id: str, digest: str) -> str:
        """A signed request that changed something, kept while its timestamp is valid."""
        return f"{self.prefix}:signed:{key_id}:{digest}"

    def merchant_order(self, merchant_id: str, order_id: str) -> str:
        return f"{self.prefix}:order:{merchant_id}:{order_id}"

    def callback_seen(self, channel: str, event_id: str) -> str:
        return f"{self.prefix}:cb:{channel}:{event_id}"

    def task_sent(self, token: str) -> str:
        return f"{self.prefix}:task:{token}"

    def velocity(self, dimension: str, digest: str) -> str:
        """One IP's, e-mail's, device's… payments of the last 24 h (infra.velocity)."""
        return f"{self.prefix}:risk:v:{dimension}:{digest}"

    def velocity_aggregates(self, dimension: str, digest: str) -> str:
        """The running sums and distinct counts over that key's windows (infra.velocity)."""
        return f"{self.prefix}:risk:va:{dimension}:{digest}"

    def usual_amount(self, merchant_id: str) -> str:
        """A merchant's usual payment amount (infra.velocity): EWMA mean and variance."""
        return f"{self.prefix}:risk:usual:{merchant_id}"

    def anomaly(self, model: str, subject: str) -> str:
        """One streaming model's state (infra.anomaly): a merchant's or a channel's id."""
        return f"{self.prefix}:risk:anomaly:{model}:{subject}"

    def countries_seen(self, merchant_id: str) -> str:
        """The countries a merchant's customers paid from (the new-country model)."""
        return f"{self.prefix}:risk:countries:{merchant_id}"

    def rule_fires(self, window: int) -> str:
        """How often each rule fired in one wall-clock window, and `_judged` (infra.anomaly)."""
        return f"{self.prefix}:risk:rules:fires:{window}"

    def rule_window_closed(self, window: int) -> str:
        """Set by the one process that closed that window."""
        return f"{self.prefix}:risk:rules:closed:{window}"

    def rule_usual(self) -> str:
        """Each rule's usual fire share (domain.risk.anomaly.RuleWindow), one field a rule."""
        return f"{self.prefix}:risk:rules:usual"

    def alerted(self, kind: str) -> str:
        """Set while an alert of this kind was sent lately (once per period, not per tick)."""
        return f"{self.prefix}:alerted:{kind}"

    def breaker(self, channel: str) -> str:
        return f"{self.prefix}:breaker:{channel}"

    def invalidations(self) -> str:
        return f"{self.prefix}:invalidate"

    def fx_quote(self, quote_id: str) -> str:
        return f"{self.prefix}:fxq:{quote_id}"

    def channel_volume(self, channel: str, day: str) -> str:
        return f"{self.prefix}:volume:{channel}:{day}"

    def channel_health(self, channel: str, slot: int) -> str:
        return f"{self.prefix}:health:{channel}:{slot}"

    def progress(self, queue: str) -> str:
        return f"{self.prefix}:progress:{queue}"
