"""`juhe recon …`: reconciliation with channels from a shell (operators with database access,
a daily cron job). The same fetch, run and audit record as `POST /api/v1/admin/reconciliation/
runs`; the actor is `cli:<os user>`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from adapters.base import ChannelError
from config import Settings
from gateway.errors import invalid
from gateway.reconciliation import parse_day, run_view, statement_refused, uploaded
from infra import audit, db, reconciliation
from infra.channels import ChannelRegistry
from infra.secretbox import SecretBox


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recon", help="reconciliation with channels")
    rsub = p.add_subparsers(dest="action", required=True)
    run_cmd = rsub.add_parser("run", help="fetch a channel's daily statement and reconcile it")
    run_cmd.add_argument("--channel", required=True, help="the channel's code, e.g. sim")
    run_cmd.add_argument("--day", required=True, help="the UTC day, YYYY-MM-DD")
    run_cmd.add_argument(
        "--file",
        help="a statement CSV to reconcile instead of fetching it (the API's defaults "
        "for its columns)",
    )


async def run(settings: Settings, args: argparse.Namespace) -> Any:
    """The run as the API shows it; `ApiError` for a refusal."""
    day = parse_day(args.day, "--day")
    try:
        text = await asyncio.to_thread(Path(args.file).read_text) if args.file else None
    except (OSError, UnicodeDecodeError) as exc:
        raise invalid("invalid_field", f"cannot read the file: {exc}", "--file") from None
    who = audit.Actor(f"cli:{getpass.getuser()}", "platform")
    box = SecretBox(settings.secrets.keys, settings.secrets.active)
    pool = await db.create_pool(settings.postgres.dsn, 1, 2)
    try:
        async with aiohttp.ClientSession() as http:
            registry = ChannelRegistry(pool, box, http)
            await registry.refresh()
            if text is not None:
                statement = uploaded(registry.specs, args.channel, text, None)
            else:
                try:
                    statement = await reconciliation.fetch(registry, args.channel, day)
                except ChannelError as exc:
                    raise statement_refused(exc) from None
            row, made = await reconciliation.run(pool, args.channel, day, statement, who)
    finally:
        await pool.close()
    return msgspec.to_builtins(run_view(row, replayed=not made))
