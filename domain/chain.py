"""Crypto deposits, decided without I/O: how deep a transfer is, what a deposit address has
received, and whether that settles the payment.

Amounts are integers in the asset's minor unit (wei for ETH, 6-decimal units for USDT). A
transfer counts only while its block is canonical (not orphaned) and only in the asset the
payment is due in; anything else sent to the address is kept as an event but pays nothing.
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


def confirmations(block_number: int, head: int) -> int:
    """A transfer in the head block has one confirmation; one above the head (a head we read
    before the block arrived) has none."""
    return max(0, head - block_number + 1)


def confirming(state: Deposit, due: int) -> bool:
    """Paid in full on the chain, waiting only for depth: the payment is held open (its expiry
    put off) so that a customer who paid in time is not expired by a slow chain."""
    return state.state is DepositState.PROCESSING and state.received >= due


def taken_back(state: Deposit, due: int) -> bool:
    """A deposit credited as paid whose transfers the canonical chain no longer holds, at any
    depth, in full: a reorg removed them, so the credit is reversed. One only pushed deeper,
    or re-included in a replacing block, keeps its credit."""
    return state.received < due


def deposit(
    due: int, asset: str, transfers: Iterable[Transfer], head: int, required: int
) -> Deposit:
    """What the address has received in `asset` on the canonical chain, and whether it is paid
    at depth `required`: confirmed only once transfers at that depth add up to the amount due."""
    if due <= 0 or required < 1:
        raise ValueError("a deposit is due a positive amount at a depth of at least 1")
    counted = [t for t in transfers if not t.orphaned and t.asset == asset]
    received = sum(t.amount for t in counted)
    deep = [t for t in counted if confirmations(t.block_number, head) >= required]
    confirmed = sum(t.amount for t in deep)
    shallowest = min((confirmations(t.block_number, head) for t in counted), default=0)
    if confirmed >= due:
        state = DepositState.CONFIRMED
    elif counted:
        state = DepositState.PROCESSING
    else:
        state = DepositState.AWAITING
    return Deposit(state, received, confirmed, shallowest, required)
