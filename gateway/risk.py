"""Risk control over HTTP: block and allow lists, versioned rule sets, shadow runs and
backtests, the manual review queue, and evaluating a transaction without a payment.
`/api/v1/risk/…` and `juhe risk` share the list and rule operations.

Every change is validated first (a rule set is compiled, and refused with the rule and the
position of each error), written with its audit record in one transaction, then announced, so
every risk process judges by it within a second. A rule set version never changes once
written: publishing moves the live pointer, and rolling back is publishing an earlier version.
Reviews are decided by platform reviewers only (`risk:write`), never by the merchant.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import orjson
from aiohttp import web

from domain.access import PLATFORM_OWNED
from domain.messages import encode
from domain.money import format_amount
from domain.risk import Rule, RuleSetInvalid, Thresholds, Transaction, compile_rules
from domain.risk.backtest import Report, compare, rejudge
from domain.risk.lists import Kind, ListName, normalize
from gateway.access import actor, identify, require
from gateway.errors import ApiError, invalid
from gateway.payments import amount_of
from gateway.risk_schemas import (
    BacktestIn,
    ComparisonView,
    CreateListEntry,
    DecideReview,
    Decision,
    Evaluate,
    ListEntryView,
    ReviewView,
    RuleIn,
    RuleSetIn,
    RuleSetView,
    ShadowIn,
    ShadowView,
    ThresholdsIn,
)
from gateway.schemas import Card, Customer
from gateway.state import Edge, decode, edge, int_query, json_answer, page_answer, page_limit
from infra import audit, reviews, risk, store
from infra.invalidation import announce
from infra.keys import PAYMENTS_STREAM

NOTHING_PUBLISHED = RuleSetView(
    object="risk_rule_set",
    version=None,
    live=True,
    rules=[],
    thresholds=ThresholdsIn(),
    note=None,
    actor=None,
    created=None,
    published=None,
)


def entry_view(row: asyncpg.Record) -> ListEntryView:
    expires = row["expires_at"]
    return ListEntryView(
        object="risk_list_entry",
        id=row["id"],
        list=row["list"],
        kind=row["kind"],
        value=row["value"],
        reason=row["reason"],
        expires_at=int(expires.timestamp()) if expires else None,
        actor=row["actor"],
        created=int(row["created_at"].timestamp()),
    )


def version_view(row: asyncpg.Record, live: bool) -> RuleSetView:
    published = row["published_at"]
    return RuleSetView(
        object="risk_rule_set",
        version=row["version"],
        live=live,
        rules=[msgspec.convert(r, RuleIn) for r in orjson.loads(row["rules"])],
        thresholds=ThresholdsIn(row["review_at"], row["reject_at"]),
        note=row["note"],
        actor=row["actor"],
        created=int(row["created_at"].timestamp()),
        published=int(published.timestamp()) if published else None,
    )


def missing_entry(entry_id: str) -> ApiError:
    return invalid("resource_missing", f"no list entry {entry_id!r}", "id", status=404)


def missing_version(number: int) -> ApiError:
    return invalid("resource_missing", f"no rule set version {number}", "version", status=404)


async def add_entry(pg: asyncpg.Pool, who: audit.Actor, req: CreateListEntry) -> ListEntryView:
    kind = Kind(req.kind)
    try:
        value = normalize(kind, req.value)
    except ValueError as exc:
        raise invalid("invalid_list_value", f"{kind.value}: {exc}", "value") from None
    if req.expires_at is not None and req.expires_at <= time.time():
        raise invalid("invalid_field", "expires_at must be in the future", "expires_at")
    async with pg.acquire() as conn, conn.transaction():
        row = await risk.add_entry(
            conn,
            ListName(req.list),
            kind,
            value,
            who.id,
            req.reason,
            risk.expiry(req.expires_at),
        )
        if row is None:
            raise invalid(
                "list_entry_exists", f"the {req.list} list holds this {kind.value}", "value", 409
            )
        created = entry_view(row)
        # the audit names the entry, not its value: e-mails and IPs are personal data
        await audit.append(
            conn,
            who,
            "risk.list_add",
            f"risk_list_entry:{row['id']}",
            after={"list": req.list, "kind": kind.value, "reason": req.reason},
        )
    return created


async def remove_entry(pg: asyncpg.Pool, who: audit.Actor, entry_id: str) -> ListEntryView:
    async with pg.acquire() as conn, conn.transaction():
        row = await risk.remove_entry(conn, entry_id)
        if row is None:
            raise missing_entry(entry_id)
        removed = entry_view(row)
        await audit.append(
            conn,
            who,
            "risk.list_remove",
            f"risk_list_entry:{entry_id}",
            before={"list": row["list"], "kind": row["kind"], "reason": row["reason"]},
        )
    return removed


def checked(req: RuleSetIn) -> tuple[list[Rule], Thresholds]:
    """The rule set compiled, or 400 `invalid_rules` naming each rule, field and position."""
    rules = [Rule(r.id, r.expression, r.action, r.description, r.scope) for r in req.rules]
    thresholds = Thresholds(req.thresholds.review, req.thresholds.reject)
    try:
        compile_rules(None, rules, thresholds)
    except RuleSetInvalid as exc:
        first = exc.errors[0]
        index = next((n for n, r in enumerate(rules) if r.id == first.rule), None)
        param = f"rules[{index}].{first.field}" if index is not None else first.field
        raise invalid("invalid_rules", str(exc), param) from None
    return rules, thresholds


async def save(pg: asyncpg.Pool, who: audit.Actor, req: RuleSetIn, publish: bool) -> RuleSetView:
    rules, thresholds = checked(req)
    async with pg.acquire() as conn, conn.transaction():
        row = await risk.save_version(conn, rules, thresholds, who.id, req.note)
        if publish:
            row = await risk.publish(conn, row["version"])
        answer = version_view(row, publish)
        await audit.append(
            conn,
            who,
            "risk.rules_publish" if publish else "risk.rules_draft",
            f"risk_rules:{row['version']}",
            after=msgspec.to_builtins(answer),
        )
    return answer


async def publish(pg: asyncpg.Pool, who: audit.Actor, number: int) -> RuleSetView:
    async with pg.acquire() as conn, conn.transaction():
        before = await risk.live_version(conn)
        row = await risk.publish(conn, number)
        if row is None:
            raise missing_version(number)
        await audit.append(
            conn,
            who,
            "risk.rules_publish",
            f"risk_rules:{number}",
            before={"version": before["version"] if before else None},
            after={"version": number},
        )
    return version_view(row, True)


async def live(pg: asyncpg.Pool) -> RuleSetView:
    row = await risk.live_version(pg)
    return version_view(row, True) if row else NOTHING_PUBLISHED


async def _caller(request: web.Request, permission: str, body: bytes = b"") -> audit.Actor:
    who = (await identify(request, body)).principal
    await require(request, who, permission, PLATFORM_OWNED)
    return actor(request, who)


async def _changed(e: Edge, payload: Any, status: int = 200) -> web.Response:
    await announce(e.redis, e.keys, risk=True)
    return json_answer(payload, status)


async def list_entries(request: web.Request) -> web.Response:
    e = edge(request)
    await _caller(request, "risk:read")
    limit = page_limit(request, 100)
    after = request.query.get("starting_after")
    rows = await risk.entries(
        e.pg, request.query.get("list"), request.query.get("kind"), limit, after
    )
    return page_answer(rows, limit, entry_view)


async def post_entry(request: web.Request) -> web.Response:
    e = edge(request)
    body = await request.read()
    who = await _caller(request, "risk:write", body)
    return await _changed(e, await add_entry(e.pg, who, decode(body, CreateListEntry)), 201)


async def delete_entry(request: web.Request) -> web.Response:
    e = edge(request)
    who = await _caller(request, "risk:write")
    return await _changed(e, await remove_entry(e.pg, who, request.match_info["id"]))


async def get_rules(request: web.Request) -> web.Response:
    e = edge(request)
    await _caller(request, "risk:read")
    return json_answer(await live(e.pg))


async def put_rules(request: web.Request) -> web.Response:
    e = edge(request)
    body = await request.read()
    who = await _caller(request, "risk:write", body)
    return await _changed(e, await save(e.pg, who, decode(body, RuleSetIn), publish=True))


async def list_versions(request: web.Request) -> web.Response:
    e = edge(request)
    await _caller(request, "risk:read")
    limit = page_limit(request, 20)
    rows = await risk.versions(e.pg, limit, int_query(request, "starting_after"))
    return page_answer(rows, limit, lambda r: version_view(r, bool(r["live"])))


async def post_version(request: web.Request) -> web.Response:
    """A draft: validated and kept, judged by nobody until published."""
    e = edge(request)
    body = await request.read()
    who = await _caller(request, "risk:write", body)
    return json_answer(await save(e.pg, who, decode(body, RuleSetIn), publish=False), 201)


async def get_version(request: web.Request) -> web.Response:
    e = edge(request)
    await _caller(request, "risk:read")
    number = _version(request)
    row = await risk.version(e.pg, number)
    if row is None:
        raise missing_version(number)
    current = await risk.live_version(e.pg)
    return json_answer(version_view(row, current is not None and current["version"] == number))


async def publish_version(request: web.Request) -> web.Response:
    """Publish a draft, or roll back to an earlier version."""
    e = edge(request)
    who = await _caller(request, "risk:write")
    return await _changed(e, await publish(e.pg, who, _version(request)))


def _version(request: web.Request) -> int:
    raw = request.match_info["version"]
    if not raw.isdigit() or len(raw) > 9:
        raise invalid("resource_missing", "a version is a positive integer", "version", 404)
    return int(raw)


# --- the review queue --------------------------------------------------------------------------


def review_view(row: asyncpg.Record) -> ReviewView:
    return ReviewView(
        object="risk_review",
        payment_id=row["payment_id"],
        merchant_id=row["merchant_id"],
        status=row["status"],
        score=row["score"],
        version=row["version"],
        amount=format_amount(int(row["amount"]), row["currency"]),
        currency=row["currency"],
        payment_status=row["payment_status"],
        claimed_by=row["claimed_by"],
        decided_by=row["decided_by"],
        reason=row["reason"],
        by_default=row["by_default"],
        due_at=int(row["due_at"].timestamp()),
        created=int(row["created_at"].timestamp()),
        age_s=int(row["age_s"]),
    )


async def _review(conn: asyncpg.Connection | asyncpg.Pool, payment_id: str) -> ReviewView:
    rows = await conn.fetch(
        "SELECT r.*, p.amount, p.currency, p.status AS payment_status, "
        "extract(epoch FROM now() - r.created_at) AS age_s FROM risk_reviews r "
        "JOIN payments p ON p.id = r.payment_id WHERE r.payment_id = $1",
        payment_id,
    )
    if not rows:
        raise invalid("resource_missing", f"no review of payment {payment_id!r}", "id", 404)
    return review_view(rows[0])


async def _refusal(conn: asyncpg.Connection, payment_id: str, actor_id: str) -> ApiError:
    """Why a claim or decision did not apply: 404, or 409 saying whose or what it is."""
    current = await reviews.fetch(conn, payment_id)
    if current is None:
        return invalid("resource_missing", f"no review of payment {payment_id!r}", "id", 404)
    if current["status"] == "claimed" and current["claimed_by"] != actor_id:
        return invalid("review_claimed", "another reviewer has claimed this review", None, 409)
    return invalid("review_closed", f"the review is {current['status']}", None, 409)


async def list_reviews(request: web.Request) -> web.Response:
    e = edge(request)
    await _caller(request, "risk:read")
    limit = page_limit(request, 50)
    rows = await reviews.listing(
        e.pg,
        request.query.get("status"),
        request.query.get("merchant_id"),
        limit,
        request.query.get("starting_after"),
    )
    return page_answer(rows, limit, review_view)


async def get_review(request: web.Request) -> web.Response:
    e = edge(request)
    await _caller(request, "risk:read")
    return json_answer(await _review(e.pg, request.match_info["id"]))


async def claim_review(request: web.Request) -> web.Response:
    """Take a review so no other reviewer decides it meanwhile (again: still yours)."""
    e = edge(request)
    who = await _caller(request, "risk:write")
    payment_id = request.match_info["id"]
    async with e.pg.acquire() as conn, conn.transaction():
        if await reviews.claim(conn, payment_id, who.id) is None:
            raise await _refusal(conn, payment_id, who.id)
        await audit.append(conn, who, "risk.review_claim", f"payment:{payment_id}")
        answer = await _review(conn, payment_id)
    return json_answer(answer)


async def _decide(request: web.Request, approve: bool) -> web.Response:
    e = edge(request)
    body = await request.read()
    who = await _caller(request, "risk:write", body)
    req = decode(body, DecideReview)
    payment_id = request.match_info["id"]
    url = e.settings.gateway.public_url
    async with e.pg.acquire() as conn, conn.transaction():
        decided = await reviews.decide(conn, payment_id, approve, who.id, req.reason, url)
        if decided is None:
            raise await _refusal(conn, payment_id, who.id)
        await audit.append(
            conn,
            who,
            "risk.review_approve" if approve else "risk.review_reject",
            f"payment:{payment_id}",
            after={"reason": req.reason},
        )
        answer = await _review(conn, payment_id)
    if decided.payment is not None:
        await e.hot.put_payment(decided.payment)
        if approve:  # on to the risk pool through the relay, which routes it as approved
            intent = store.intent_of(decided.payment)
            await e.redis.xadd(e.keys.stream(PAYMENTS_STREAM), {"d": encode(intent)})
    return json_answer(answer)


async def approve_review(request: web.Request) -> web.Response:
    return await _decide(request, True)


async def reject_review(request: web.Request) -> web.Response:
    return await _decide(request, False)


# --- evaluation without a payment ------------------------------------------------------------


async def evaluate(request: web.Request) -> web.Response:
    """A merchant's transaction judged now, as its payment would be (its own limits, the live
    rules and lists), for its own flows; nothing is stored or counted."""
    e = edge(request)
    body = await request.read()
    caller = await identify(request, body)
    await require(request, caller.principal, "payments:create")
    merchant = caller.merchant
    if merchant is None or not merchant.active:
        raise ApiError(403, "permission_error", "merchant_inactive", "the merchant is not active")
    req = decode(body, Evaluate)
    amount = amount_of(req.amount, req.currency, e.settings.payments.max_amount)
    customer, card = req.customer or Customer(), req.card or Card()
    now = time.time()
    tx = Transaction(
        merchant.id,
        amount,
        req.currency,
        now,
        method=req.method,
        agents=merchant.agents,
        email=customer.email,
        ip=customer.ip,
        country=customer.country,
        device=customer.device_id,
        customer=customer.id,
        card_fingerprint=card.fingerprint,
        card_bin=card.bin,
        card_country=card.country,
    )
    (judged,) = await e.risk.decide([tx], [merchant.limits], now, keep=False)
    return json_answer(Decision(object="risk_decision", **judged.verdict.to_doc()))


# --- shadow mode and backtests ---------------------------------------------------------------


async def put_shadow(request: web.Request) -> web.Response:
    """Judge a version beside the live one on live traffic: recorded, never applied."""
    e = edge(request)
    body = await request.read()
    who = await _caller(request, "risk:write", body)
    req = decode(body, ShadowIn)
    async with e.pg.acquire() as conn, conn.transaction():
        if await risk.set_shadow(conn, req.version) is None:
            raise missing_version(req.version)
        await audit.append(
            conn,
            who,
            "risk.shadow_start",
            f"risk_rules:{req.version}",
            after={"version": req.version},
        )
    return await _changed(e, ShadowView(object="risk_shadow", version=req.version))


async def delete_shadow(request: web.Request) -> web.Response:
    e = edge(request)
    who = await _caller(request, "risk:write")
    async with e.pg.acquire() as conn, conn.transaction():
        before = await risk.shadow_version(conn)
        await risk.set_shadow(conn, None)
        await audit.append(conn, who, "risk.shadow_stop", "risk_rules", before={"version": before})
    return await _changed(e, ShadowView(object="risk_shadow", version=None))


def _window(since: int | None, until: int | None) -> tuple[datetime, datetime]:
    end = datetime.fromtimestamp(until, UTC) if until is not None else datetime.now(UTC)
    start = datetime.fromtimestamp(since, UTC) if since is not None else end - timedelta(days=1)
    if start >= end:
        raise invalid("invalid_field", "since must be before until", "since")
    return start, end


async def get_shadow(request: web.Request) -> web.Response:
    """The shadow version's decisions against the live ones over a period (default: the
    last day)."""
    e = edge(request)
    await _caller(request, "risk:read")
    number = await risk.shadow_version(e.pg)
    since, until = _window(int_query(request, "since"), int_query(request, "until"))
    merchant_id = request.query.get("merchant_id")
    rows = (
        []
        if number is None
        else await risk.decisions(e.pg, since, until, 10_000, number, merchant_id)
    )
    docs = [(r["id"], orjson.loads(r["risk"])) for r in rows]
    report = compare((pid, d["outcome"], d["shadow"]["outcome"]) for pid, d in docs)
    return json_answer(_comparison(number, report, 0))


async def backtest(request: web.Request) -> web.Response:
    """A version run again over stored payments' decisions: what would change."""
    e = edge(request)
    body = await request.read()
    await _caller(request, "risk:read", body)
    req = decode(body, BacktestIn)
    number = _version(request)
    row = await risk.version(e.pg, number)
    if row is None:
        raise missing_version(number)
    rules = risk.compiled_of(row)
    since, until = _window(req.since, req.until)
    pairs, skipped = [], 0
    for stored in await risk.decisions(e.pg, since, until, req.limit, merchant_id=req.merchant_id):
        doc = orjson.loads(stored["risk"])
        verdict = rejudge(rules, doc)
        if verdict is None:
            skipped += 1
        else:
            pairs.append((stored["id"], doc["outcome"], verdict.outcome.value))
    return json_answer(_comparison(number, compare(pairs), skipped))


def _comparison(number: int | None, report: Report, skipped: int) -> ComparisonView:
    return ComparisonView(
        object="risk_comparison", version=number, skipped=skipped, **report.to_doc()
    )
