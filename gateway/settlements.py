"""Balances and settlement statements (issue 13, part A).

A merchant sees its own; an agent its own, and its subtree's merchants' with `view_children`;
platform users with `settlements:read` anyone's. Running settlements and setting an entity's
terms take `settlements:approve` (finance, platform admins) and are audited. A statement is
also CSV (`format=csv`, its lines) and PDF (`format=pdf`, bilingual Traditional Chinese).
"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import msgspec
from aiohttp import web

from domain import views as domain_views
from domain.access import Realm
from domain.money import format_amount
from domain.settlement import TOTALS
from gateway.access import actor, entity_target, identify, require
from gateway.errors import invalid
from gateway.pdf import pdf_answer, render
from gateway.settlement_schemas import (
    Balances,
    BalanceView,
    CommissionTerms,
    LinePage,
    LineView,
    PutTerms,
    RunSettlements,
    SettlementRun,
    StatementDetail,
    StatementList,
    StatementView,
    TermsView,
)
from gateway.state import (
    Edge,
    csv_answer,
    decode,
    edge,
    int_query,
    json_answer,
    known_cursor,
    page_limit,
)
from gateway.withdrawals import hand_over
from infra import audit, settlement

_LINE_CSV = [
    *("id", "entry_id", "kind", "ref", "at", "payment_id", "merchant_id", *TOTALS, "net"),
    *("level", "mode", "rate_bps", "fixed"),
]
# Statement labels, Traditional Chinese first (the PDF).
LABELS = {
    "gross": "交易總額 Gross",
    "refunds": "退款 Refunds",
    "fees": "手續費 Fees",
    "commission": "佣金 Commission",
    "reserve": "保證金 Reserve",
    "adjustments": "調整 Adjustments",
    "carried": "結轉 Carried",
    "paid_out": "已提現 Paid out",
    "net": "淨額 Net",
}
STATEMENT_TITLE = "結算單 Settlement statement"


def _amount(value: int, currency: str) -> str:
    return format_amount(value, currency)


def _ts(value: datetime) -> int:
    return int(value.timestamp())


def statement_view(r: asyncpg.Record) -> StatementView:
    return StatementView(**domain_views.statement_view(r))


def terms_view(r: asyncpg.Record) -> CommissionTerms | None:
    """The terms an agent's commission line was earned under, if it has any on record."""
    if r["level"] is None:
        return None
    return CommissionTerms(
        r["level"], r["mode"], r["rate_bps"], _amount(r["fixed_minor"], r["currency"])
    )


def terms_text(terms: CommissionTerms | None) -> str:
    """A line's terms in a statement PDF's column: level, mode, rate."""
    if terms is None:
        return ""
    rate = {
        "markup": f"{terms.rate_bps} bps + {terms.fixed}",
        "percentage": f"{terms.rate_bps} bps",
    }
    return f"L{terms.level} {terms.mode} {rate.get(terms.mode, terms.fixed)}"


def _terms_columns(terms: CommissionTerms | None) -> dict[str, object]:
    if terms is None:
        return {"level": None, "mode": None, "rate_bps": None, "fixed": None}
    return msgspec.structs.asdict(terms)


def line_view(r: asyncpg.Record) -> LineView:
    c = r["currency"]
    return LineView(
        id=r["id"],
        entry_id=r["entry_id"],
        kind=r["kind"],
        ref=r["ref"],
        at=_ts(r["at"]),
        payment_id=r["payment_id"],
        merchant_id=r["merchant_id"],
        **{name: _amount(r[name], c) for name in (*TOTALS, "net")},
        commission_terms=terms_view(r),
    )


def when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def statement_pdf(font: str, row: asyncpg.Record, lines: list[asyncpg.Record]) -> bytes:
    """The statement as a PDF: its facts and totals, then every line."""
    c = row["currency"]
    amounts = (*TOTALS, "net")
    facts = [
        ("結算單號 Statement", row["id"]),
        ("對象 Entity", f"{row['entity_kind']} {row['entity_id']}"),
        ("幣別 Currency", c),
        ("期間 Period", f"{when(row['period_start'])} – {when(row['period_end'])}"),
        ("週期 Cycle", row["cycle"]),
        ("狀態 Status", row["status"]),
        *((LABELS[name], _amount(row[name], c)) for name in amounts),
    ]
    columns = ["時間 At", "類型 Kind", "參考 Ref", *(LABELS[name] for name in amounts)]
    table = [
        [when(r["at"]), r["kind"], r["ref"], *(_amount(r[name], c) for name in amounts)]
        for r in lines
    ]
    if row["entity_kind"] == "agent":
        columns.append("分潤條件 Terms")
        for cells, r in zip(table, lines, strict=True):
            cells.append(terms_text(terms_view(r)))
    return render(font, STATEMENT_TITLE, facts, columns, table)


async def get_balances(request: web.Request) -> web.Response:
    """The caller's own balances per currency; platform users name the entity."""
    who = (await identify(request, b"")).principal
    entity_id = request.query.get("entity")
    if entity_id is None:
        if who.realm is Realm.PLATFORM or who.org_id is None:
            await require(request, who, "settlements:read")
            raise invalid("missing_parameter", "entity is required for platform users", "entity")
        entity_id = who.org_id
    target = await entity_target(request, who, entity_id, "settlements:read", "entity")
    rows = await settlement.entity_balances(edge(request).pg, target)
    data = [
        BalanceView(
            "balance",
            currency,
            _amount(b.pending, currency),
            _amount(b.available, currency),
            _amount(b.reserved, currency),
            _amount(b.paid_out, currency),
        )
        for currency, b in rows.items()
    ]
    return json_answer(Balances("balances", target.id, target.kind, data))


async def list_statements(request: web.Request) -> web.Response:
    e = edge(request)
    who = (await identify(request, b"")).principal
    target = await entity_target(
        request, who, request.match_info["entityId"], "settlements:read", "entityId"
    )
    limit = page_limit(request, 20)
    after = await known_cursor(
        request,
        e.pg,
        "SELECT 1 FROM settlement_statements WHERE id = $1 AND entity_id = $2",
        target.id,
    )
    rows = await settlement.statements(
        e.pg, target.id, after, limit + 1, request.query.get("currency")
    )
    data = [statement_view(r) for r in rows[:limit]]
    return json_answer(StatementList("list", data, len(rows) > limit))


async def get_statement(request: web.Request) -> web.Response:
    """A statement with its lines, a page at a time (`starting_after` a line id), or all of
    them as CSV or PDF."""
    e = edge(request)
    who = (await identify(request, b"")).principal
    target = await entity_target(
        request, who, request.match_info["entityId"], "settlements:read", "entityId"
    )
    row = await settlement.statement(e.pg, target.id, request.match_info["settlementId"])
    if row is None:
        raise invalid("resource_missing", "no such settlement", "settlementId", status=404)
    export = request.query.get("format")
    if export == "pdf":
        body = statement_pdf(
            e.settings.settlement.pdf_font, row, await settlement.lines(e.pg, row["id"], None, None)
        )
        return pdf_answer(body, f"{row['id']}.pdf")
    if export == "csv":
        lines = await settlement.lines(e.pg, row["id"], None, None)
        records = [
            {
                **{name: _amount(r[name], r["currency"]) for name in (*TOTALS, "net")},
                **{k: r[k] for k in ("id", "entry_id", "kind", "ref", "payment_id", "merchant_id")},
                "at": _ts(r["at"]),
                **_terms_columns(terms_view(r)),
            }
            for r in lines
        ]
        return csv_answer(records, _LINE_CSV, f"{row['id']}.csv")
    limit = page_limit(request, 50)
    after = int_query(request, "starting_after")
    if after is not None:
        await known_cursor(
            request,
            e.pg,
            "SELECT 1 FROM settlement_lines WHERE id = $1::text::bigint AND statement_id = $2",
            row["id"],
        )
    lines = await settlement.lines(e.pg, row["id"], after, limit + 1)
    page = LinePage("list", [line_view(r) for r in lines[:limit]], len(lines) > limit)
    return json_answer(StatementDetail(statement_view(row), page))


async def run_settlements(request: web.Request) -> web.Response:
    """Settle as of `until`; audited. 409 while another run holds the lock."""
    e = edge(request)
    body = await request.read()
    who = (await identify(request, body)).principal
    await require(request, who, "settlements:approve")
    req = decode(body or b"{}", RunSettlements)
    wall = datetime.now(UTC)  # to the microsecond: what was captured a moment ago is due
    at = wall if req.until is None else datetime.fromtimestamp(req.until, UTC)
    if at > wall:
        raise invalid("invalid_field", "until may not be in the future", "until")
    until = int(at.timestamp())
    if req.entity is not None:
        await entity_target(request, who, req.entity, "settlements:approve", "entity")
    result = await settlement.run(e.pg, e.settings, at, entity_id=req.entity)
    if result is None:
        raise invalid(
            "settlement_running", "another settlement run is in progress; retry", status=409
        )
    for withdrawal_id in result.to_pay:
        await hand_over(e, withdrawal_id)
    await audit.append(
        e.pg,
        actor(request, who),
        "settlement.run",
        req.entity or "*",
        after={"until": until, **result.doc()},
    )
    return json_answer(
        SettlementRun(
            "settlement_run",
            until,
            req.entity,
            result.released,
            result.reserve_released,
            result.statements,
            result.withdrawals,
        )
    )


async def put_terms(request: web.Request) -> web.Response:
    """An entity's cycle override and rolling reserve; audited with before and after."""
    e: Edge = edge(request)
    body = await request.read()
    who = (await identify(request, body)).principal
    target = await entity_target(
        request, who, request.match_info["entityId"], "settlements:approve", "entityId"
    )
    req = decode(body, PutTerms)
    async with e.pg.acquire() as conn, conn.transaction():
        if req.payout_account_id is not None and not await conn.fetchval(
            "SELECT 1 FROM payout_accounts WHERE id = $1 AND entity_id = $2",
            req.payout_account_id,
            target.id,
        ):
            raise invalid(
                "resource_missing", "no such payout account", "payout_account_id", status=404
            )
        before = await settlement.put_terms(
            conn, target.id, req.cycle, req.reserve_bps, req.reserve_days, req.payout_account_id
        )
        await audit.append(
            conn,
            actor(request, who),
            "settlement.terms",
            target.id,
            before=before,
            after=msgspec.to_builtins(req),
        )
    return json_answer(
        TermsView(
            "settlement_terms",
            target.id,
            req.cycle,
            req.reserve_bps,
            req.reserve_days,
            req.payout_account_id,
        )
    )
