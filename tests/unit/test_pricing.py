"""Who may change money terms (domain.agents.check_pricing) and the bounds of every price
(domain.fees), as the API, the config and the OpenAPI document see them."""

from __future__ import annotations

import msgspec
import orjson
import pytest

from config import load_settings
from domain.access import Denied, Principal, Realm
from domain.agents import Grant, check_grant, check_pricing
from domain.fees import MAX_PRICE_BPS, MAX_PRICE_FIXED
from gateway.agent_schemas import MerchantPricing, PutPolicy, SubMerchant
from gateway.merchant_schemas import PaymentConfig
from gateway.openapi import document
from gateway.routes import ROUTES


def caller(realm: Realm, *grants: Grant) -> Principal:
    org = None if realm is Realm.PLATFORM else "org_1"
    return Principal("user", "usr_1", realm, org, frozenset(), grants=frozenset(grants))


def code_of(who: Principal, **kwargs: bool) -> str | None:
    try:
        check_pricing(who, **kwargs)
    except Denied as exc:
        return exc.code
    return None


def test_only_the_platform_and_agents_with_set_rates_change_prices() -> None:
    assert code_of(caller(Realm.PLATFORM)) is None
    assert code_of(caller(Realm.AGENT, Grant.SET_RATES)) is None
    assert code_of(caller(Realm.AGENT)) == "grant_missing"
    assert code_of(caller(Realm.AGENT, *(set(Grant) - {Grant.SET_RATES}))) == "grant_missing"
    assert code_of(caller(Realm.MERCHANT)) == "set_by_platform_or_agent"


def test_nobody_sets_their_own_rate() -> None:
    assert code_of(caller(Realm.AGENT, Grant.SET_RATES), own_rate=True) == "not_own_rate"
    assert code_of(caller(Realm.PLATFORM), own_rate=True) is None


def test_other_grants_bind_agents_only() -> None:
    check_grant(caller(Realm.PLATFORM), Grant.SUSPEND_CHILDREN)
    check_grant(caller(Realm.AGENT, Grant.OPEN_CHILDREN), Grant.OPEN_CHILDREN)
    with pytest.raises(Denied, match="open_children"):
        check_grant(caller(Realm.AGENT, Grant.SET_RATES), Grant.OPEN_CHILDREN)


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        (MerchantPricing, "fee_bps"),
        (PaymentConfig, "fee_bps"),
        (PutPolicy, "rate_bps"),
        (PutPolicy, "share_bps"),
        (SubMerchant, "fee_bps"),
    ],
)
def test_every_percentage_price_is_at_most_twenty_percent(kind: type, field: str) -> None:
    base = {"mode": "markup", "rate_bps": 0} if kind is PutPolicy else {"fee_bps": 0}
    body = {**base, field: MAX_PRICE_BPS}
    assert getattr(msgspec.convert(body, kind), field) == MAX_PRICE_BPS
    for bad in (MAX_PRICE_BPS + 1, 9_000, 10_000, -1):
        with pytest.raises(msgspec.ValidationError, match=field):
            msgspec.convert({**base, field: bad}, kind)


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        (MerchantPricing, "fee_fixed_minor"),
        (PaymentConfig, "fee_fixed_minor"),
        (PutPolicy, "rate_fixed"),
        (PutPolicy, "share_fixed"),
    ],
)
def test_every_fixed_price_is_bounded(kind: type, field: str) -> None:
    base = {"mode": "fixed", "rate_bps": 0} if kind is PutPolicy else {"fee_bps": 0}
    assert getattr(msgspec.convert({**base, field: MAX_PRICE_FIXED}, kind), field) == 100
    with pytest.raises(msgspec.ValidationError, match=field):
        msgspec.convert({**base, field: MAX_PRICE_FIXED + 1}, kind)


def test_the_default_price_in_the_config_has_the_same_bounds() -> None:
    assert load_settings({}).fees.merchant_bps <= MAX_PRICE_BPS
    with pytest.raises(msgspec.ValidationError, match="merchant_bps"):
        load_settings({"JUHE_FEES__MERCHANT_BPS": str(MAX_PRICE_BPS + 1)})


def test_the_openapi_document_states_the_bounds() -> None:
    schemas = orjson.loads(document("http://127.0.0.1", ROUTES))["components"]["schemas"]
    assert schemas["MerchantPricing"]["properties"]["fee_bps"]["maximum"] == MAX_PRICE_BPS
    assert schemas["PutPolicy"]["properties"]["rate_fixed"]["maximum"] == MAX_PRICE_FIXED
    described = schemas["PutPolicy"]["properties"]["share_bps"]["description"]
    assert "2000" in described and "20 %" in described
    fee = schemas["PaymentConfig"]["properties"]["fee_bps"]["anyOf"][0]
    assert fee["maximum"] == MAX_PRICE_BPS
