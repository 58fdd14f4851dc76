"""Platform settings (domain/policy.py): MFA for every realm by default (seed §7.1)."""

from __future__ import annotations

import msgspec
import pytest

from domain.policy import PlatformSettings, stored


@pytest.mark.parametrize("realm", ["platform", "merchant", "agent"])
def test_every_realm_needs_mfa_by_default(realm: str) -> None:
    assert PlatformSettings().mfa_required(realm, org_requires=False)


def test_the_platform_may_relax_mfa_for_merchants_and_agents_but_not_itself() -> None:
    relaxed = PlatformSettings(mfa_required_merchant=False, mfa_required_agent=False)
    assert not relaxed.mfa_required("merchant", org_requires=False)
    assert not relaxed.mfa_required("agent", org_requires=False)
    assert relaxed.mfa_required("platform", org_requires=False)
    assert relaxed.mfa_required("merchant", org_requires=True), "a merchant may still demand it"
    only_agents = PlatformSettings(mfa_required_agent=False)
    assert only_agents.mfa_required("merchant", org_requires=False)


def test_versions_stored_with_the_old_opt_in_settings_require_mfa() -> None:
    """Every change stored the old opt-ins (default false); they are not a relaxation."""
    old = msgspec.to_builtins(PlatformSettings(password_min_length=14))
    old = {k: v for k, v in old.items() if not k.startswith("mfa_")}
    old |= {"mfa_required_for_merchants": False, "mfa_required_for_agents": False}
    settings = stored(old)
    assert settings.password_min_length == 14
    assert settings.mfa_required("merchant", False) and settings.mfa_required("agent", False)
    with pytest.raises(msgspec.ValidationError):
        stored({"no_such_setting": 1})
