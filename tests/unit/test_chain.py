"""Crypto deposits without a chain: confirmations, what a deposit address has received and
when it is paid or taken back, the reversal of a credit, addresses derived from an xpub,
EIP-681 URIs and ERC-20 Transfer logs."""

from __future__ import annotations

import msgspec
import pytest
from bip_utils import Bip39SeedGenerator, Bip44, Bip44Changes, Bip44Coins
from hexbytes import HexBytes

from adapters.ethereum.wire import (
    TRANSFER_TOPIC,
    Deriver,
    KeyInvalid,
    payment_uri,
    token_transfer,
)
from domain.chain import (
    NATIVE_LOG_INDEX,
    Credit,
    DepositState,
    Tolerance,
    Transfer,
    confirmations,
    confirming,
    credit,
    deposit,
    taken_back,
)
from domain.fees import Rate
from domain.ledger import PLATFORM_CRYPTO_TOLERANCE, channel_clearing, ensure_balanced
from domain.lifecycle import PaymentFacts, on_callback
from domain.messages import ChannelCallback
from domain.states import PaymentStatus
from tests.facts import callback, payment

MNEMONIC = "test test test test test test test test test test test junk"
ADDRESS = "0x" + "ab" * 20


def _account(index: int) -> Bip44:
    seed = Bip39SeedGenerator(MNEMONIC).Generate()
    return Bip44.FromSeed(seed, Bip44Coins.ETHEREUM).Purpose().Coin().Account(index)


def _transfer(amount: int, block: int, *, asset: str = "ETH", **kw: object) -> Transfer:
    fields = {
        "tx_hash": f"0x{block:064x}",
        "log_index": NATIVE_LOG_INDEX,
        "block_hash": f"0x{block + 1000:064x}",
        "block_number": block,
        "address": ADDRESS,
        "asset": asset,
        "amount": amount,
        **kw,
    }
    return Transfer(**fields)  # type: ignore[arg-type]


def test_the_head_block_is_the_first_confirmation() -> None:
    assert confirmations(10, 10) == 1
    assert confirmations(10, 12) == 3
    assert confirmations(11, 10) == 0, "a block newer than the head we read"


def test_a_deposit_is_awaiting_then_processing_then_confirmed_at_depth() -> None:
    assert deposit(500, "ETH", [], 100, 3).state is DepositState.AWAITING
    seen = deposit(500, "ETH", [_transfer(500, 100)], 101, 3)
    assert (seen.state, seen.confirmations, seen.received, seen.confirmed) == (
        DepositState.PROCESSING,
        2,
        500,
        0,
    )
    paid = deposit(500, "ETH", [_transfer(500, 100)], 102, 3)
    assert (paid.state, paid.confirmations, paid.confirmed) == (DepositState.CONFIRMED, 3, 500)


def test_partial_transfers_add_up_and_the_shallowest_is_shown() -> None:
    parts = [_transfer(200, 100), _transfer(300, 104)]
    early = deposit(500, "ETH", parts, 104, 3)
    assert (early.state, early.received, early.confirmed, early.confirmations) == (
        DepositState.PROCESSING,
        500,
        200,
        1,
    )
    assert deposit(500, "ETH", parts, 106, 3).state is DepositState.CONFIRMED
    assert deposit(600, "ETH", parts, 200, 3).state is DepositState.PROCESSING, "short of due"


def test_orphaned_transfers_and_other_assets_pay_nothing() -> None:
    transfers = [
        _transfer(500, 100, orphaned=True),
        _transfer(500, 100, asset="USDT", log_index=0),
    ]
    state = deposit(500, "ETH", transfers, 200, 3)
    assert (state.state, state.received, state.confirmations) == (DepositState.AWAITING, 0, 0)


def test_a_deposit_needs_a_positive_amount_and_depth() -> None:
    with pytest.raises(ValueError):
        deposit(0, "ETH", [], 1, 3)
    with pytest.raises(ValueError):
        deposit(1, "ETH", [], 1, 0)


def test_wei_amounts_beyond_64_bits_stay_exact() -> None:
    huge = 10**30 + 1
    state = deposit(huge, "ETH", [_transfer(huge, 1)], 1, 1)
    assert state.state is DepositState.CONFIRMED and state.doc()["received_minor"] == huge


def test_addresses_come_from_the_account_xpub_alone() -> None:
    deriver = Deriver(_account(0).PublicKey().ToExtended())
    # index 0 of m/44'/60'/0' of the test mnemonic is anvil's (and hardhat's) first account
    assert deriver.address(0) == "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
    assert deriver.address(1) == "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
    assert len({deriver.address(i) for i in range(20)}) == 20


def test_a_private_or_wrong_level_key_is_refused() -> None:
    with pytest.raises(KeyInvalid, match="private"):
        Deriver(_account(0).PrivateKey().ToExtended())
    with pytest.raises(KeyInvalid, match="account level"):
        Deriver(_account(0).Change(Bip44Changes.CHAIN_EXT).PublicKey().ToExtended())
    with pytest.raises(KeyInvalid):
        Deriver("xpub-not-a-key")


def test_eip681_uris_for_ether_and_for_a_token() -> None:
    assert payment_uri(1, ADDRESS, "ETH", 10**18, None) == f"ethereum:{ADDRESS}@1?value={10**18}"
    token = "0x" + "cd" * 20
    assert payment_uri(31337, ADDRESS, "USDT", 2_500_000, token) == (
        f"ethereum:{token}@31337/transfer?address={ADDRESS}&uint256=2500000"
    )
    with pytest.raises(ValueError):
        payment_uri(1, ADDRESS, "USDT", 1, None)


def test_a_transfer_log_is_read_and_other_logs_are_not() -> None:
    log = {
        "topics": [
            HexBytes(TRANSFER_TOPIC),
            HexBytes("0x" + "00" * 12 + "11" * 20),
            HexBytes("0x" + "00" * 12 + "ab" * 20),
        ],
        "data": HexBytes((25_500_000).to_bytes(32, "big")),
        "transactionHash": HexBytes("0x" + "01" * 32),
        "blockHash": HexBytes("0x" + "02" * 32),
        "blockNumber": 7,
        "logIndex": 3,
    }
    found = token_transfer(log)
    assert found is not None
    assert (found.to, found.amount, found.log_index, found.block_number) == (
        ADDRESS,
        25_500_000,
        3,
        7,
    )
    assert token_transfer({**log, "topics": log["topics"][:1]}) is None
    approval = HexBytes("0x" + "8c" * 32)
    assert token_transfer({**log, "topics": [approval, *log["topics"][1:]]}) is None


def test_only_a_credit_the_chain_no_longer_holds_is_taken_back() -> None:
    gone = deposit(500, "ETH", [_transfer(500, 100, orphaned=True)], 120, 3)
    assert taken_back(gone, 500)
    reincluded = [_transfer(500, 100, orphaned=True), _transfer(500, 119, block_hash="0xnew")]
    assert not taken_back(deposit(500, "ETH", reincluded, 120, 3), 500), "shallow, but there"


def _paid(status: PaymentStatus = PaymentStatus.SUCCEEDED) -> PaymentFacts:
    return payment(
        status,
        amount=7_250_000,
        currency="USDT",
        channel="eth",
        fee_fixed=0,
        channel_order_id=ADDRESS,
    )


def _reversed() -> ChannelCallback:
    return callback(
        "reversed",
        channel="eth",
        event_id="chain:pay_1:reversed",
        channel_order_id=ADDRESS,
        amount="7250000",
        currency="USDT",
    )


def test_a_reversal_undoes_every_line_of_the_credit() -> None:
    credit = on_callback(
        _paid(PaymentStatus.AWAITING_PAYMENT),
        msgspec.structs.replace(_reversed(), outcome="paid", event_id="chain:pay_1:paid"),
        Rate(100),
    )
    assert credit.status is PaymentStatus.SUCCEEDED and credit.postings
    effect = on_callback(_paid(), _reversed(), Rate(100), paid_entry=credit.postings)
    assert (effect.status, effect.event_type) == (PaymentStatus.REVERSED, "payment.reversed")
    total: dict[tuple[str, str], int] = {}
    for p in (*credit.postings, *effect.postings):
        total[(p.account, p.currency)] = total.get((p.account, p.currency), 0) + p.amount
    assert set(total.values()) == {0}


def test_only_a_succeeded_payment_is_reversed() -> None:
    for status in (PaymentStatus.AWAITING_PAYMENT, PaymentStatus.REFUNDED, PaymentStatus.REVERSED):
        assert on_callback(_paid(status), _reversed(), Rate(100)).result == "stale"
    with pytest.raises(ValueError, match="no entry"):
        on_callback(_paid(), _reversed(), Rate(100))


def test_only_a_deposit_paid_in_full_and_not_yet_deep_is_held_open() -> None:
    assert confirming(deposit(500, "ETH", [_transfer(500, 100)], 100, 3), 500)
    assert not confirming(deposit(500, "ETH", [_transfer(400, 100)], 100, 3), 500), "short"
    assert not confirming(deposit(500, "ETH", [_transfer(500, 100)], 102, 3), 500), "deep"
    assert not confirming(deposit(500, "ETH", [], 100, 3), 500)


def test_a_tolerance_is_the_larger_of_its_share_and_its_amount() -> None:
    assert Tolerance(100, 20_000).allowed(5_000_000) == 50_000  # 1 % of 5 USDT
    assert Tolerance(100, 20_000).allowed(1_000_000) == 20_000  # 0.02 USDT floor
    assert Tolerance().allowed(10**24) == 0
    for bad in ({"bps": -1}, {"bps": 10_001}, {"minor": -1}):
        with pytest.raises(ValueError):
            Tolerance(**bad)  # type: ignore[arg-type]


def test_short_or_over_within_the_tolerance_pays_and_beyond_is_surplus() -> None:
    tol = Tolerance(100)  # 1 %: 10 of 1,000
    assert credit(989, 1_000, tol) is None, "short by more than the tolerance"
    assert credit(990, 1_000, tol) == Credit(990, 0)
    assert credit(1_000, 1_000, tol) == Credit(1_000, 0)
    assert credit(1_010, 1_000, tol) == Credit(1_010, 0)
    assert credit(1_500, 1_000, tol) == Credit(1_010, 490), "credited up to the tolerance"
    assert credit(999, 1_000, Tolerance()) is None, "no tolerance: exact or more"
    short = deposit(1_000, "USDT", [_transfer(995, 100, asset="USDT")], 103, 3, tol)
    assert short.state is DepositState.CONFIRMED
    assert confirming(
        deposit(1_000, "USDT", [_transfer(995, 100, asset="USDT")], 101, 3, tol), 1_000, tol
    )


def test_the_tolerated_difference_is_the_platforms() -> None:
    def paid(received: str | None) -> list:
        effect = on_callback(
            _paid(PaymentStatus.AWAITING_PAYMENT),
            msgspec.structs.replace(
                _reversed(), outcome="paid", event_id="chain:pay_1:paid", received=received
            ),
            Rate(100),
        )
        assert effect.status is PaymentStatus.SUCCEEDED
        ensure_balanced(effect.postings)
        return list(effect.postings)

    def line(postings: list, account: str) -> int:
        return sum(p.amount for p in postings if p.account == account)

    exact, short, over = paid(None), paid("7200000"), paid("7260000")
    assert line(exact, PLATFORM_CRYPTO_TOLERANCE) == 0
    assert line(short, PLATFORM_CRYPTO_TOLERANCE) == 50_000, "the platform bears the shortfall"
    assert line(over, PLATFORM_CRYPTO_TOLERANCE) == -10_000, "and keeps the excess"
    clearing = channel_clearing("eth")
    assert line(exact, clearing) - line(short, clearing) == 50_000, "the chain holds less"
    merchant = [p for p in short if p.account.startswith("merchant:")]
    assert merchant == [p for p in exact if p.account.startswith("merchant:")]
