"""A Bitcoin node we control, for the BTC channel's tests: no Bitcoin node can be installed on
this machine, so this answers the part of Bitcoin Core's JSON-RPC the adapter uses
(`getblockcount`, `getblockhash`, `getblock` at verbosity 2), with amounts as JSON numbers as
Core writes them, and lets a test pay an address, mine blocks and reorganise the tip. It is a
stand-in for the chain, not for our code: the adapter and the watcher run as they would
against a real node."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import web

from benchmarks.node import free_port


@dataclass
class Block:
    hash: str
    height: int
    previous: str | None
    txs: list[dict[str, Any]] = field(default_factory=list)


def _coins(sats: int) -> str:
    return f"{Decimal(sats) / 100_000_000:.8f}"


class StubBitcoinNode:
    def __init__(self) -> None:
        self.port = free_port()
        self.blocks = [Block(secrets.token_hex(32), 0, None)]
        self.mempool: list[dict[str, Any]] = []
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def pay(self, *outputs: tuple[str, int]) -> str:
        """A transaction paying each (address, satoshis), into the mempool; its txid."""
        txid = secrets.token_hex(32)
        vout = [
            {"n": n, "value": _coins(sats), "scriptPubKey": {"address": address}}
            for n, (address, sats) in enumerate(outputs)
        ]
        self.mempool.append({"txid": txid, "vout": vout})
        return txid

    def mine(self, count: int = 1) -> None:
        for _ in range(count):
            tip = self.blocks[-1]
            self.blocks.append(Block(secrets.token_hex(32), tip.height + 1, tip.hash, self.mempool))
            self.mempool = []

    def reorg(self, depth: int) -> None:
        """Replace the last `depth` blocks by as many empty ones: their transactions are gone."""
        del self.blocks[-depth:]
        self.mine(depth)

    def _answer(self, method: str, params: list[Any]) -> Any:
        if method == "getblockcount":
            return self.blocks[-1].height
        if method == "getblockhash":
            return self.blocks[int(params[0])].hash
        if method == "getblock":
            block = next(b for b in self.blocks if b.hash == params[0])
            found = {"hash": block.hash, "height": block.height, "tx": block.txs}
            if block.previous is not None:
                found["previousblockhash"] = block.previous
            return found
        raise KeyError(method)

    async def handle(self, request: web.Request) -> web.Response:
        call = await request.json()
        try:
            answer = {"result": self._answer(call["method"], call["params"]), "error": None}
        except (KeyError, IndexError, StopIteration):
            answer = {"result": None, "error": {"code": -32601, "message": "not found"}}
        # amounts as bare JSON numbers with 8 decimals, as Bitcoin Core writes them
        text = json.dumps(answer)
        for block in self.blocks:
            for tx in block.txs:
                for out in tx["vout"]:
                    text = text.replace(f'"{out["value"]}"', out["value"])
        return web.Response(text=text, content_type="application/json")
