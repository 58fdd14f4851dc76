"""Reconciliation with channels (issue 13, part C): platform users fetch and reconcile a
channel's daily statement (`settlements:approve`, audited) and read runs and discrepancies
(`settlements:read`). A run of a file already reconciled answers that run and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime

import asyncpg
import msgspec
import orjson
from aiohttp import web

from adapters.base import ChannelDeclined, ChannelError, Statement
from domain.access import Owner, Principal, Realm
from domain.ledger import Posting
from domain.money import format_amount
from domain.reconciliation import Columns, StatementError, adjustment, parse_statement
from gateway.access import actor, identify, require
from gateway.errors import ApiError, invalid
from gateway.payments import amount_of
from gateway.reconciliation_schemas import (
    DiscrepancyView,
    ResolveDiscrepancy,
    RunReconciliation,
    RunView,
    StatementColumns,
    Tally,
)
from gateway.state import decode, edge, json_answer, known_cursor, page_answer, page_limit
from infra import reconciliation

_PLATFORM = Owner(Realm.PLATFORM, None)  # platform-only: no merchant or agent owns it


def _ts(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


def _tally(count: int, sums: str) -> Tally:
    amounts = orjson.loads(sums)
    return Tally(count, {c: format_amount(int(v), c) for c, v in amounts.items()})


def run_view(r: asyncpg.Record, replayed: bool = False) -> RunView:
    return RunView(
        id=r["id"],
        channel=r["channel"],
        day=r["day"].isoformat(),
        file_sha256=r["file_sha256"],
        status=r["status"],
        channel_lines=_tally(r["channel_count"], r["channel_sums"]),
        juhe_records=_tally(r["juhe_count"], r["juhe_sums"]),
        matched=_tally(r["matched_count"], r["matched_sums"]),
        discrepancies=r["discrepancies"],
        actor=r["actor"],
        created=int(r["created_at"].timestamp()),
        replayed=replayed,
    )


def discrepancy_view(r: asyncpg.Record) -> DiscrepancyView:
    return DiscrepancyView(
        id=r["id"],
        run_id=r["run_id"],
        kind=r["kind"],
        type=r["type"],
        reference=r["reference"],
        juhe_id=r["juhe_id"],
        channel_value=r["channel_value"],
        juhe_value=r["juhe_value"],
        status=r["status"],
        action=r["action"],
        reason=r["reason"],
        resolved_by=r["resolved_by"],
        resolved_at=_ts(r["resolved_at"]),
        entry_id=r["entry_id"],
        created=int(r["created_at"].timestamp()),
    )


def parse_day(text: str, param: str = "day") -> date:
    """A UTC day that has begun: today's statement may be partial, a future one is empty."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise invalid("invalid_field", "day is a date, YYYY-MM-DD", param) from None
    if day > datetime.now(UTC).date():
        raise invalid("invalid_field", "day may not be in the future", param)
    return day


def statement_refused(exc: ChannelError) -> ApiError:
    """Why no statement could be had: an unknown channel 404, one without statements 400, the
    channel's refusal 502, no answer 503."""
    if isinstance(exc, reconciliation.StatementUnavailable):
        status = 404 if exc.code == "unknown_channel" else 400
        return invalid(exc.code, exc.message, "channel", status=status)
    if isinstance(exc, ChannelDeclined):
        return ApiError(502, "api_error", "statement_refused", exc.message)
    return ApiError(503, "api_error", "channel_unavailable", exc.message)


def uploaded(
    channels: Mapping[str, object], channel: str, text: str, given: StatementColumns | None
) -> Statement:
    """An uploaded statement of a known channel, read through its column mapping."""
    if channel not in channels:
        raise invalid("unknown_channel", f"no channel {channel!r}", "channel", status=404)
    given = given or StatementColumns()
    columns = Columns(**{**msgspec.structs.asdict(given), "succeeded": tuple(given.succeeded)})
    try:
        return Statement(text.encode(), parse_statement(text, columns))
    except StatementError as exc:
        raise invalid("invalid_statement", str(exc), "csv") from None


async def _reader(request: web.Request) -> Principal:
    who = (await identify(request, b"")).principal
    await require(request, who, "settlements:read", _PLATFORM)
    return who


async def run_reconciliation(request: web.Request) -> web.Response:
    """Fetch the channel's statement for the day and reconcile it: 201 with a new run, 200 with
    the earlier run of the same file."""
    e = edge(request)
    body = await request.read()
    who = (await identify(request, body)).principal
    await require(request, who, "settlements:approve", _PLATFORM)
    req = decode(body, RunReconciliation)
    day = parse_day(req.day)
    if req.csv is not None:
        statement = uploaded(e.channels.specs, req.channel, req.csv, req.columns)
    elif req.columns is not None:
        raise invalid("invalid_field", "columns map an uploaded csv", "columns")
    else:
        try:
            statement = await reconciliation.fetch(e.channels, req.channel, day)
        except ChannelError as exc:
            raise statement_refused(exc) from None
    row, made = await reconciliation.run(e.pg, req.channel, day, statement, actor(request, who))
    return json_answer(run_view(row, replayed=not made), 201 if made else 200)


async def list_runs(request: web.Request) -> web.Response:
    e = edge(request)
    await _reader(request)
    limit = page_limit(request, 20)
    after = await known_cursor(request, e.pg, "SELECT 1 FROM recon_runs WHERE id = $1")
    return page_answer(await reconciliation.runs(e.pg, after, limit + 1), limit, run_view)


async def get_run(request: web.Request) -> web.Response:
    e = edge(request)
    await _reader(request)
    row = await reconciliation.get_run(e.pg, request.match_info["id"])
    if row is None:
        raise invalid("resource_missing", "no such reconciliation run", "id", status=404)
    return json_answer(run_view(row))


async def list_discrepancies(request: web.Request) -> web.Response:
    """Discrepancies, oldest first, of one status (`status`) or one run (`run`)."""
    e = edge(request)
    await _reader(request)
    limit = page_limit(request, 50)
    after = await known_cursor(request, e.pg, "SELECT 1 FROM recon_discrepancies WHERE id = $1")
    rows = await reconciliation.discrepancies(
        e.pg, after, limit + 1, request.query.get("status"), request.query.get("run")
    )
    return page_answer(rows, limit, discrepancy_view)


async def resolve_discrepancy(request: web.Request) -> web.Response:
    """Ignore an open discrepancy, or adjust it with a balanced entry; with a reason, audited.
    409 when it is no longer open."""
    e = edge(request)
    body = await request.read()
    who = (await identify(request, body)).principal
    await require(request, who, "settlements:approve", _PLATFORM)
    req = decode(body, ResolveDiscrepancy)
    postings: list[Posting] = []
    if (req.action == "adjust") != (req.adjustment is not None):
        raise invalid(
            "invalid_field", "adjust takes an adjustment, and only adjust does", "adjustment"
        )
    if (a := req.adjustment) is not None:
        ceilings = e.settings.payments.max_amount
        amount = amount_of(a.amount, a.currency, ceilings, "adjustment.amount")
        try:
            postings = adjustment(a.debit, a.credit, a.currency, amount)
        except ValueError as exc:
            raise invalid("invalid_field", str(exc), "adjustment") from None
    try:
        row = await reconciliation.resolve(
            e.pg,
            request.match_info["id"],
            req.action,
            req.reason,
            postings,
            actor(request, who),
        )
    except reconciliation.NotOpen as exc:
        raise invalid(
            "discrepancy_closed", f"the discrepancy is {exc} already", status=409
        ) from None
    if row is None:
        raise invalid("resource_missing", "no such discrepancy", "id", status=404)
    return json_answer(discrepancy_view(row))
