"""`juhe <subcommand>`: one entry point for every process and admin task."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import orjson
import uvloop

from cli import chain, channels, recon, risk
from config import Settings, load_settings
from config.published import packaged, published_credentials, published_settings, refusal
from domain.fees import PriceBps
from domain.money import parse_amount
from domain.targets import UnsafeTarget, check_target
from infra import db
from infra.logs import setup_logging
from infra.secretbox import SecretBox

DEMO_MERCHANT = "Demo merchant"
# The commands that run (a part of) the node; the others are tools an operator fixes it with.
NODE_COMMANDS = frozenset({"up", "migrate", "gateway", "worker", "simulator", "signer"})


def _price_bps(text: str) -> int:
    """`--fee-bps`, within the bounds every price has (domain.fees)."""
    try:
        return msgspec.convert(int(text), PriceBps)
    except (ValueError, msgspec.ValidationError) as exc:
        raise argparse.ArgumentTypeError(f"a fee in basis points: {exc}") from None


def _box(settings: Settings) -> SecretBox:
    return SecretBox(settings.secrets.keys, settings.secrets.active)


def _refuse(published: list[str]) -> None:
    if published:
        print(refusal(published), file=sys.stderr)
        raise SystemExit(2)


def check_settings(settings: Settings) -> None:
    """Outside development, the node does not start with a secret from this repository in its
    settings: anyone could sign its channels' callbacks or open what it seals."""
    if settings.node.profile != "development":
        _refuse(published_settings(settings, packaged()))


def check_stored(settings: Settings) -> None:
    """Nor with one in a channel's stored credentials: a database seeded from the defaults
    (in development, say) keeps them whatever the settings say now."""
    if settings.node.profile != "development":
        from infra.channels import stored_credentials

        stored = asyncio.run(stored_credentials(settings.postgres.dsn, _box(settings)))
        _refuse(published_credentials(stored, packaged()))


AUTOVACUUM_OFF = (
    "juhe: PostgreSQL's autovacuum is off: without it the payment tables bloat with dead rows "
    "and queries keep the plans of empty tables, so a node slows as its history grows; turn it "
    "on, or run VACUUM ANALYZE regularly"
)


async def migrate(settings: Settings) -> dict[str, object]:
    """Migrations, then the config file's channels for a database that lacks them, then the
    secrets older versions stored in plaintext sealed (a data step: SQL has no key)."""
    from infra.channels import seed_from_config
    from infra.sealing import seal_legacy

    dsn, box = settings.postgres.dsn, _box(settings)
    await db.ensure_database(dsn)
    applied = await db.migrate(dsn)
    seeded = await seed_from_config(dsn, settings.channels, box)
    conn = await db.connect(dsn)
    try:
        sealed = await seal_legacy(conn, box)
        if await conn.fetchval("SHOW autovacuum") != "on":
            print(AUTOVACUUM_OFF, file=sys.stderr)
    finally:
        await conn.close()
    return {"applied": applied, "channels_seeded": seeded, "secrets_sealed": sealed}


def _migrate(settings: Settings) -> None:
    print(orjson.dumps(asyncio.run(migrate(settings))).decode())
    check_stored(settings)


def _gateway(settings: Settings, args: argparse.Namespace) -> None:
    from gateway.server import run

    check_stored(settings)
    run(settings, args.processes or settings.gateway.processes)


def _worker(settings: Settings, args: argparse.Namespace) -> None:
    from workers.pools import run_pool

    check_stored(settings)
    setup_logging(args.pool, settings.logging.level)
    uvloop.run(run_pool(args.pool, settings))


def _simulator(settings: Settings) -> None:
    from adapters.simulator.server import serve

    setup_logging("simulator", settings.logging.level)
    uvloop.run(serve(settings))


def _signer(settings: Settings) -> None:
    from signer.server import serve

    setup_logging("signer", settings.logging.level)
    uvloop.run(serve(settings))


async def _create_merchant(settings: Settings, args: argparse.Namespace) -> dict[str, str]:
    from infra.merchants import create_merchant

    conn = await db.connect(settings.postgres.dsn)
    try:
        created = await create_merchant(
            conn,
            _box(settings),
            name=args.name,
            notify_url=args.notify_url,
            currencies=args.currency or ["USD", "EUR", "TWD", "JPY", "BTC", "ETH", "USDT"],
            fee_bps=settings.fees.merchant_bps if args.fee_bps is None else args.fee_bps,
            fee_fixed_minor=settings.fees.merchant_fixed_minor,
            min_amount={c: parse_amount(v, c) for c, v in (args.min or [])},
            max_amount={c: parse_amount(v, c) for c, v in (args.max or [])},
        )
    finally:
        await conn.close()
    return {
        "id": created.id,
        "key_id": created.key_id,
        "secret": created.secret,
        "webhook_secret": created.webhook_secret,
    }


async def demo_merchant(settings: Settings) -> dict[str, str]:
    """The demo merchant `make run` prints, created on first use (its secrets opened: they are
    printed on purpose)."""
    from infra.sealing import API_KEY, WEBHOOK

    conn = await db.connect(settings.postgres.dsn)
    try:
        row = await conn.fetchrow(
            """SELECT m.id, k.key_id, k.secret, m.webhook_secret FROM merchants m
               JOIN api_keys k ON k.merchant_id = m.id AND k.revoked_at IS NULL
               WHERE m.name = $1 ORDER BY m.created_at LIMIT 1""",
            DEMO_MERCHANT,
        )
    finally:
        await conn.close()
    if row:
        box = _box(settings)
        return {
            "id": row["id"],
            "key_id": row["key_id"],
            "secret": API_KEY.open(box, row["key_id"], row["secret"]),
            "webhook_secret": WEBHOOK.open(box, row["id"], row["webhook_secret"]),
        }
    notify = f"http://{settings.simulator.host}:{settings.simulator.port}/_sim/webhooks"
    args = argparse.Namespace(
        name=DEMO_MERCHANT, notify_url=notify, currency=None, fee_bps=None, min=None, max=None
    )
    return await _create_merchant(settings, args)


def _up(settings: Settings) -> None:
    from workers.supervisor import Supervisor, children, multiproc_dir

    setup_logging("supervisor", settings.logging.level)
    _migrate(settings)
    demo = asyncio.run(demo_merchant(settings))
    g, s = settings.gateway, settings.simulator
    print(
        "\nJuhe is starting:\n"
        f"  gateway    {g.public_url}   (health /healthz, metrics /metrics, "
        "API /api/v1, OpenAPI /api/v1/openapi.json)\n"
        f"  simulator  http://{s.host}:{s.port}\n"
        + (
            f"  chain      http://127.0.0.1:{settings.chain.local_node_port}   (anvil; "
            "juhe chain pay|mine)\n"
            if settings.chain.local_node_port
            else ""
        )
        + f"  demo merchant: {orjson.dumps(demo).decode()}\n"
        "Ctrl-C stops everything.\n",
        flush=True,
    )
    uvloop.run(Supervisor(settings, children(settings, multiproc_dir())).run())


def _chain(settings: Settings, args: argparse.Namespace) -> None:
    from infra import localchain

    try:
        if args.action == "node":
            setup_logging("chain-node", settings.logging.level)
            uvloop.run(localchain.serve(settings))
        else:
            print(orjson.dumps(asyncio.run(chain.run(settings, args))).decode())
    except localchain.NotDevelopment as exc:
        raise SystemExit(f"juhe chain: {exc}") from None


def _dev_reset(settings: Settings, args: argparse.Namespace) -> None:
    """Empty a development node: its database, Redis keys and queues (stop it first; the next
    `make run` starts from scratch). Never in production, and never without --yes."""
    from infra import reset

    if settings.node.profile != "development":
        sys.exit("juhe dev reset: only for a development node (node.profile = development)")
    if not args.yes:
        sys.exit(
            f"juhe dev reset: this deletes database {settings.postgres.dsn.rsplit('/', 1)[1]!r}, "
            f"Redis keys {settings.redis.prefix}:* and queues {settings.rabbitmq.prefix}.*; "
            "add --yes"
        )

    async def run() -> dict[str, int]:
        return await reset.wipe(settings, await reset.channel_codes(settings))

    print(orjson.dumps(asyncio.run(run())).decode())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="juhe", description="Juhe aggregated payment gateway")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="create the database if needed and apply sql/ migrations")
    gw = sub.add_parser("gateway", help="run the HTTP gateway")
    gw.add_argument("--processes", type=int, default=0)
    worker = sub.add_parser("worker", help="run one worker pool")
    worker.add_argument(
        "pool", choices=["relay", "risk", "channel", "ledger", "notify", "scheduler", "chain"]
    )
    sub.add_parser("simulator", help="run the channel simulator")
    sub.add_parser("signer", help="run the hot-wallet signer (crypto refunds and payouts)")
    sub.add_parser("up", help="migrate, then run everything under one supervisor")
    merchants = sub.add_parser("merchants", help="merchant administration")
    msub = merchants.add_subparsers(dest="action", required=True)
    msub.add_parser("demo", help="the demo merchant's id and keys (as `make run` prints them)")
    create = msub.add_parser("create", help="create a merchant and its first API key")
    create.add_argument("--name", required=True)
    create.add_argument("--notify-url", required=True)
    create.add_argument("--currency", action="append", help="repeat for each currency")
    create.add_argument("--fee-bps", type=_price_bps)
    create.add_argument("--min", nargs=2, action="append", metavar=("CURRENCY", "AMOUNT"))
    create.add_argument("--max", nargs=2, action="append", metavar=("CURRENCY", "AMOUNT"))
    risk.add_parser(sub)
    dev = sub.add_parser("dev", help="development node tools")
    dsub = dev.add_subparsers(dest="action", required=True)
    wipe = dsub.add_parser("reset", help="empty the database, Redis keys and queues")
    wipe.add_argument("--yes", action="store_true", help="really delete everything")
    admin = sub.add_parser("admin", help="identity administration")
    asub = admin.add_subparsers(dest="action", required=True)
    superuser = asub.add_parser(
        "create-superuser",
        help="the first platform administrator (password from JUHE_ADMIN_PASSWORD or a prompt)",
    )
    superuser.add_argument("--email", required=True)
    asub.add_parser("rotate-signing-key", help="a new JWT signing key; old tokens stay valid")
    asub.add_parser(
        "reseal-secrets",
        help="seal every stored secret with the active key (after adding and activating one)",
    )
    channels.add_parser(sub)
    recon.add_parser(sub)
    chain.add_parser(sub)
    return p


def _admin(settings: Settings, args: argparse.Namespace) -> None:
    from cli.admin import AdminError, run
    from domain.credentials import PasswordRejected

    try:
        result = asyncio.run(
            run(settings.postgres.dsn, _box(settings), args.action, getattr(args, "email", None))
        )
    except (AdminError, PasswordRejected) as exc:
        print(f"juhe admin: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(orjson.dumps(result).decode())


def _api_command(
    settings: Settings,
    args: argparse.Namespace,
    run: Callable[[Settings, argparse.Namespace], Awaitable[Any]],
) -> None:
    """A command that answers what the API would: its JSON, or the API's refusal (exit 2)."""
    from gateway.errors import ApiError

    try:
        result = asyncio.run(run(settings, args))
    except ApiError as exc:
        print(f"juhe {args.command}: {exc.code}: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None
    print(orjson.dumps(result).decode())


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    settings = load_settings()
    if args.command in NODE_COMMANDS:
        check_settings(settings)
    match args.command:
        case "migrate":
            _migrate(settings)
        case "gateway":
            _gateway(settings, args)
        case "worker":
            _worker(settings, args)
        case "simulator":
            _simulator(settings)
        case "signer":
            _signer(settings)
        case "up":
            _up(settings)
        case "merchants" if args.action == "demo":
            print(orjson.dumps(asyncio.run(demo_merchant(settings))).decode())
        case "merchants":
            try:  # here, not in _create_merchant: the demo merchant's sink is on loopback
                check_target(args.notify_url, allow_private=settings.notify.allow_private_targets)
            except UnsafeTarget as exc:
                raise SystemExit(f"juhe merchants create: --notify-url: {exc}") from None
            print(orjson.dumps(asyncio.run(_create_merchant(settings, args))).decode())
        case "risk":
            _api_command(settings, args, risk.run)
        case "admin":
            _admin(settings, args)
        case "channels":
            _api_command(settings, args, channels.run)
        case "recon":
            _api_command(settings, args, recon.run)
        case "dev":
            _dev_reset(settings, args)
        case "chain":
            _chain(settings, args)


if __name__ == "__main__":
    main(sys.argv[1:])
