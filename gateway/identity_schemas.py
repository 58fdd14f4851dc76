"""Request and response shapes of the sign-in and admin endpoints (the OpenAPI document is
generated from these, as from `gateway.schemas`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

Email = Annotated[str, Meta(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
Secret = Annotated[str, Meta(min_length=1, max_length=1024)]
RealmName = Literal["platform", "merchant", "agent"]
Permission = Annotated[str, Meta(pattern=r"^[a-z_]+:[a-z_]+$", max_length=64)]


class Login(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: Secret
    totp: Annotated[str, Meta(max_length=32)] | None = None  # a TOTP code or a recovery code
    # the portal's device id: a hash of stable browser signals (kept only as a digest); a new
    # one on an account that has others asks for MFA
    device: Annotated[str, Meta(min_length=8, max_length=128)] | None = None


class Refresh(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: Secret


class Logout(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: Secret | None = None


class MfaCode(msgspec.Struct, forbid_unknown_fields=True):
    code: Annotated[str, Meta(min_length=6, max_length=6, pattern=r"^[0-9]{6}$")]


class Session(msgspec.Struct):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    refresh_token: str
    mfa: bool
    mfa_enrolment_required: bool


class MfaEnrolment(msgspec.Struct):
    secret: str
    provisioning_uri: str
    recovery_codes: list[str]


class UserView(msgspec.Struct):
    id: str
    object: Literal["user"]
    email: str
    realm: RealmName
    org_id: str | None
    status: Literal["active", "disabled"]
    roles: list[str]
    mfa_enabled: bool


class Me(msgspec.Struct):
    user: UserView
    permissions: list[str]
    mfa: bool
    mfa_required: bool


class CreateUser(msgspec.Struct, forbid_unknown_fields=True):
    email: Email
    password: Secret
    realm: RealmName
    org_id: Annotated[str, Meta(max_length=64)] | None = None
    roles: list[Annotated[str, Meta(max_length=64)]] = []


class AssignRoles(msgspec.Struct, forbid_unknown_fields=True):
    roles: list[Annotated[str, Meta(max_length=64)]]


class PutRole(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=100)]
    realm: RealmName
    permissions: list[Permission]


class RoleView(msgspec.Struct):
    id: str
    object: Literal["role"]
    realm: RealmName
    name: str
    permissions: list[str]
    builtin: bool
    version: int


class SettingsView(msgspec.Struct):
    object: Literal["settings"]
    version: int
    settings: dict[str, Any]


class PutSettings(msgspec.Struct, forbid_unknown_fields=True):
    version: int  # the version being changed: a stale one is refused with 409
    settings: dict[str, Any]


class CreateApiKey(msgspec.Struct, forbid_unknown_fields=True):
    permissions: list[Permission] | None = None


class ApiKeyCreated(msgspec.Struct):
    key_id: str
    object: Literal["api_key"]
    merchant_id: str
    secret: str
    permissions: list[str] | None
