"""Secrets published in the repository (config/published.py) and the start-up check that
refuses them outside development (cli/main.py)."""

from __future__ import annotations

import base64
import os

import pytest

from cli.main import check_settings
from config.published import packaged, published_credentials, published_settings, refusal
from config.settings import load_settings

OWN_KEY = base64.b64encode(os.urandom(32)).decode()
OWN = {
    "JUHE_SECRETS__KEYS__LOCAL1": OWN_KEY,
    "JUHE_CHANNELS__SIM__API_KEY": "sim_live_own",
    "JUHE_CHANNELS__SIM__SECRET": "sim_live_secret_own",
}
DEFAULT_SIM = load_settings({}).channels["sim"]
DEFAULT_KEY = load_settings({}).secrets.keys["local1"]


def test_the_packaged_secrets_are_published() -> None:
    assert {DEFAULT_SIM.api_key, DEFAULT_SIM.secret, DEFAULT_KEY} <= packaged()


def test_the_defaults_use_published_secrets_and_production_is_the_default() -> None:
    settings = load_settings({})
    assert settings.node.profile == "production"
    assert published_settings(settings, packaged()) == [
        "channels.sim.api_key",
        "channels.sim.secret",
        "secrets.keys.local1",
    ]


def test_own_values_pass() -> None:
    assert published_settings(load_settings(OWN), packaged()) == []


def test_published_values_are_found_under_any_name() -> None:
    settings = load_settings(
        {
            **OWN,
            "JUHE_SECRETS__KEYS__PROD": DEFAULT_KEY,
            "JUHE_SECRETS__ACTIVE": "prod",
            "JUHE_CHANNELS__OTHER__ADAPTER": "simulator",
            "JUHE_CHANNELS__OTHER__BASE_URL": "http://127.0.0.1:1",
            "JUHE_CHANNELS__OTHER__API_KEY": "own_other",
            "JUHE_CHANNELS__OTHER__SECRET": DEFAULT_SIM.secret,
            "JUHE_CHANNELS__OTHER__TIMEOUT_MS": "1000",
            "JUHE_CHANNELS__OTHER__RETRIES": "1",
            "JUHE_CHANNELS__OTHER__COST_BPS": "0",
            "JUHE_CHANNELS__OTHER__COST_FIXED_MINOR": "0",
        }
    )
    assert published_settings(settings, packaged()) == [
        "channels.other.secret",
        "secrets.keys.prod",
    ]


def test_stored_credentials_are_checked_by_value() -> None:
    stored = {
        "sim": {"api_key": DEFAULT_SIM.api_key, "secret": "own"},
        "cards": {"secret_key": "sk_live_own", "webhook_secret": DEFAULT_SIM.secret},
    }
    assert published_credentials(stored, packaged()) == [
        "channel cards credential webhook_secret",
        "channel sim credential api_key",
    ]


def test_the_refusal_names_each_setting_and_no_value() -> None:
    message = refusal(published_settings(load_settings({}), packaged()))
    for name in ("channels.sim.api_key", "channels.sim.secret", "secrets.keys.local1"):
        assert f"  - {name}\n" in message
    for value in packaged():
        assert value not in message


def test_production_refuses_published_settings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        check_settings(load_settings({}))
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "secrets.keys.local1" in error and DEFAULT_KEY not in error


def test_development_allows_them_and_production_takes_own_values() -> None:
    check_settings(load_settings({"JUHE_NODE__PROFILE": "development"}))
    check_settings(load_settings(OWN))


def test_the_development_overlay_selects_development() -> None:
    from config.published import PACKAGED

    settings = load_settings({"JUHE_CONFIG": str(PACKAGED / "dev.toml")})
    assert settings.node.profile == "development"


def test_the_development_signer_key_and_token_are_published() -> None:
    dev = load_settings({"JUHE_CONFIG": "config/dev.toml"})
    assert {dev.signer.key, dev.signer.token} <= packaged()
    copied = load_settings(
        {**OWN, "JUHE_SIGNER__KEY": dev.signer.key, "JUHE_SIGNER__TOKEN": dev.signer.token}
    )
    assert published_settings(copied, packaged()) == ["signer.key", "signer.token"]
