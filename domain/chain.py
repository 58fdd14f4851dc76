"""Crypto deposits, decided without I/O: how deep a transfer is, what a deposit address has
received, and whether that settles the payment.

Amounts are integers in the asset's minor unit (wei for ETH, 6-decimal units for USDT). A
transfer counts only while its block is canonical (not orphaned) and only in the asset the
payment is due in; anything else sent to the address is kept as an event but pays nothing.

Customers' wallets rarely send exactly what is due (an exchange takes its fee out of a
withdrawal, a wallet rounds). A `Tolerance` says how far short or over still pays: the payment
is credited what arrived, at most the amount due plus the tolerance, and the difference from
the amount due is the platform's (a line to `platform:crypto_tolerance`). What arrives beyond
that, and a deposit still short when its payment ends, are left to operations as
reconciliation discrepancies (`crypto_surplus`, `crypto_underpaid`): accepted, returned to the
sender, or adjusted, never lost and never credited by themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

NATIVE_LOG_INDEX = -1  # a native transfer is the transaction itself, not one of its logs


class DepositState(StrEnum):
    AWAITING = "awaiting"  # nothing in a canonical block yet
    PROCESSING = "processing"  # seen, not deep enough (or not enough yet)
    CONFIRMED = "confirmed"  # the amount due is in blocks at the required depth


@dataclass(frozen=True, slots=True)
class Transfer:
    """One chain event to a deposit address, as the watcher recorded it."""

    tx_hash: str
    log_index: int
    block_hash: str
    block_number: int
    address: str
    asset: str
    amount: int
    orphaned: bool = False


@dataclass(frozen=True, slots=True)
class Deposit:
    state: DepositState
    received: int  # in canonical blocks, at any depth
    confirmed: int  # in canonical blocks at the required depth
    confirmations: int  # of the shallowest transfer counted; 0 when none
    required: int

    def doc(self) -> dict[str, int | str]:
        """Its part of the payment's `crypto` view (amounts as minor-unit integers)."""
        return {
            "state": self.state.value,
            "received_minor": self.received,
            "confirmations": self.confirmations,
            "confirmations_required": self.required,
        }


@dataclass(frozen=True, slots=True)
class Tolerance:
    """How far what arrived may fall short of, or exceed, the amount due and still pay it:
    the larger of `bps` of the amount due and `minor` units of the asset."""

    bps: int = 0
    minor: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.bps <= 10_000 or self.minor < 0:
            raise ValueError("a tolerance is 0–10000 bps and a non-negative amount")

    def allowed(self, due: int) -> int:
        return max(due * self.bps // 10_000, self.minor)


EXACT = Tolerance()


@dataclass(frozen=True, slots=True)
class Credit:
    """What a deposit that pays its payment is credited, and what arrived beyond that."""

    credited: int  # the amount due, give or take the tolerated difference
    surplus: int  # beyond the tolerance: left to operations


def credit(confirmed: int, due: int, tolerance: Tolerance) -> Credit | None:
    """None while what is confirmed is short of the amount due by more than the tolerance."""
    allowed = tolerance.allowed(due)
    if confirmed < due - allowed:
        return None
    credited = min(confirmed, due + allowed)
    return Credit(credited, confirmed - credited)


def confirmations(block_number: int, head: int) -> int:
    """A transfer in the head block has one confirmation; one above the head (a head we read
    before the block arrived) has none."""
    return max(0, head - block_number + 1)


def confirming(state: Deposit, due: int, tolerance: Tolerance = EXACT) -> bool:
    """Paid enough on the chain, waiting only for depth: the payment is held open (its expiry
    put off) so that a customer who paid in time is not expired by a slow chain."""
    return state.state is DepositState.PROCESSING and state.received >= due - tolerance.allowed(due)


def taken_back(state: Deposit, credited: int) -> bool:
    """A deposit credited as paid whose transfers the canonical chain no longer holds, at any
    depth, in full: a reorg removed them, so the credit is reversed. One only pushed deeper,
    or re-included in a replacing block, keeps its credit."""
    return state.received < credited


def deposit(
    due: int,
    asset: str,
    transfers: Iterable[Transfer],
    head: int,
    required: int,
    tolerance: Tolerance = EXACT,
) -> Deposit:
    """What the address has received in `asset` on the canonical chain, and whether it is paid
    at depth `required`: confirmed once transfers at that depth add up to the amount due, less
    the tolerance."""
    if due <= 0 or required < 1:
        raise ValueError("a deposit is due a positive amount at a depth of at least 1")
    counted = [t for t in transfers if not t.orphaned and t.asset == asset]
    received = sum(t.amount for t in counted)
    deep = [t for t in counted if confirmations(t.block_number, head) >= required]
    confirmed = sum(t.amount for t in deep)
    shallowest = min((confirmations(t.block_number, head) for t in counted), default=0)
    if credit(confirmed, due, tolerance) is not None:
        state = DepositState.CONFIRMED
    elif counted:
        state = DepositState.PROCESSING
    else:
        state = DepositState.AWAITING
    return Deposit(state, received, confirmed, shallowest, required)
