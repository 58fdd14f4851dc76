"""`juhe channels …`: the admin API's channel operations from a shell, for operators with
database access (bootstrap, incidents). The same validation and audit records as the API; the
actor is `cli:<os user>`. Channel bodies are the API's JSON, given as text, `@file`, or `-`
for standard input, so credentials need not appear in the process list."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

import msgspec

from config import Settings
from gateway import channels as ops
from gateway.channel_schemas import CreateChannel, SwitchOver, UpdateChannel
from gateway.errors import ApiError
from infra import audit, channels, db, redisclient
from infra.invalidation import announce
from infra.keys import Keys
from infra.secretbox import SecretBox


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("channels", help="channel administration")
    csub = p.add_subparsers(dest="action", required=True)
    csub.add_parser("list", help="every channel and standing switch-over")
    for action, text in (
        ("show", "one channel"),
        ("enable", "let routing use the channel"),
        ("disable", "stop routing to the channel (work on it still finishes)"),
    ):
        csub.add_parser(action, help=text).add_argument("code")
    create = csub.add_parser("create", help="a new channel from the API's JSON body")
    create.add_argument("--json", required=True, help="JSON text, @file, or - for stdin")
    update = csub.add_parser("update", help="change the fields given in the JSON body")
    update.add_argument("code")
    update.add_argument("--json", required=True, help="JSON text, @file, or - for stdin")
    switch = csub.add_parser("switch-over", help="send a merchant's traffic to another channel")
    switch.add_argument("code")
    switch.add_argument("--to", required=True, dest="to_channel")
    switch.add_argument("--merchant", default=channels.ALL_MERCHANTS, help="default: everyone")
    switch.add_argument("--reason")
    back = csub.add_parser("switch-back", help="end a switch-over")
    back.add_argument("code")
    back.add_argument("--merchant", default=channels.ALL_MERCHANTS)


def _body(raw: str) -> bytes:
    if raw == "-":
        return sys.stdin.buffer.read()
    if raw.startswith("@"):
        return Path(raw[1:]).read_bytes()
    return raw.encode()


def _decode(raw: str, kind: type[msgspec.Struct]) -> Any:
    try:
        return msgspec.json.decode(_body(raw), type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise ApiError(400, "invalid_request_error", "invalid_body", str(exc)) from None


async def run(settings: Settings, args: argparse.Namespace) -> Any:
    """The operation's answer as plain data; `ApiError` for a refusal."""
    box = SecretBox(settings.secrets.keys, settings.secrets.active)
    who = audit.Actor(f"cli:{getpass.getuser()}", "platform")
    pool = await db.create_pool(settings.postgres.dsn, 1, 2)
    try:
        answer = await _dispatch(pool, box, who, args)
    finally:
        await pool.close()
    if args.action not in ("list", "show"):
        redis = redisclient.connect(settings.redis.url)
        try:
            await announce(redis, Keys(settings.redis.prefix), channels=True)
        finally:
            await redis.aclose()
    return msgspec.to_builtins(answer)


async def _dispatch(pool: Any, box: SecretBox, who: audit.Actor, args: argparse.Namespace) -> Any:
    match args.action:
        case "list":
            return {
                "data": [ops.view(r, box) for r in await channels.fetch_all(pool)],
                "switch_overs": [ops.switch_view(s) for s in await channels.switchovers(pool)],
            }
        case "show":
            row = await channels.fetch(pool, args.code)
            if row is None:
                raise ops.missing(args.code)
            return ops.view(row, box)
        case "create":
            return await ops.create_channel(pool, box, who, _decode(args.json, CreateChannel))
        case "update":
            req = _decode(args.json, UpdateChannel)
            return await ops.update_channel(pool, box, who, args.code, req)
        case "enable" | "disable":
            return await ops.set_enabled(pool, box, who, args.code, args.action == "enable")
        case "switch-over":
            fields = {"to_channel": args.to_channel, "merchant_id": args.merchant}
            if args.reason:
                fields["reason"] = args.reason
            try:
                req = msgspec.convert(fields, SwitchOver)
            except msgspec.ValidationError as exc:
                raise ApiError(400, "invalid_request_error", "invalid_field", str(exc)) from None
            return await ops.switch_over(pool, who, args.code, req)
        case "switch-back":
            return await ops.switch_back(pool, who, args.code, args.merchant)
    raise ValueError(args.action)
