"""Platform-wide parameters that admins change at run time (`/api/v1/admin/settings`), validated
here and versioned in the database; every change is audited with its before and after."""

from __future__ import annotations

from typing import Annotated

import msgspec

from domain.credentials import PasswordPolicy


class PlatformSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    password_min_length: Annotated[int, msgspec.Meta(ge=8, le=128)] = 12
    password_min_classes: Annotated[int, msgspec.Meta(ge=1, le=4)] = 3
    # Sign-in throttling (domain.signin), not a lock: failures from one client for one account
    # before its attempts wait, and the longest wait (also how long a failure is remembered).
    lockout_threshold: Annotated[int, msgspec.Meta(ge=3, le=100)] = 5
    lockout_s: Annotated[int, msgspec.Meta(ge=60, le=86_400)] = 900
    mfa_required_for_merchants: bool = False
    mfa_required_for_agents: bool = False

    def mfa_required(self, realm: str, org_requires: bool) -> bool:
        if realm == "platform":
            return True
        if realm == "merchant":
            return org_requires or self.mfa_required_for_merchants
        return org_requires or self.mfa_required_for_agents

    @property
    def password_policy(self) -> PasswordPolicy:
        return PasswordPolicy(
            min_length=self.password_min_length, min_classes=self.password_min_classes
        )
