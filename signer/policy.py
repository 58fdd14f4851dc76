"""What the signer will sign, decided without I/O: a transfer of ETH, or of a token it knows,
to one address, within its per-transaction limit. The signer builds the transaction itself
from these fields, so a caller cannot smuggle in other calldata or another contract."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import msgspec
from eth_utils import to_checksum_address
from msgspec import Meta

from adapters.ethereum.wire import ADDRESS, MAX_GAS, transfer_call

Uint = Annotated[int, Meta(ge=0)]  # below 2**256, checked by `transaction`


class TransferRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    chain_id: Annotated[int, Meta(ge=1)]
    asset: str
    to: Annotated[str, Meta(pattern=ADDRESS.pattern)]
    amount: Annotated[int, Meta(gt=0)]
    nonce: Uint
    gas: Annotated[int, Meta(ge=21_000, le=MAX_GAS)]
    max_fee_per_gas: Annotated[int, Meta(ge=1)]
    max_priority_fee_per_gas: Uint


class Refused(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def transaction(
    request: TransferRequest, tokens: Mapping[str, str], limits: Mapping[str, int]
) -> dict[str, Any]:
    """The EIP-1559 transaction for the transfer, or `Refused`: an asset with no limit set
    cannot be sent at all, and a token only to the contract configured for it."""
    if max(request.amount, request.nonce, request.max_fee_per_gas) >= 2**256:
        raise Refused("out_of_range", "amounts, nonces and fees are 256-bit")
    limit = limits.get(request.asset)
    if limit is None:
        raise Refused("asset_not_allowed", f"the signer sends no {request.asset}")
    if request.amount > limit:
        raise Refused("over_limit", f"{request.asset}: more than the signer's per-transfer limit")
    if request.max_priority_fee_per_gas > request.max_fee_per_gas:
        raise Refused("invalid_fee", "the priority fee exceeds the maximum fee")
    fields: dict[str, Any] = {
        "chainId": request.chain_id,
        "nonce": request.nonce,
        "gas": request.gas,
        "maxFeePerGas": request.max_fee_per_gas,
        "maxPriorityFeePerGas": request.max_priority_fee_per_gas,
        "type": 2,
    }
    if request.asset == "ETH":
        return {
            **fields,
            "to": to_checksum_address(request.to),
            "value": request.amount,
            "data": "0x",
        }
    contract = tokens.get(request.asset)
    if contract is None or not ADDRESS.match(contract):
        raise Refused("asset_not_allowed", f"the signer knows no {request.asset} contract")
    data = transfer_call(request.to, request.amount)
    return {**fields, "to": to_checksum_address(contract), "value": 0, "data": data}


class SweepRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Move a deposit address's tokens to the signer's own hot wallet: the address is the
    deposit account's child `index`, whose key the signer derives."""

    chain_id: Annotated[int, Meta(ge=1)]
    index: Annotated[int, Meta(ge=0, lt=2**31)]
    asset: str
    amount: Annotated[int, Meta(gt=0)]
    nonce: Uint
    gas: Annotated[int, Meta(ge=21_000, le=MAX_GAS)]
    max_fee_per_gas: Annotated[int, Meta(ge=1)]
    max_priority_fee_per_gas: Uint


def sweep_transaction(
    request: SweepRequest, tokens: Mapping[str, str], hot_wallet: str
) -> dict[str, Any]:
    """The token transfer that sweeps a deposit: only ever to the hot wallet, so a caller
    that can ask for sweeps cannot send deposits anywhere else."""
    transfer = TransferRequest(
        chain_id=request.chain_id,
        asset=request.asset,
        to=hot_wallet,
        amount=request.amount,
        nonce=request.nonce,
        gas=request.gas,
        max_fee_per_gas=request.max_fee_per_gas,
        max_priority_fee_per_gas=request.max_priority_fee_per_gas,
    )
    if request.asset == "ETH":
        raise Refused("asset_not_allowed", "the signer sweeps tokens, not ETH")
    return transaction(transfer, tokens, {request.asset: request.amount})
