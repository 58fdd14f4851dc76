"""Which payments the risk pool converts: only those no channel takes as they are."""

from __future__ import annotations

from types import SimpleNamespace

from redis.asyncio import Redis

from config import load_settings
from infra.channels import spec_from_config
from infra.keys import Keys
from workers.risk import RiskActor


def actor(overrides: dict[str, str]) -> RiskActor:
    settings = load_settings(overrides)
    specs = [spec_from_config(code, ch) for code, ch in settings.channels.items()]
    channels = SimpleNamespace(version=1, enabled=specs)
    ctx = SimpleNamespace(
        settings=settings, redis=Redis(), keys=Keys("t"), pg=None, channels=channels, box=None
    )
    return RiskActor(ctx)  # type: ignore[arg-type]


def test_a_currency_some_channel_takes_is_never_converted() -> None:
    usd_only = actor({"JUHE_CHANNELS__SIM__CURRENCIES": '["USD"]'})
    assert usd_only.takes("USD")
    assert not usd_only.takes("EUR")
    assert usd_only.charge_currencies == ["USD"]
    assert actor({}).takes("EUR"), "a channel without a currency list takes every currency"
