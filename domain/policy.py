"""Platform-wide parameters that admins change at run time (`/api/v1/admin/settings`), validated
here and versioned in the database; every change is audited with its before and after."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from domain.credentials import PasswordPolicy


class PlatformSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    password_min_length: Annotated[int, msgspec.Meta(ge=8, le=128)] = 12
    password_min_classes: Annotated[int, msgspec.Meta(ge=1, le=4)] = 3
    # Sign-in throttling (domain.signin), not a lock: failures from one client for one account
    # before its attempts wait, and the longest wait (also how long a failure is remembered).
    lockout_threshold: Annotated[int, msgspec.Meta(ge=3, le=100)] = 5
    lockout_s: Annotated[int, msgspec.Meta(ge=60, le=86_400)] = 900
    # Seed §7.1: every realm signs in with MFA. The platform may relax it for merchants' or
    # agents' users (audited like every setting); platform users always need it.
    mfa_required_merchant: bool = True
    mfa_required_agent: bool = True
    # Whether what an agent opens (a sub-agent, a merchant) is active at once, without review.
    agent_opens_active: bool = False

    def mfa_required(self, realm: str, org_requires: bool) -> bool:
        """`org_requires`: the user's merchant demands MFA of its users even where the
        platform relaxed it."""
        if realm == "merchant":
            return org_requires or self.mfa_required_merchant
        if realm == "agent":
            return org_requires or self.mfa_required_agent
        return True

    @property
    def password_policy(self) -> PasswordPolicy:
        return PasswordPolicy(
            min_length=self.password_min_length, min_classes=self.password_min_classes
        )


# Settings that no longer exist, dropped when a version that has them is read: MFA for
# merchants' and agents' users was opt-in (default off, stored as false by every change); it
# is now required unless relaxed by `mfa_required_merchant` / `mfa_required_agent`.
_RETIRED = ("mfa_required_for_merchants", "mfa_required_for_agents")


def stored(doc: dict[str, Any]) -> PlatformSettings:
    """A version as stored, whichever settings existed when it was written."""
    return msgspec.convert({k: v for k, v in doc.items() if k not in _RETIRED}, PlatformSettings)
