"""`juhe risk …`: the risk API's lists and rule sets from a shell, for operators with database
access. The same validation, audit records and announcements as the API; the actor is
`cli:<os user>`. Rule sets are the API's JSON, given as text, `@file`, or `-` for stdin."""

from __future__ import annotations

import argparse
import getpass
from datetime import UTC, datetime
from typing import Any

import msgspec

from cli.channels import _decode
from config import Settings
from gateway import risk as ops
from gateway.errors import ApiError
from gateway.risk_schemas import CreateListEntry, RuleSetIn
from infra import audit, db, redisclient, risk
from infra.invalidation import announce
from infra.keys import Keys

LISTS = ("block", "allow")
KINDS = ("ip", "email", "domain", "device", "card", "bin", "country", "customer")
READS = {"show", "versions"}


def _expiry(text: str) -> int:
    """`--expires` as unix seconds or an ISO 8601 time (UTC unless it says otherwise)."""
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("unix seconds or an ISO 8601 time") from None
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("risk", help="risk control: block and allow lists, rule sets")
    rsub = p.add_subparsers(dest="action", required=True)
    block = rsub.add_parser("block", help="add customer IPs or e-mails to the block list")
    block.add_argument("--ip", action="append")
    block.add_argument("--email", action="append")
    lists = rsub.add_parser("list", help="block and allow list entries")
    lsub = lists.add_subparsers(dest="list_action", required=True)
    show = lsub.add_parser("show", help="entries, newest first")
    show.add_argument("--list", choices=LISTS)
    show.add_argument("--kind", choices=KINDS)
    add = lsub.add_parser("add", help="add an entry")
    add.add_argument("list", choices=LISTS)
    add.add_argument("kind", choices=KINDS)
    add.add_argument("value")
    add.add_argument("--reason")
    add.add_argument("--expires", type=_expiry, help="unix seconds or ISO 8601")
    lsub.add_parser("remove", help="remove an entry").add_argument("id")
    rules = rsub.add_parser("rules", help="versioned rule sets")
    usub = rules.add_subparsers(dest="rules_action", required=True)
    usub.add_parser("show", help="the live rule set")
    usub.add_parser("versions", help="every version, newest first")
    for name, text in (("publish", "publish a new version"), ("draft", "save a draft")):
        usub.add_parser(name, help=text).add_argument(
            "--json", required=True, help="the API's JSON: text, @file, or - for stdin"
        )
    usub.add_parser("rollback", help="make an earlier version live").add_argument(
        "version", type=int
    )


def _action(args: argparse.Namespace) -> str:
    return getattr(args, "list_action", None) or getattr(args, "rules_action", None) or "block"


async def run(settings: Settings, args: argparse.Namespace) -> Any:
    """The operation's answer as plain data; `ApiError` for a refusal."""
    who = audit.Actor(f"cli:{getpass.getuser()}", "platform")
    pool = await db.create_pool(settings.postgres.dsn, 1, 2)
    try:
        answer = await _dispatch(pool, who, args)
    finally:
        await pool.close()
    if _action(args) not in READS:
        redis = redisclient.connect(settings.redis.url)
        try:
            await announce(redis, Keys(settings.redis.prefix), risk=True)
        finally:
            await redis.aclose()
    return msgspec.to_builtins(answer)


def _entry(fields: dict[str, Any]) -> CreateListEntry:
    try:
        return msgspec.convert({k: v for k, v in fields.items() if v is not None}, CreateListEntry)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "invalid_request_error", "invalid_field", str(exc)) from None


async def _block(pool: Any, who: audit.Actor, args: argparse.Namespace) -> dict[str, int]:
    """The first blocklists' command: IPs and e-mails onto the block list (already there is
    no error)."""
    counts = {"blocked_ips": 0, "blocked_emails": 0}
    for kind, values, count in (
        ("ip", args.ip, "blocked_ips"),
        ("email", args.email, "blocked_emails"),
    ):
        for value in values or ():
            try:
                await ops.add_entry(
                    pool, who, _entry({"list": "block", "kind": kind, "value": value})
                )
            except ApiError as exc:
                if exc.code != "list_entry_exists":
                    raise
            counts[count] += 1
    return counts


async def _dispatch(pool: Any, who: audit.Actor, args: argparse.Namespace) -> Any:
    match args.action, _action(args):
        case "block", _:
            return await _block(pool, who, args)
        case "list", "show":
            rows = await risk.entries(pool, args.list, args.kind, 100)
            return {"data": [ops.entry_view(r) for r in rows[:100]], "has_more": len(rows) > 100}
        case "list", "add":
            fields = {
                "list": args.list,
                "kind": args.kind,
                "value": args.value,
                "reason": args.reason,
                "expires_at": args.expires,
            }
            return await ops.add_entry(pool, who, _entry(fields))
        case "list", "remove":
            return await ops.remove_entry(pool, who, args.id)
        case "rules", "show":
            return await ops.live(pool)
        case "rules", "versions":
            rows = await risk.versions(pool, 100)
            return {"data": [ops.version_view(r, bool(r["live"])) for r in rows[:100]]}
        case "rules", "publish" | "draft":
            req = _decode(args.json, RuleSetIn)
            return await ops.save(pool, who, req, publish=args.rules_action == "publish")
        case "rules", "rollback":
            return await ops.publish(pool, who, args.version)
    raise ValueError(args.action)
