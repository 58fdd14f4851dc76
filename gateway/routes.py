"""Every HTTP route in one table. The router, the query-string check and the OpenAPI document
are all made from it, so a route cannot exist without being documented, and a query parameter
the document does not name is refused (`400 unknown_parameter`) rather than silently ignored.

Answers and bodies are msgspec structs where the handler uses one, else a JSON Schema given
here (`gateway.openapi` renders both).
"""

from __future__ import annotations

import re
import types
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from domain.fees import MAX_PRICE_BPS, MAX_PRICE_FIXED
from domain.money import CURRENCIES
from domain.states import PaymentStatus, RefundStatus
from domain.withdrawals import WithdrawalStatus
from gateway import (
    admin,
    agents,
    callbacks,
    cashier,
    channels,
    events,
    fx,
    merchants,
    ops,
    payments,
    reconciliation,
    refunds,
    reports,
    reviews,
    risk,
    sessions,
    settlements,
    withdrawals,
)
from gateway import agent_schemas as ags
from gateway import channel_schemas as chs
from gateway import identity_schemas as ids
from gateway import merchant_schemas as mss
from gateway import reconciliation_schemas as rcs
from gateway import report_schemas as rps
from gateway import risk_schemas as rks
from gateway import settlement_schemas as sts
from gateway import withdrawal_schemas as wds
from gateway.errors import invalid
from gateway.schemas import CreatePayment, CreateRefund, Payment, PaymentList, Refund

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# signed: a merchant's signed request or a portal user's bearer token; bearer: portal users
# only; none: anyone (sign-in, registration, the cashier); channel: verified by its adapter
Auth = Literal["signed", "bearer", "none", "channel"]
Schema = type | types.UnionType | dict[str, Any]


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    schema: Mapping[str, Any]
    description: str = ""

    def check(self, raw: str) -> None:
        """A value of the documented type, or the documented 400 naming the parameter."""
        kind = self.schema.get("type")
        if kind == "integer":
            try:
                value = int(raw)
            except ValueError:
                raise invalid(
                    "invalid_field", f"{self.name} must be an integer", self.name
                ) from None
            low, high = self.schema.get("minimum"), self.schema.get("maximum")
            if (low is not None and value < low) or (high is not None and value > high):
                raise invalid(
                    "invalid_field", f"{self.name} must be between {low} and {high}", self.name
                )
        elif (allowed := self.schema.get("enum")) is not None and raw not in allowed:
            raise invalid(
                "invalid_field", f"{self.name} must be one of {', '.join(allowed)}", self.name
            )
        elif len(raw) > self.schema.get("maxLength", 255):
            raise invalid("invalid_field", f"{self.name} is too long", self.name)
        elif (pattern := self.schema.get("pattern")) and not re.search(pattern, raw):
            raise invalid("invalid_field", f"{self.name} is not of the documented form", self.name)


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    operation_id: str
    summary: str
    auth: Auth
    status: int = 200
    answer: Schema | None = None  # None: no JSON body (or not JSON)
    body: Schema | None = None
    query: tuple[Param, ...] = ()
    idempotent: bool = False  # takes an Idempotency-Key
    errors: tuple[int, ...] = (400, 401, 403, 404, 429)
    content_type: str = "application/json"
    tag: str = "payments"
    description: str = ""

    def check_query(self, query: Mapping[str, str]) -> None:
        known = {p.name: p for p in self.query}
        for name, raw in query.items():
            param = known.get(name)
            if param is None:
                raise invalid("unknown_parameter", f"unknown query parameter {name!r}", name)
            param.check(raw)


# --- query parameters shared by lists -------------------------------------------------------

_MAX_TS = 253_402_300_799  # 9999-12-31, what PostgreSQL and Python both hold
LIMIT = Param("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "page size (1–100)")
AFTER = Param(
    "starting_after",
    {"type": "string", "maxLength": 64},
    "cursor: the id of the last item of the previous page (400 `invalid_cursor` if unknown)",
)
SINCE = Param("since", {"type": "integer", "minimum": 0, "maximum": _MAX_TS}, "unix seconds, from")
UNTIL = Param("until", {"type": "integer", "minimum": 0, "maximum": _MAX_TS}, "unix seconds, to")
CSV = Param("format", {"type": "string", "enum": ["json", "csv"]}, "csv: the whole selection")
EXPORT = Param(
    "format",
    {"type": "string", "enum": ["json", "csv", "pdf"]},
    "csv: the whole selection; pdf: a document in Traditional Chinese and English",
)
CURRENCY = Param("currency", {"type": "string", "pattern": "^[A-Z]{3,5}$", "maxLength": 5})
MERCHANT = Param(
    "merchant_id", {"type": "string", "maxLength": 64}, "whose (platform users; required)"
)
PAYMENT_STATUS = Param("status", {"type": "string", "enum": [s.value for s in PaymentStatus]})
REFUND_STATUS = Param("status", {"type": "string", "enum": [s.value for s in RefundStatus]})
REVIEW_STATUS = Param(
    "status",
    {
        "type": "string",
        "enum": ["submitted", "under_review", "approved", "active", "rejected", "suspended"],
    },
)
ENTITY = Param(
    "entity", {"type": "string", "maxLength": 64}, "a merchant or agent id (platform users)"
)
REPORT_CURRENCY = Param("currency", {"type": "string", "enum": sorted(CURRENCIES)})
DAY_PATTERN = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
RISK_LIST = Param("list", {"type": "string", "enum": ["block", "allow"]})
RISK_KIND = Param(
    "kind",
    {
        "type": "string",
        "enum": ["ip", "email", "domain", "device", "card", "bin", "country", "customer"],
    },
)
SEARCH = Param("q", {"type": "string", "maxLength": 100}, "name or e-mail contains")
PAGE = (LIMIT, AFTER)
# Said on every operation that changes money terms.
PRICING = (
    f"Money terms are set by the platform, or by an agent above with `set_rates` (else 403 "
    f"`grant_missing`); bps at most {MAX_PRICE_BPS} (20 %), fixed parts at most "
    f"{MAX_PRICE_FIXED} minor units."
)


def obj(object_name: str | None = None, **properties: Any) -> dict[str, Any]:
    """An object schema naming its usual fields (more may appear)."""
    props = dict(properties)
    if object_name:
        props["object"] = {"const": object_name}
    return {"type": "object", "properties": props, "required": ["object"] if object_name else []}


def list_of(item: Schema) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": item},
            "has_more": {"type": "boolean"},
        },
        "required": ["object", "data", "has_more"],
    }


STR = {"type": "string"}
NSTR = {"type": ["string", "null"]}
INT = {"type": "integer"}
NINT = {"type": ["integer", "null"]}
BOOL = {"type": "boolean"}
ANY_OBJ = {"type": "object"}

MERCHANT_VIEW = obj(
    "merchant",
    id=STR,
    name=STR,
    email=NSTR,
    status=STR,
    agent_id=NSTR,
    currencies={"type": "array", "items": STR},
    fee_bps=INT,
    fee_fixed_minor=INT,
    notify_url=NSTR,
    return_url=NSTR,
    config=ANY_OBJ,
    kyc={"type": ["object", "null"]},
    created=INT,
)
KEY_VIEW = obj(
    "api_key",
    key_id=STR,
    merchant_id=STR,
    permissions={"type": ["array", "null"], "items": STR},
    created=NINT,
    last_used=NINT,
    expires_at=NINT,
    revoked_at=NINT,
)
ATTEMPT = obj("payment_attempt", attempt=INT, channel=STR, outcome=STR, failure_code=NSTR, at=INT)
FX_QUOTE = obj(
    "fx_quote",
    id=STR,
    amount=STR,
    currency=STR,
    to_currency=STR,
    converted_amount=STR,
    rate=STR,
    mid_rate=STR,
    spread_bps=INT,
    expires_at=INT,
)
EVENT = obj(
    "event", id=STR, type=STR, created=INT, data=ANY_OBJ, status=STR, attempts=INT, delivered=NINT
)
AUDIT_RECORD = obj(None, seq=INT, action=STR, actor=STR, target=NSTR, hash=STR, prev_hash=STR)
COMMISSIONS = {
    "type": "object",
    "properties": {
        "object": {"const": "list"},
        "data": {"type": "array", "items": ANY_OBJ},
        "totals": ANY_OBJ,
    },
    "required": ["object", "data"],
}
HEALTH = obj(None, status=STR)
READY = obj(None, ready=BOOL, checks=ANY_OBJ)
RESENT = obj("event", id=STR, type=STR, status=STR)
CARD = obj("card_submission", payment_id=STR)
PRICED = obj("merchant", id=STR, fee_bps=INT, fee_fixed_minor=INT)
OPENED = obj("merchant", agent_id=STR)
VERIFIED = obj(None, ok=BOOL)
CHANNELS = obj("list", data={"type": "array", "items": {"$ref": "ChannelView"}})

ROUTES: tuple[Route, ...] = (
    # --- payments, refunds, events: merchants' signed API -----------------------------------
    Route(
        "POST",
        "/api/v1/payments",
        payments.create_payment,
        "createPayment",
        "Create a payment",
        "signed",
        201,
        Payment,
        CreatePayment,
        (Param("wait_ms", {"type": "integer", "minimum": 0, "maximum": 10_000}),),
        idempotent=True,
        errors=(400, 401, 403, 409, 429, 503),
    ),
    Route(
        "GET",
        "/api/v1/payments",
        payments.list_payments,
        "listPayments",
        "List payments (newest first), or find one by merchant_order_id",
        "signed",
        200,
        PaymentList,
        query=(*PAGE, PAYMENT_STATUS, MERCHANT, Param("merchant_order_id", {"type": "string"})),
    ),
    Route(
        "GET",
        "/api/v1/payments/{id}",
        payments.get_payment,
        "getPayment",
        "Retrieve a payment",
        "signed",
        200,
        Payment,
    ),
    Route(
        "POST",
        "/api/v1/payments/{id}/cancel",
        payments.cancel_payment,
        "cancelPayment",
        "Cancel an unpaid payment",
        "signed",
        200,
        Payment,
        idempotent=True,
        errors=(400, 401, 403, 404, 409, 429),
    ),
    Route(
        "GET",
        "/api/v1/payments/{id}/attempts",
        payments.payment_attempts,
        "listPaymentAttempts",
        "The channels a payment was tried at, in order",
        "signed",
        200,
        list_of(ATTEMPT),
    ),
    Route(
        "POST",
        "/api/v1/payments/callback/{channel}",
        callbacks.channel_callback,
        "channelCallback",
        "Channel callback (signed by the channel, verified by its adapter)",
        "channel",
        200,
        None,
        errors=(400, 401, 404),
        content_type="text/plain",
        tag="channels",
    ),
    Route(
        "POST",
        "/api/v1/refunds",
        refunds.create_refund,
        "createRefund",
        "Refund a payment, fully or partly",
        "signed",
        201,
        Refund,
        CreateRefund,
        idempotent=True,
        errors=(400, 401, 403, 404, 409, 429, 503),
    ),
    Route(
        "GET",
        "/api/v1/refunds",
        refunds.list_refunds,
        "listRefunds",
        "List refunds (newest first)",
        "signed",
        200,
        list_of({"$ref": "Refund"}),
        query=(*PAGE, REFUND_STATUS, MERCHANT, Param("payment_id", {"type": "string"})),
    ),
    Route(
        "GET",
        "/api/v1/refunds/{id}",
        refunds.get_refund,
        "getRefund",
        "Retrieve a refund",
        "signed",
        200,
        Refund,
    ),
    Route(
        "GET",
        "/api/v1/events",
        events.list_events,
        "listEvents",
        "Webhook events (newest first), with their delivery status",
        "signed",
        200,
        list_of(EVENT),
        query=(
            *PAGE,
            MERCHANT,
            Param("type", {"type": "string", "maxLength": 64}),
            Param("status", {"type": "string", "enum": ["pending", "delivered", "dead"]}),
        ),
    ),
    Route(
        "GET",
        "/api/v1/events/{id}",
        events.get_event,
        "getEvent",
        "A webhook event, as sent, with its delivery status",
        "signed",
        200,
        EVENT,
    ),
    Route(
        "POST",
        "/api/v1/events/{id}/resend",
        events.resend_event,
        "resendEvent",
        "Send a webhook event again (dead-lettered or not), with a fresh retry schedule",
        "signed",
        202,
        RESENT,
    ),
    Route(
        "POST",
        "/api/v1/fx/quotes",
        fx.create_quote,
        "createFxQuote",
        "Quote and lock a conversion",
        "signed",
        201,
        FX_QUOTE,
        fx.CreateQuote,
        errors=(400, 401, 403, 429, 503),
    ),
    Route(
        "GET",
        "/api/v1/fx/quotes/{id}",
        fx.get_quote,
        "getFxQuote",
        "Retrieve a quote while it is locked",
        "signed",
        200,
        FX_QUOTE,
    ),
    # --- portal users ------------------------------------------------------------------------
    Route(
        "POST",
        "/api/v1/auth/login",
        sessions.login,
        "login",
        "Sign in (with `totp` when MFA applies)",
        "none",
        200,
        ids.Session,
        ids.Login,
        tag="identity",
    ),
    Route(
        "POST",
        "/api/v1/auth/refresh",
        sessions.refresh,
        "refreshSession",
        "Rotate a refresh token",
        "none",
        200,
        ids.Session,
        ids.Refresh,
        tag="identity",
    ),
    Route(
        "POST",
        "/api/v1/auth/logout",
        sessions.logout,
        "logout",
        "End the session",
        "bearer",
        204,
        None,
        ids.Logout,
        tag="identity",
    ),
    Route(
        "POST",
        "/api/v1/auth/mfa/enroll",
        sessions.mfa_enroll,
        "enrollMfa",
        "Start TOTP enrolment",
        "bearer",
        200,
        ids.MfaEnrolment,
        tag="identity",
    ),
    Route(
        "POST",
        "/api/v1/auth/mfa/verify",
        sessions.mfa_verify,
        "verifyMfa",
        "Confirm enrolment; a new session that passed MFA",
        "bearer",
        200,
        ids.Session,
        ids.MfaCode,
        tag="identity",
    ),
    Route(
        "GET",
        "/api/v1/auth/me",
        sessions.me,
        "getMe",
        "The signed-in user",
        "bearer",
        200,
        ids.Me,
        tag="identity",
    ),
    Route(
        "GET",
        "/api/v1/admin/users",
        admin.list_users,
        "listUsers",
        "List users",
        "bearer",
        200,
        list_of({"$ref": "UserView"}),
        query=(
            *PAGE,
            Param("realm", {"type": "string", "enum": ["platform", "merchant", "agent"]}),
            Param("org_id", {"type": "string", "maxLength": 64}),
        ),
        tag="admin",
    ),
    Route(
        "POST",
        "/api/v1/admin/users",
        admin.create_user,
        "createUser",
        "Create a user",
        "bearer",
        201,
        ids.UserView,
        ids.CreateUser,
        errors=(400, 401, 403, 404, 409, 429),
        tag="admin",
    ),
    Route(
        "POST",
        "/api/v1/admin/users/{id}/disable",
        admin.disable_user,
        "disableUser",
        "Disable a user",
        "bearer",
        200,
        ids.UserView,
        errors=(400, 401, 403, 404, 409, 429),
        tag="admin",
    ),
    Route(
        "POST",
        "/api/v1/admin/users/{id}/enable",
        admin.enable_user,
        "enableUser",
        "Enable a user",
        "bearer",
        200,
        ids.UserView,
        tag="admin",
    ),
    Route(
        "PUT",
        "/api/v1/admin/users/{id}/roles",
        admin.assign_roles,
        "assignRoles",
        "Assign roles",
        "bearer",
        200,
        ids.UserView,
        ids.AssignRoles,
        errors=(400, 401, 403, 404, 409, 429),
        tag="admin",
    ),
    Route(
        "GET",
        "/api/v1/admin/roles",
        admin.list_roles,
        "listRoles",
        "List roles",
        "bearer",
        200,
        list_of({"$ref": "RoleView"}),
        tag="admin",
    ),
    Route(
        "PUT",
        "/api/v1/admin/roles/{id}",
        admin.put_role,
        "putRole",
        "Create or replace a custom role",
        "bearer",
        200,
        ids.RoleView,
        ids.PutRole,
        tag="admin",
    ),
    Route(
        "GET",
        "/api/v1/admin/settings",
        admin.get_settings,
        "getSettings",
        "Platform settings",
        "bearer",
        200,
        ids.SettingsView,
        tag="admin",
    ),
    Route(
        "PUT",
        "/api/v1/admin/settings",
        admin.put_settings,
        "putSettings",
        "Change platform settings (with the version read)",
        "bearer",
        200,
        ids.SettingsView,
        ids.PutSettings,
        errors=(400, 401, 403, 404, 409, 429),
        tag="admin",
    ),
    Route(
        "GET",
        "/api/v1/admin/audit",
        admin.list_audit,
        "listAudit",
        "Query the audit log, newest first",
        "bearer",
        200,
        list_of(AUDIT_RECORD),
        query=(
            LIMIT,
            Param("starting_after", {"type": "integer", "minimum": 0}, "the last seq seen"),
            Param("action", {"type": "string", "maxLength": 100}, "an action or its prefix"),
            Param("actor", {"type": "string", "maxLength": 100}),
            Param("target", {"type": "string", "maxLength": 100}),
            SINCE,
            UNTIL,
        ),
        tag="admin",
    ),
    Route(
        "GET",
        "/api/v1/admin/audit/verify",
        admin.verify_audit,
        "verifyAudit",
        "Verify the audit hash chain",
        "bearer",
        200,
        VERIFIED,
        tag="admin",
    ),
    Route(
        "POST",
        "/api/v1/admin/merchants/{id}/keys",
        admin.create_api_key,
        "createApiKey",
        "Create a merchant API key (the secret is shown once)",
        "bearer",
        201,
        ids.ApiKeyCreated,
        ids.CreateApiKey,
        tag="admin",
    ),
    Route(
        "GET",
        "/api/v1/admin/merchants",
        reviews.list_merchants,
        "listMerchants",
        "Merchants, for reviewers (newest first)",
        "bearer",
        200,
        list_of(MERCHANT_VIEW),
        query=(*PAGE, REVIEW_STATUS, SEARCH, Param("agent_id", {"type": "string"})),
        tag="admin",
    ),
    Route(
        "GET",
        "/api/v1/admin/agents",
        reviews.list_agents,
        "listAgents",
        "Agents, for reviewers (newest first)",
        "bearer",
        200,
        list_of({"$ref": "AgentView"}),
        query=(*PAGE, REVIEW_STATUS, SEARCH),
        tag="admin",
    ),
    # --- channels -----------------------------------------------------------------------------
    Route(
        "GET",
        "/api/v1/admin/channels",
        channels.list_channels,
        "listChannels",
        "List channels and switch-overs",
        "bearer",
        200,
        CHANNELS,
        tag="channels",
    ),
    Route(
        "POST",
        "/api/v1/admin/channels",
        channels.post_channel,
        "createChannel",
        "Create a channel (credentials are stored encrypted and never returned)",
        "bearer",
        201,
        chs.ChannelView,
        chs.CreateChannel,
        errors=(400, 401, 403, 404, 409, 429),
        tag="channels",
    ),
    Route(
        "GET",
        "/api/v1/admin/channels/{code}",
        channels.get_channel,
        "getChannel",
        "A channel, with today's routed volume and whether routing may use it",
        "bearer",
        200,
        chs.ChannelView,
        tag="channels",
    ),
    Route(
        "PATCH",
        "/api/v1/admin/channels/{code}",
        channels.patch_channel,
        "updateChannel",
        "Change a channel (only the fields given; `version` for a conflict check)",
        "bearer",
        200,
        chs.ChannelView,
        chs.UpdateChannel,
        errors=(400, 401, 403, 404, 409, 429),
        tag="channels",
    ),
    Route(
        "POST",
        "/api/v1/admin/channels/{code}/enable",
        channels.enable_channel,
        "enableChannel",
        "Enable a channel",
        "bearer",
        200,
        chs.ChannelView,
        tag="channels",
    ),
    Route(
        "POST",
        "/api/v1/admin/channels/{code}/disable",
        channels.disable_channel,
        "disableChannel",
        "Disable: routing stops at once; work already on the channel finishes",
        "bearer",
        200,
        chs.ChannelView,
        tag="channels",
    ),
    Route(
        "POST",
        "/api/v1/admin/channels/{code}/switch-over",
        channels.post_switch_over,
        "switchOverChannel",
        "Move a merchant's (or everyone's) traffic for this channel to another",
        "bearer",
        201,
        chs.SwitchOverView,
        chs.SwitchOver,
        tag="channels",
    ),
    Route(
        "DELETE",
        "/api/v1/admin/channels/{code}/switch-over",
        channels.delete_switch_over,
        "endSwitchOver",
        "End a switch-over",
        "bearer",
        200,
        chs.SwitchOverView,
        query=(Param("merchant_id", {"type": "string", "maxLength": 64}, "default `*`"),),
        tag="channels",
    ),
    # --- risk control ---------------------------------------------------------------------------
    Route(
        "GET",
        "/api/v1/risk/lists",
        risk.list_entries,
        "listRiskListEntries",
        "Block and allow list entries, newest first",
        "bearer",
        200,
        list_of({"$ref": "ListEntryView"}),
        query=(*PAGE, RISK_LIST, RISK_KIND),
        tag="risk",
    ),
    Route(
        "POST",
        "/api/v1/risk/lists",
        risk.post_entry,
        "createRiskListEntry",
        "Add a block or allow list entry (in force in every risk process within a second)",
        "bearer",
        201,
        rks.ListEntryView,
        rks.CreateListEntry,
        errors=(400, 401, 403, 404, 409, 429),
        tag="risk",
        description="A block entry rejects a payment whatever its score; an allow entry "
        "approves one that rules or its score would review or reject (never past a block "
        "entry or a `reject` rule). An IP entry may be a CIDR range; a country entry matches "
        "the IP's, the card's or the declared country. 400 `invalid_list_value` names what is "
        "wrong with the value; 409 `list_entry_exists`.",
    ),
    Route(
        "DELETE",
        "/api/v1/risk/lists/{id}",
        risk.delete_entry,
        "deleteRiskListEntry",
        "Remove a list entry",
        "bearer",
        200,
        rks.ListEntryView,
        tag="risk",
    ),
    Route(
        "GET",
        "/api/v1/risk/rules",
        risk.get_rules,
        "getRiskRules",
        "The live rule set (version null: none published, every payment approved by rules)",
        "bearer",
        200,
        rks.RuleSetView,
        tag="risk",
    ),
    Route(
        "PUT",
        "/api/v1/risk/rules",
        risk.put_rules,
        "publishRiskRules",
        "Publish a new rule set version (live in every risk process within a second)",
        "bearer",
        200,
        rks.RuleSetView,
        rks.RuleSetIn,
        tag="risk",
        description="Every rule is compiled first: 400 `invalid_rules` names each rule at fault, "
        "its field and the line:column of the error in its expression (`param` is the first, "
        "e.g. `rules[2].expression`), and nothing is published.",
    ),
    Route(
        "GET",
        "/api/v1/risk/rules/versions",
        risk.list_versions,
        "listRiskRuleVersions",
        "Rule set versions, newest first (`live` marks the published one)",
        "bearer",
        200,
        list_of({"$ref": "RuleSetView"}),
        query=(
            LIMIT,
            Param(
                "starting_after",
                {"type": "integer", "minimum": 1, "maximum": 2_147_483_647},
                "cursor: the last version of the previous page",
            ),
        ),
        tag="risk",
    ),
    Route(
        "POST",
        "/api/v1/risk/rules/versions",
        risk.post_version,
        "draftRiskRules",
        "Save a draft version, validated like a publish but judging nothing",
        "bearer",
        201,
        rks.RuleSetView,
        rks.RuleSetIn,
        tag="risk",
    ),
    Route(
        "GET",
        "/api/v1/risk/rules/versions/{version}",
        risk.get_version,
        "getRiskRuleVersion",
        "One rule set version",
        "bearer",
        200,
        rks.RuleSetView,
        tag="risk",
    ),
    Route(
        "POST",
        "/api/v1/risk/rules/versions/{version}/publish",
        risk.publish_version,
        "publishRiskRuleVersion",
        "Make a version live: publish a draft, or roll back to an earlier version",
        "bearer",
        200,
        rks.RuleSetView,
        tag="risk",
    ),
    Route(
        "GET",
        "/api/v1/risk/reviews",
        risk.list_reviews,
        "listRiskReviews",
        "The manual review queue, newest first (filter by status and merchant)",
        "bearer",
        200,
        list_of({"$ref": "ReviewView"}),
        query=(
            *PAGE,
            Param(
                "status", {"type": "string", "enum": ["open", "claimed", "approved", "rejected"]}
            ),
            Param("merchant_id", {"type": "string", "maxLength": 64}, "one merchant's only"),
        ),
        tag="risk",
    ),
    Route(
        "GET",
        "/api/v1/risk/reviews/{id}",
        risk.get_review,
        "getRiskReview",
        "The review of one payment (its id is the payment's)",
        "bearer",
        200,
        rks.ReviewView,
        tag="risk",
    ),
    Route(
        "POST",
        "/api/v1/risk/reviews/{id}/claim",
        risk.claim_review,
        "claimRiskReview",
        "Claim a review: no other reviewer may decide it meanwhile (audited)",
        "bearer",
        200,
        rks.ReviewView,
        errors=(400, 401, 403, 404, 409, 429),
        tag="risk",
        description="409 `review_claimed` when another reviewer holds it, `review_closed` once "
        "decided.",
    ),
    Route(
        "POST",
        "/api/v1/risk/reviews/{id}/approve",
        risk.approve_review,
        "approveRiskReview",
        "Approve a payment in review: it goes on to routing as if approved (audited)",
        "bearer",
        200,
        rks.ReviewView,
        rks.DecideReview,
        errors=(400, 401, 403, 404, 409, 429),
        tag="risk",
        description="Platform reviewers only: merchants never decide their own reviews. 409 "
        "`review_claimed` when another reviewer holds it, `review_closed` once decided.",
    ),
    Route(
        "POST",
        "/api/v1/risk/reviews/{id}/reject",
        risk.reject_review,
        "rejectRiskReview",
        "Reject a payment in review: it ends `rejected` and the merchant is notified (audited)",
        "bearer",
        200,
        rks.ReviewView,
        rks.DecideReview,
        errors=(400, 401, 403, 404, 409, 429),
        tag="risk",
    ),
    Route(
        "POST",
        "/api/v1/risk/evaluate",
        risk.evaluate,
        "evaluateRisk",
        "Judge a transaction as its payment would be, without creating one",
        "signed",
        200,
        rks.Decision,
        rks.Evaluate,
        tag="risk",
        description="For merchants' own flows: the merchant's limits, the live rules and lists "
        "and the velocity counters (which include this transaction as if it were a payment, "
        "but do not keep it). Nothing is stored.",
    ),
    Route(
        "PUT",
        "/api/v1/risk/rules/shadow",
        risk.put_shadow,
        "startRiskShadow",
        "Run a version in shadow: judged beside the live one on live traffic, never applied",
        "bearer",
        200,
        rks.ShadowView,
        rks.ShadowIn,
        tag="risk",
        description="Each payment's shadow decision is kept with its decision (not shown in "
        "the payment). One shadow at a time; a new one replaces it.",
    ),
    Route(
        "DELETE",
        "/api/v1/risk/rules/shadow",
        risk.delete_shadow,
        "stopRiskShadow",
        "Stop the shadow run",
        "bearer",
        200,
        rks.ShadowView,
        tag="risk",
    ),
    Route(
        "GET",
        "/api/v1/risk/rules/shadow",
        risk.get_shadow,
        "compareRiskShadow",
        "The shadow version's decisions against the live ones (default: the last day)",
        "bearer",
        200,
        rks.ComparisonView,
        query=(
            SINCE,
            UNTIL,
            Param("merchant_id", {"type": "string", "maxLength": 64}, "one merchant's only"),
        ),
        tag="risk",
        description="`version` null and nothing compared while no version runs in shadow.",
    ),
    Route(
        "POST",
        "/api/v1/risk/rules/versions/{version}/backtest",
        risk.backtest,
        "backtestRiskRules",
        "Run a version over stored payments of a period: what would change",
        "bearer",
        200,
        rks.ComparisonView,
        rks.BacktestIn,
        tag="risk",
        description="Judged on the facts each decision kept (a customer's e-mail and IP only "
        "in part; the velocity counters some version read then) and the list entries it hit "
        "then. Payments the merchant's limits decided are skipped.",
    ),
    # --- merchants ----------------------------------------------------------------------------
    Route(
        "POST",
        "/api/v1/merchants/register",
        merchants.register,
        "registerMerchant",
        "Apply as a merchant, with KYC (the API keys are shown once)",
        "none",
        201,
        MERCHANT_VIEW,
        mss.RegisterMerchant,
        errors=(400, 403, 404, 409, 429),
        tag="merchants",
    ),
    Route(
        "GET",
        "/api/v1/merchants/{id}",
        merchants.get_merchant,
        "getMerchant",
        "Retrieve a merchant",
        "bearer",
        200,
        MERCHANT_VIEW,
        tag="merchants",
    ),
    Route(
        "PUT",
        "/api/v1/merchants/{id}",
        merchants.update_merchant,
        "updateMerchant",
        "Update or review a merchant",
        "bearer",
        200,
        MERCHANT_VIEW,
        mss.UpdateMerchant,
        errors=(400, 401, 403, 404, 409, 429),
        tag="merchants",
    ),
    Route(
        "PUT",
        "/api/v1/merchants/{id}/payment-config",
        merchants.payment_config,
        "putPaymentConfig",
        "Payment configuration: fees, currencies, methods, channels, routing, URLs, settlement",
        "bearer",
        200,
        MERCHANT_VIEW,
        mss.PaymentConfig,
        tag="merchants",
        description=PRICING,
    ),
    Route(
        "GET",
        "/api/v1/merchants/{id}/transactions",
        merchants.transactions,
        "listTransactions",
        "A merchant's payments, filtered (CSV with format=csv)",
        "bearer",
        200,
        PaymentList,
        query=(*PAGE, PAYMENT_STATUS, CURRENCY, SINCE, UNTIL, CSV),
        tag="merchants",
    ),
    Route(
        "GET",
        "/api/v1/merchants/{id}/keys",
        merchants.list_keys,
        "listApiKeys",
        "API keys, with their last use",
        "bearer",
        200,
        list_of(KEY_VIEW),
        tag="merchants",
    ),
    Route(
        "POST",
        "/api/v1/merchants/{id}/keys/{keyId}/rotate",
        merchants.rotate_key,
        "rotateApiKey",
        "Rotate a key with an overlap (the new secret is shown once)",
        "bearer",
        201,
        KEY_VIEW,
        mss.RotateKey,
        tag="merchants",
    ),
    Route(
        "POST",
        "/api/v1/merchants/{id}/keys/{keyId}/revoke",
        merchants.revoke_key,
        "revokeApiKey",
        "Revoke a key",
        "bearer",
        200,
        KEY_VIEW,
        tag="merchants",
    ),
    # --- agents -------------------------------------------------------------------------------
    Route(
        "POST",
        "/api/v1/agents/register",
        agents.register,
        "registerAgent",
        "Apply as an agent",
        "none",
        201,
        ags.AgentView,
        ags.RegisterAgent,
        errors=(400, 404, 409, 429),
        tag="agents",
    ),
    Route(
        "GET",
        "/api/v1/agents/{id}",
        agents.get_agent,
        "getAgent",
        "Retrieve an agent",
        "bearer",
        200,
        ags.AgentView,
        tag="agents",
    ),
    Route(
        "PUT",
        "/api/v1/agents/{id}",
        agents.update_agent,
        "updateAgent",
        "Update, review, suspend or re-grant an agent",
        "bearer",
        200,
        ags.AgentView,
        ags.UpdateAgent,
        errors=(400, 401, 403, 404, 409, 429),
        tag="agents",
    ),
    Route(
        "POST",
        "/api/v1/agents/{id}/subordinates",
        agents.add_subordinate,
        "addSubordinate",
        "Open or attach a sub-agent (`type: agent`) or a merchant (`type: merchant`)",
        "bearer",
        201,
        {"oneOf": [{"$ref": "AgentView"}, OPENED]},
        ags.SubAgent | ags.SubMerchant,
        errors=(400, 401, 403, 404, 409, 429),
        tag="agents",
        description=PRICING,
    ),
    Route(
        "POST",
        "/api/v1/agents/{id}/invitations",
        agents.create_invitation,
        "createAgentInvitation",
        "Invite a merchant to apply under the agent (single use; the token is shown once)",
        "bearer",
        201,
        ags.InvitationView,
        ags.CreateInvitation,
        errors=(400, 401, 403, 404, 409, 429),
        tag="agents",
    ),
    Route(
        "PUT",
        "/api/v1/agents/{id}/policies/{currency}",
        agents.put_policy,
        "putCommissionPolicy",
        "Set an agent's commission policy for a currency",
        "bearer",
        200,
        ags.PolicyView,
        ags.PutPolicy,
        tag="agents",
        description=PRICING,
    ),
    Route(
        "PUT",
        "/api/v1/agents/{id}/merchants/{merchantId}/pricing",
        agents.price_merchant,
        "priceMerchant",
        "Price a merchant under the agent",
        "bearer",
        200,
        PRICED,
        ags.MerchantPricing,
        tag="agents",
        description=PRICING,
    ),
    Route(
        "GET",
        "/api/v1/agents/{id}/commissions",
        agents.commissions,
        "listCommissions",
        "Commission records and totals (CSV with format=csv)",
        "bearer",
        200,
        COMMISSIONS,
        query=(*PAGE, CURRENCY, SINCE, UNTIL, CSV),
        tag="agents",
    ),
    # --- balances and settlement -----------------------------------------------------------
    Route(
        "GET",
        "/api/v1/balances",
        settlements.get_balances,
        "getBalances",
        "Pending, available, reserved and paid out, per currency (the caller's own)",
        "signed",
        200,
        sts.Balances,
        query=(ENTITY,),
        tag="settlement",
    ),
    Route(
        "GET",
        "/api/v1/settlements/{entityId}",
        settlements.list_statements,
        "listSettlements",
        "A merchant's or agent's settlement statements (newest first)",
        "signed",
        200,
        sts.StatementList,
        query=(*PAGE, CURRENCY),
        tag="settlement",
    ),
    Route(
        "GET",
        "/api/v1/settlements/{entityId}/{settlementId}",
        settlements.get_statement,
        "getSettlement",
        "A statement with its lines, paginated (all lines as CSV with format=csv)",
        "signed",
        200,
        sts.StatementDetail,
        query=(
            LIMIT,
            Param("starting_after", {"type": "integer", "minimum": 0}, "the last line id seen"),
            EXPORT,
        ),
        errors=(400, 401, 403, 404, 429, 503),
        tag="settlement",
        description="`format=pdf` is the statement as a PDF (503 `pdf_unavailable` when the "
        "configured font is missing).",
    ),
    Route(
        "POST",
        "/api/v1/admin/settlements/run",
        settlements.run_settlements,
        "runSettlements",
        "Release what is due and close ended periods as of `until` (idempotent; audited)",
        "bearer",
        200,
        sts.SettlementRun,
        sts.RunSettlements,
        errors=(400, 401, 403, 404, 409, 429),
        tag="settlement",
    ),
    Route(
        "PUT",
        "/api/v1/admin/settlements/terms/{entityId}",
        settlements.put_terms,
        "putSettlementTerms",
        "An entity's settlement cycle override and rolling reserve (audited)",
        "bearer",
        200,
        sts.TermsView,
        sts.PutTerms,
        tag="settlement",
    ),
    # --- reports: the platform's books -----------------------------------------------------
    Route(
        "GET",
        "/api/v1/admin/reports/trial-balance",
        reports.get_trial_balance,
        "getTrialBalance",
        "Every ledger account's balance per currency, with totals that are zero per currency",
        "bearer",
        200,
        rps.TrialBalanceView,
        query=(
            Param("at", SINCE.schema, "unix seconds: the balances as of then (default now)"),
            CSV,
        ),
        tag="reports",
        description="Platform users with `settlements:read`.",
    ),
    Route(
        "GET",
        "/api/v1/admin/reports/daily",
        reports.get_daily,
        "getDailyReport",
        "The platform's day (UTC) per currency: volume, fees, costs, commission, FX and net",
        "bearer",
        200,
        rps.DailyList,
        query=(
            Param("day", {"type": "string", "pattern": DAY_PATTERN}, "YYYY-MM-DD (required)"),
            REPORT_CURRENCY,
            EXPORT,
        ),
        errors=(400, 401, 403, 404, 429, 503),
        tag="reports",
        description="Platform users with `settlements:read`. Derived from the day's postings: "
        "fee revenue from `platform:fee_revenue`, commission from `agent:<id>:commission`, "
        "channel cost from `channel:<code>:cost`, FX from `platform:fx`.",
    ),
    # --- withdrawals and payouts ----------------------------------------------------------------
    # --- reconciliation with channels ---------------------------------------------------------
    Route(
        "POST",
        "/api/v1/admin/reconciliation/runs",
        reconciliation.run_reconciliation,
        "runReconciliation",
        "Reconcile a channel's daily statement, fetched or uploaded (idempotent per file; audited)",
        "bearer",
        201,
        rcs.RunView,
        rcs.RunReconciliation,
        errors=(400, 401, 403, 404, 429, 502, 503),
        tag="reconciliation",
        description="With `csv` (and optionally `columns`), the file given instead: a line it "
        "cannot read is 400 `invalid_statement`. The same file again answers 200 with its "
        "earlier run (`replayed`), unchanged. An unknown channel is 404 `unknown_channel`, one "
        "without statements 400 `statements_unsupported`, a future day 400 `invalid_field`.",
    ),
    Route(
        "GET",
        "/api/v1/admin/reconciliation/runs",
        reconciliation.list_runs,
        "listReconciliationRuns",
        "Reconciliation runs, newest first",
        "bearer",
        200,
        rcs.RunList,
        query=PAGE,
        tag="reconciliation",
    ),
    Route(
        "GET",
        "/api/v1/admin/reconciliation/runs/{id}",
        reconciliation.get_run,
        "getReconciliationRun",
        "A reconciliation run: its counts and sums per side",
        "bearer",
        200,
        rcs.RunView,
        tag="reconciliation",
    ),
    Route(
        "GET",
        "/api/v1/admin/reconciliation/discrepancies",
        reconciliation.list_discrepancies,
        "listReconciliationDiscrepancies",
        "Discrepancies found by reconciliation, oldest first",
        "bearer",
        200,
        rcs.DiscrepancyList,
        query=(
            *PAGE,
            Param("status", {"type": "string", "enum": list(rcs.DISCREPANCY_STATUSES)}),
            Param("run", {"type": "string"}, "only this run's"),
        ),
        tag="reconciliation",
    ),
    Route(
        "POST",
        "/api/v1/admin/reconciliation/discrepancies/{id}/resolve",
        reconciliation.resolve_discrepancy,
        "resolveReconciliationDiscrepancy",
        "Ignore, adjust, refund or accept the channel's word for a discrepancy (audited)",
        "bearer",
        200,
        rcs.DiscrepancyView,
        rcs.ResolveDiscrepancy,
        errors=(400, 401, 403, 404, 409, 429, 502, 503),
        tag="reconciliation",
        description="`adjust` posts `adjustment.amount` from `credit` to `debit` (journal kind "
        "`recon_adjustment`, ref the discrepancy id). `refund` and `accept_channel` first ask "
        "the channel about the payment's order: `refund` returns there the money it holds for "
        "a payment Juhe ended without it (the channel's refund id is the discrepancy id, so a "
        "retry returns nothing twice); `accept_channel` hands the channel's answer to the "
        "ledger as a callback, which may move a payment Juhe ended without its money to "
        "`succeeded` (posted once, `payment.succeeded` sent). 409 `discrepancy_closed` once it "
        "is resolved or ignored, and 409 with a code saying why when the action does not fit "
        "(`refund_through_api`, `payment_not_ended`, `not_paid_at_channel`, "
        "`channel_undecided`, `nothing_to_accept`, `cannot_reverse`, `payment_rejected`, "
        "`not_a_payment`); 502/503 when the channel refuses or does not answer.",
    ),
    Route(
        "POST",
        "/api/v1/payout-accounts",
        withdrawals.add_payout_account,
        "addPayoutAccount",
        "Register a bank account or crypto wallet to withdraw to (details sealed; audited)",
        "bearer",
        201,
        wds.PayoutAccountView,
        wds.AddPayoutAccount,
        tag="withdrawals",
    ),
    Route(
        "GET",
        "/api/v1/payout-accounts",
        withdrawals.list_payout_accounts,
        "listPayoutAccounts",
        "The caller's payout accounts (platform users name the entity), numbers masked",
        "bearer",
        200,
        wds.PayoutAccountList,
        query=(ENTITY,),
        tag="withdrawals",
    ),
    Route(
        "POST",
        "/api/v1/withdrawals",
        withdrawals.create_withdrawal,
        "createWithdrawal",
        "Withdraw from the available balance: amount + fee held at once, then paid out",
        "bearer",
        201,
        wds.Withdrawal,
        wds.CreateWithdrawal,
        idempotent=True,
        errors=(400, 401, 403, 404, 409, 429),
        tag="withdrawals",
        description="The Idempotency-Key is required (400 `missing_idempotency_key`). Refused "
        "with 400 `amount_too_small`, `insufficient_funds` or `daily_limit_exceeded`; above the "
        "entity's `approval_above` the withdrawal is `pending_approval`. The live risk rules "
        'judge it (facts with `kind == "withdrawal"`): a reject is 400 `risk_rejected` with '
        "nothing held, a review makes it `pending_approval`; `risk` keeps the decision.",
    ),
    Route(
        "GET",
        "/api/v1/withdrawals",
        withdrawals.list_withdrawals,
        "listWithdrawals",
        "Withdrawals, newest first (platform users name the entity)",
        "bearer",
        200,
        wds.WithdrawalList,
        query=(
            *PAGE,
            ENTITY,
            CURRENCY,
            Param("status", {"type": "string", "enum": [s.value for s in WithdrawalStatus]}),
        ),
        tag="withdrawals",
    ),
    Route(
        "GET",
        "/api/v1/withdrawals/{id}",
        withdrawals.get_withdrawal,
        "getWithdrawal",
        "A withdrawal (another entity's is 404)",
        "bearer",
        200,
        wds.Withdrawal,
        tag="withdrawals",
    ),
    Route(
        "POST",
        "/api/v1/admin/withdrawals/{id}/approve",
        withdrawals.approve_withdrawal,
        "approveWithdrawal",
        "Approve a withdrawal waiting for it: not its requester, with a reason (audited)",
        "bearer",
        200,
        wds.Withdrawal,
        wds.Decide,
        errors=(400, 401, 403, 404, 409, 429),
        tag="withdrawals",
    ),
    Route(
        "POST",
        "/api/v1/admin/withdrawals/{id}/reject",
        withdrawals.reject_withdrawal,
        "rejectWithdrawal",
        "Reject a withdrawal waiting for approval; the funds go back (audited)",
        "bearer",
        200,
        wds.Withdrawal,
        wds.Decide,
        errors=(400, 401, 403, 404, 409, 429),
        tag="withdrawals",
    ),
    Route(
        "PUT",
        "/api/v1/admin/withdrawals/rules/{entityId}",
        withdrawals.put_rules,
        "putWithdrawalRules",
        "An entity's minimum, fee, daily limit and approval threshold in a currency (audited)",
        "bearer",
        200,
        wds.RulesView,
        wds.PutRules,
        tag="withdrawals",
    ),
    Route(
        "POST",
        "/api/v1/payouts/callback/{channel}",
        withdrawals.payout_callback,
        "payoutCallback",
        "A channel's payout callback (signed by the channel; a trigger to ask it)",
        "channel",
        200,
        None,
        errors=(400, 401, 404),
        content_type="text/plain",
        tag="channels",
    ),
    # --- the customer's pages, operations -----------------------------------------------------
    Route(
        "GET",
        "/checkout/device.js",
        cashier.device_script,
        "deviceScript",
        "The device id script for checkout pages (JavaScript)",
        "none",
        200,
        None,
        errors=(),
        content_type="text/javascript",
        tag="cashier",
        description="Computes `window.juheDevice.id` (a promise) from stable browser signals "
        "and fills every `input[name=device_id]`; merchants' checkout pages send it as "
        "`customer.device_id`, the hosted card form with the card.",
    ),
    Route(
        "GET",
        "/checkout/{id}",
        cashier.checkout,
        "checkoutPage",
        "The hosted cashier page (HTML)",
        "none",
        200,
        None,
        errors=(400, 404),
        content_type="text/html",
        tag="cashier",
    ),
    Route(
        "POST",
        "/checkout/{id}/card",
        cashier.submit_card,
        "submitCard",
        "The customer's tokenised card, from the cashier page",
        "none",
        202,
        CARD,
        cashier.CardSubmission,
        errors=(400, 403, 404, 409),
        tag="cashier",
    ),
    Route(
        "GET",
        "/api/v1/openapi.json",
        ops.openapi,
        "getOpenApi",
        "This document",
        "none",
        200,
        ANY_OBJ,
        errors=(),
        tag="operations",
    ),
    Route(
        "GET",
        "/healthz",
        ops.healthz,
        "healthz",
        "Liveness",
        "none",
        200,
        HEALTH,
        errors=(),
        tag="operations",
    ),
    Route(
        "GET",
        "/readyz",
        ops.readyz,
        "readyz",
        "Readiness: Redis and PostgreSQL answer (503 naming what is down)",
        "none",
        200,
        READY,
        errors=(503,),
        tag="operations",
    ),
    Route(
        "GET",
        "/metrics",
        ops.metrics_endpoint,
        "metrics",
        "Prometheus metrics of every process of the node",
        "none",
        200,
        None,
        errors=(),
        content_type="text/plain",
        tag="operations",
    ),
)

BY_ROUTE: dict[tuple[str, str], Route] = {(r.method, r.path): r for r in ROUTES}


def add_routes(app: web.Application) -> None:
    for route in ROUTES:
        if route.method == "GET":
            app.router.add_get(route.path, route.handler)  # HEAD too
        else:
            app.router.add_route(route.method, route.path, route.handler)


def check_query(request: web.Request) -> None:
    """Refuse a query parameter the route does not document, or a value of the wrong type."""
    if not request.query:
        return
    resource = request.match_info.route.resource
    route = BY_ROUTE.get((request.method, resource.canonical)) if resource else None
    if route is not None:
        route.check_query(request.query)
