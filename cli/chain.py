"""`juhe chain …`: the development chain (infra.localchain). `node` runs it (what `make run`
starts); `pay` sends ETH or test USDT from one of its funded accounts, as a customer's wallet
would; `mine` adds blocks, so confirmations can be watched. The chain libraries are imported
only when a chain command runs: every pool process parses these commands."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

import orjson

from config import Settings
from domain.money import parse_amount
from infra import channels, db
from infra.secretbox import SecretBox

if TYPE_CHECKING:
    from web3 import AsyncWeb3


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chain", help="the local development chain (anvil)")
    csub = p.add_subparsers(dest="action", required=True)
    csub.add_parser("node", help="run anvil with the test USDT and the eth channel")
    pay = csub.add_parser("pay", help="send ETH or USDT from a funded account of the chain")
    pay.add_argument("address", help="where to, e.g. a payment's crypto.address")
    pay.add_argument("amount", help="in major units, e.g. 25.50")
    pay.add_argument("asset", choices=["ETH", "USDT"])
    pay.add_argument("--account", type=int, default=1, help="which funded account pays (1-9)")
    mine = csub.add_parser("mine", help="mine blocks")
    mine.add_argument("blocks", type=int, nargs="?", default=1)


async def _usdt(settings: Settings, w3: AsyncWeb3) -> Any:
    from infra import localchain

    box = SecretBox(settings.secrets.keys, settings.secrets.active)
    conn = await db.connect(settings.postgres.dsn)
    try:
        row = await channels.fetch(conn, localchain.CHANNEL)
    finally:
        await conn.close()
    if row is None:
        raise SystemExit("juhe chain pay: no eth channel yet; is `make run` running?")
    token = channels.credentials_of(row, box)["usdt_contract"]
    abi = orjson.loads(localchain.ARTIFACT.read_bytes())["abi"]
    return w3.eth.contract(address=w3.to_checksum_address(token), abi=abi)


async def run(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from infra import localchain

    w3 = localchain.connect(settings)
    if args.action == "mine":
        await w3.provider.make_request("anvil_mine", [hex(args.blocks)])
        return {"head": await w3.eth.block_number}
    payer = (await w3.eth.accounts)[args.account]
    to = w3.to_checksum_address(args.address)
    amount = parse_amount(args.amount, args.asset)
    if args.asset == "ETH":
        tx = await w3.eth.send_transaction({"from": payer, "to": to, "value": amount})
    else:
        usdt = await _usdt(settings, w3)
        tx = await usdt.functions.transfer(to, amount).transact({"from": payer})
    receipt = await w3.eth.wait_for_transaction_receipt(tx)
    return {
        "tx_hash": "0x" + bytes(tx).hex(),
        "block": receipt["blockNumber"],
        "from": payer.lower(),
        "to": to.lower(),
        "amount_minor": str(amount),
        "asset": args.asset,
    }
