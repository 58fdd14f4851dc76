"""Configuration layers (config/settings.py, config/default.toml)."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from config.settings import Settings, load_settings


def test_defaults() -> None:
    settings = load_settings({})
    assert isinstance(settings, Settings)
    assert settings.gateway.port == 8080
    assert settings.gateway.durability == "stream"
    assert settings.gateway.host == "127.0.0.1"
    assert settings.notify.retry_schedule_s[0] == 15
    assert sum(settings.notify.retry_schedule_s) >= 24 * 3600
    assert "sim" in settings.channels
    assert settings.channels["sim"].currencies == []
    assert settings.fees.merchant_bps == 250


def test_defaults_ignore_process_environment_when_given_a_mapping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [n for n in os.environ if n.startswith("JUHE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("JUHE_GATEWAY__PORT", "1234")
    assert load_settings({}).gateway.port == 8080
    assert load_settings().gateway.port == 1234


def test_env_overlay_parses_json_numbers() -> None:
    settings = load_settings({"JUHE_GATEWAY__PORT": "9000"})
    assert settings.gateway.port == 9000
    assert type(settings.gateway.port) is int
    # other keys of the section keep their defaults
    assert settings.gateway.durability == "stream"


def test_env_overlay_text_and_case() -> None:
    settings = load_settings(
        {"JUHE_GATEWAY__DURABILITY": "database", "JUHE_LOGGING__LEVEL": "DEBUG"}
    )
    assert settings.gateway.durability == "database"
    assert settings.logging.level == "DEBUG"


def test_env_overlay_json_list() -> None:
    settings = load_settings({"JUHE_NOTIFY__RETRY_SCHEDULE_S": "[1, 2.5, 3]"})
    assert settings.notify.retry_schedule_s == [1, 2.5, 3]


def test_env_overlay_nested_channel() -> None:
    settings = load_settings(
        {
            "JUHE_CHANNELS__SIM__CURRENCIES": '["USD","EUR"]',
            "JUHE_CHANNELS__SIM__COST_BPS": "90",
        }
    )
    assert settings.channels["sim"].currencies == ["USD", "EUR"]
    assert settings.channels["sim"].cost_bps == 90
    assert settings.channels["sim"].adapter == "simulator"


def test_unrelated_environment_ignored() -> None:
    settings = load_settings({"PATH": "/bin", "JUHE_NOSEPARATOR": "1", "OTHER__X": "2"})
    assert settings == load_settings({})


def test_wrong_type_raises() -> None:
    with pytest.raises(msgspec.ValidationError, match="port"):
        load_settings({"JUHE_GATEWAY__PORT": "abc"})


def test_bad_literal_raises() -> None:
    with pytest.raises(msgspec.ValidationError):
        load_settings({"JUHE_GATEWAY__DURABILITY": "eventually"})


def test_unknown_key_raises() -> None:
    with pytest.raises(msgspec.ValidationError, match="nope"):
        load_settings({"JUHE_GATEWAY__NOPE": "1"})


def test_unknown_section_raises() -> None:
    with pytest.raises(msgspec.ValidationError):
        load_settings({"JUHE_NOSUCH__KEY": "1"})


def test_toml_overlay_file(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.toml"
    overlay.write_text(
        '[gateway]\nport = 7000\ndurability = "replicated"\n\n'
        '[channels.other]\nadapter = "simulator"\nbase_url = "http://x"\napi_key = "k"\n'
        'secret = "s"\ntimeout_ms = 1\nretries = 0\ncost_bps = 0\ncost_fixed_minor = 0\n'
        'currencies = ["JPY"]\n'
    )
    settings = load_settings({"JUHE_CONFIG": str(overlay)})
    assert settings.gateway.port == 7000
    assert settings.gateway.durability == "replicated"
    assert settings.gateway.host == "127.0.0.1"  # merged, not replaced
    assert set(settings.channels) == {"sim", "other"}
    assert settings.channels["other"].currencies == ["JPY"]


def test_env_wins_over_toml_overlay(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.toml"
    overlay.write_text("[gateway]\nport = 7000\n")
    settings = load_settings({"JUHE_CONFIG": str(overlay), "JUHE_GATEWAY__PORT": "9001"})
    assert settings.gateway.port == 9001


def test_toml_overlay_unknown_key_raises(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.toml"
    overlay.write_text("[gateway]\ntypo_key = 1\n")
    with pytest.raises(msgspec.ValidationError):
        load_settings({"JUHE_CONFIG": str(overlay)})


def test_every_currency_has_a_maximum_amount_and_a_bad_one_stops_the_start() -> None:
    settings = load_settings({})
    assert settings.payments.max_amount["USD"] == "1000000.00"
    # a JSON object overrides some currencies and keeps the others
    changed = load_settings({"JUHE_PAYMENTS__MAX_AMOUNT": '{"USD": "5000.00"}'})
    assert changed.payments.max_amount["USD"] == "5000.00"
    assert changed.payments.max_amount["EUR"] == settings.payments.max_amount["EUR"]
    with pytest.raises(msgspec.ValidationError, match="decimal places"):
        load_settings({"JUHE_PAYMENTS__MAX_AMOUNT": '{"USD": "5000.001"}'})


def test_private_webhook_targets_are_refused_unless_a_development_setting_allows_them() -> None:
    assert load_settings({}).notify.allow_private_targets is False
    allowed = load_settings({"JUHE_NOTIFY__ALLOW_PRIVATE_TARGETS": "true"})
    assert allowed.notify.allow_private_targets is True
