"""The node the integration tests run against: `benchmarks.node.LocalNode` with settings that
make the lifecycle fast to observe (short pay delay, retry schedule and sweeps)."""

from __future__ import annotations

from collections.abc import Mapping

from benchmarks.node import LocalNode, free_port

TEST_SETTINGS = {
    "JUHE_SUPERVISOR__RESTART_BACKOFF_MS": "100",
    "JUHE_SIMULATOR__PAY_DELAY_MS": "150",
    "JUHE_SIMULATOR__TIMEOUT_DELAY_MS": "1500",
    "JUHE_CHANNELS__SIM__TIMEOUT_MS": "500",
    "JUHE_CHANNELS__SIM__RETRIES": "2",
    "JUHE_NOTIFY__RETRY_SCHEDULE_S": "[0.3, 0.6]",
    "JUHE_NOTIFY__TIMEOUT_MS": "2000",
    "JUHE_SCHEDULER__INTERVAL_MS": "200",
    "JUHE_SCHEDULER__OUTBOX_GRACE_S": "2",
    "JUHE_SCHEDULER__REDRIVE_AFTER_S": "4",
    "JUHE_SCHEDULER__CHECK_EVERY_S": "1",
    # tests drive the settlement job with their own clock (infra.settlement.run)
    "JUHE_SETTLEMENT__INTERVAL_S": "3600",
    "JUHE_RELAY__CLAIM_IDLE_MS": "3000",
    "JUHE_BREAKER__FAILURE_THRESHOLD": "100000",
    # two test files run at once, each with its node of ten processes, on one PostgreSQL
    # (max_connections 100): a process holds one connection idle and at most four
    "JUHE_POSTGRES__POOL_MIN": "1",
    "JUHE_POSTGRES__POOL_MAX": "4",
    # every test signs in from 127.0.0.1: the per-IP limit is tested on its own
    "JUHE_AUTH__LOGIN_LIMIT_PER_IP": "1000000",
    "JUHE_AUTH__COUNTRY_HEADER": "X-Test-Country",
    "JUHE_AUTH__KEY_CACHE_S": "1",
    "JUHE_GATEWAY__MERCHANT_CACHE_TTL_S": "1",
    # A second simulated channel, tried after `sim`: where payments fail over to.
    "JUHE_CHANNELS__SIM_B__ADAPTER": "simulator",
    "JUHE_CHANNELS__SIM_B__BASE_URL": "{simulator_url}",
    "JUHE_CHANNELS__SIM_B__API_KEY": "sim_b_key",
    "JUHE_CHANNELS__SIM_B__SECRET": "sim_b_secret",
    "JUHE_CHANNELS__SIM_B__TIMEOUT_MS": "500",
    "JUHE_CHANNELS__SIM_B__RETRIES": "2",
    "JUHE_CHANNELS__SIM_B__COST_BPS": "150",
    "JUHE_CHANNELS__SIM_B__COST_FIXED_MINOR": "0",
    "JUHE_CHANNELS__SIM_B__PRIORITY": "200",
    "JUHE_SIMULATOR__PERSONALITIES": '{"sim_b_key": "bank_transfer"}',
}


class Stack(LocalNode):
    def __init__(self, name: str, overrides: Mapping[str, str] | None = None) -> None:
        super().__init__(name, {**TEST_SETTINGS, **(overrides or {})})


__all__ = ["Stack", "free_port"]
