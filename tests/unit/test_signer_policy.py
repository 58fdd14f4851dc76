"""What the hot-wallet signer signs: a transfer it builds itself, of ETH or a token it knows,
within its limit; anything else is refused with a code."""

from __future__ import annotations

import msgspec
import pytest
from eth_account import Account

from adapters.ethereum.wire import transfer_call
from signer.policy import Refused, TransferRequest, transaction

TO = "0x" + "ab" * 20
TOKEN = "0x" + "cd" * 20
LIMITS = {"ETH": 10**18, "USDT": 5_000_000}
KEY = "0x" + "11" * 32


def _ask(**kw: object) -> TransferRequest:
    fields = {
        "chain_id": 31337,
        "asset": "ETH",
        "to": TO,
        "amount": 10**17,
        "nonce": 4,
        "gas": 21_000,
        "max_fee_per_gas": 2 * 10**9,
        "max_priority_fee_per_gas": 10**9,
        **kw,
    }
    return msgspec.convert(fields, TransferRequest)


def test_ether_goes_to_the_address_and_a_token_only_to_its_contract() -> None:
    eth = transaction(_ask(), {"USDT": TOKEN}, LIMITS)
    assert (eth["to"].lower(), eth["value"], eth["data"], eth["nonce"]) == (TO, 10**17, "0x", 4)
    usdt = transaction(_ask(asset="USDT", amount=2_500_000, gas=60_000), {"USDT": TOKEN}, LIMITS)
    assert (usdt["to"].lower(), usdt["value"]) == (TOKEN, 0)
    assert usdt["data"] == transfer_call(TO, 2_500_000)
    assert usdt["data"][:10] == "0xa9059cbb" and usdt["data"].endswith(f"{2_500_000:064x}")
    assert Account.sign_transaction(usdt, KEY).hash == Account.sign_transaction(usdt, KEY).hash


@pytest.mark.parametrize(
    ("ask", "tokens", "code"),
    [
        ({"amount": 10**18 + 1}, {}, "over_limit"),
        ({"asset": "BTC"}, {}, "asset_not_allowed"),
        ({"asset": "USDT", "amount": 1}, {}, "asset_not_allowed"),
        ({"max_priority_fee_per_gas": 3 * 10**9}, {}, "invalid_fee"),
    ],
)
def test_what_it_refuses(ask: dict, tokens: dict, code: str) -> None:
    with pytest.raises(Refused) as refused:
        transaction(_ask(**ask), tokens, LIMITS)
    assert refused.value.code == code


@pytest.mark.parametrize(
    "bad",
    [{"to": "0x1234"}, {"amount": 0}, {"gas": 20_999}, {"gas": 200_001}, {"data": "0x00"}],
)
def test_malformed_requests_never_reach_the_policy(bad: dict) -> None:
    with pytest.raises(msgspec.ValidationError):
        _ask(**bad)
