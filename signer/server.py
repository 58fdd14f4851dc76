"""The signer's HTTP face: `POST /v1/transfers` signs one transfer (signer.policy) for a client
presenting the bearer token, and answers the raw transaction and its hash. It keeps no state:
the nonce and the fees come with the request (the adapter manages them), so signing the same
request twice gives the same transaction, and broadcasting it twice sends it once."""

from __future__ import annotations

import asyncio
import hmac
import logging
import signal
from typing import Any, TypeVar

import msgspec
import orjson
from aiohttp import web
from bip_utils import Bip44, Bip44Changes, Bip44Coins
from eth_account import Account

from config import Settings
from infra.httpserver import hide_versions, protect
from signer.policy import (
    Refused,
    SweepRequest,
    TransferRequest,
    sweep_transaction,
    transaction,
)

log = logging.getLogger("juhe.signer")
T = TypeVar("T")
SIGNER = web.AppKey("signer", "Signer")


class Signer:
    def __init__(self, settings: Settings) -> None:
        s = settings.signer
        if not s.key or not s.token:
            raise SystemExit("juhe signer: signer.key and signer.token must be set")
        self.account = Account.from_key(s.key)
        self.token = s.token.encode()
        self.tokens = dict(s.tokens)
        self.limits = dict(s.limits)
        self.deposits = (
            Bip44.FromExtendedKey(s.deposit_xprv, Bip44Coins.ETHEREUM).Change(
                Bip44Changes.CHAIN_EXT
            )
            if s.deposit_xprv
            else None
        )

    def deposit_key(self, index: int) -> str:
        assert self.deposits is not None
        return self.deposits.AddressIndex(index).PrivateKey().Raw().ToHex()


def _answer(status: int, body: dict) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _refused(status: int, code: str, message: str) -> web.Response:
    return _answer(status, {"error": {"code": code, "message": message}})


def _signed(signed: Any, sender: str) -> web.Response:
    return _answer(
        200,
        {
            "from": sender,
            "raw": "0x" + signed.raw_transaction.hex(),
            "hash": "0x" + signed.hash.hex(),
        },
    )


async def _decoded(request: web.Request, kind: type[T]) -> T | web.Response:
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").encode()
    if not hmac.compare_digest(given, request.app[SIGNER].token):
        return _refused(401, "unauthorized", "a valid bearer token is required")
    try:
        return msgspec.json.decode(await request.read(), type=kind)
    except msgspec.ValidationError as exc:
        return _refused(400, "invalid_request", str(exc))
    except msgspec.DecodeError:
        return _refused(400, "invalid_json", "the body is not JSON")


async def sign(request: web.Request) -> web.Response:
    """A transfer out of the hot wallet."""
    signer = request.app[SIGNER]
    ask = await _decoded(request, TransferRequest)
    if isinstance(ask, web.Response):
        return ask
    try:
        tx = transaction(ask, signer.tokens, signer.limits)
    except Refused as exc:
        return _refused(422, exc.code, exc.message)
    signed = signer.account.sign_transaction(tx)
    log.info(
        "transfer signed",
        extra={"asset": ask.asset, "nonce": ask.nonce, "tx_hash": "0x" + signed.hash.hex()},
    )
    return _signed(signed, signer.account.address)


async def sweep(request: web.Request) -> web.Response:
    """A deposit address's tokens to the hot wallet, signed with the deposit's own key."""
    signer = request.app[SIGNER]
    if signer.deposits is None:
        return _refused(422, "sweeps_unsupported", "the signer holds no deposit key")
    ask = await _decoded(request, SweepRequest)
    if isinstance(ask, web.Response):
        return ask
    try:
        tx = sweep_transaction(ask, signer.tokens, signer.account.address)
    except Refused as exc:
        return _refused(422, exc.code, exc.message)
    key = signer.deposit_key(ask.index)
    signed = Account.sign_transaction(tx, key)
    sender = Account.from_key(key).address
    log.info(
        "sweep signed",
        extra={"index": ask.index, "asset": ask.asset, "tx_hash": "0x" + signed.hash.hex()},
    )
    return _signed(signed, sender)


async def address(request: web.Request) -> web.Response:
    return _answer(200, {"address": request.app[SIGNER].account.address})


def make_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=16 * 1024)
    app[SIGNER] = Signer(settings)
    app.router.add_post("/v1/transfers", sign)
    app.router.add_post("/v1/sweeps", sweep)
    app.router.add_get("/v1/address", address)
    app.router.add_get("/healthz", lambda _: _answer(200, {"ok": True}))
    return protect(hide_versions(app))


async def serve(settings: Settings) -> None:
    """Until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(make_app(settings), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.signer.host, settings.signer.port).start()
        log.info("signer listening", extra={"port": settings.signer.port})
        await stop.wait()
    finally:
        await runner.cleanup()
