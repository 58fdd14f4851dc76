"""Withdrawals and payouts (issue 13, part B): payout accounts, the request that holds the
funds, the maker–checker decision, the rules, and the channel's payout callbacks.

Portal users only (bearer, so MFA): a merchant's API key cannot move its money out. A merchant
or agent withdraws its own available balance; platform users with `withdrawals:create` may
request one on an entity's behalf, and then cannot approve it themselves. Reads take
`settlements:read`, decisions and rules `settlements:approve`; both are audited.
"""

from __future__ import annotations

import asyncpg
import msgspec
from aiohttp import web

from adapters.base import CallbackRejected, PayoutSending
from domain.access import Owner, Principal, Realm, owns
from domain.messages import ChannelTask, encode
from domain.money import AmountError, check_ceiling, format_amount, parse_amount
from domain.settlement import Entity
from domain.withdrawals import (
    RELEASE,
    DecisionRefused,
    Refused,
    Rules,
    Step,
    WithdrawalStatus,
    decide,
)
from gateway.access import actor, entity_target, identify, require, visible
from gateway.callbacks import callback_refused
from gateway.errors import ApiError, invalid
from gateway.intake import fingerprint
from gateway.payments import idempotency_conflict
from gateway.state import (
    REQUEST_ID,
    Edge,
    decode,
    edge,
    idempotency_key,
    json_answer,
    known_cursor,
    page_answer,
    page_limit,
)
from gateway.withdrawal_schemas import (
    AddPayoutAccount,
    CreateWithdrawal,
    Decide,
    PayoutAccountList,
    PayoutAccountView,
    PutRules,
    RulesView,
)
from infra import audit, withdrawals


def _not_found(param: str = "id") -> ApiError:
    return invalid("resource_missing", "no such withdrawal", param, status=404)


async def _acting_for(
    request: web.Request, who: Principal, entity_id: str | None, permission: str
) -> Entity:
    """The entity a change is made for: the caller's own merchant or agent (an agent acts for
    itself only, never for the merchants below it), or the one a platform user names."""
    if who.realm is Realm.PLATFORM:
        if entity_id is None:
            await require(request, who, permission)
            raise invalid("missing_parameter", "entity is required for platform users", "entity")
        return await entity_target(request, who, entity_id, permission, "entity")
    if entity_id is not None and entity_id != who.org_id:
        await require(request, who, permission)
        raise ApiError(
            403, "permission_error", "not_own_entity", "only the entity itself", "entity"
        )
    return await entity_target(request, who, who.org_id or "", permission, "entity")


def _amount(e: Edge, text: str, currency: str, param: str) -> int:
    """Minor units, at most the currency's configured ceiling (payments.max_amount)."""
    try:
        value = parse_amount(text, currency)
        check_ceiling(value, currency, e.settings.payments.max_amount)
    except AmountError as exc:
        raise invalid(exc.code, str(exc), "currency" if "currency" in exc.code else param) from None
    return value


def _account_view(r: asyncpg.Record) -> PayoutAccountView:
    return PayoutAccountView(
        r["id"],
        "payout_account",
        r["entity_id"],
        r["kind"],
        "****" + r["last4"],
        int(r["created_at"].timestamp()),
    )


async def add_payout_account(request: web.Request) -> web.Response:
    e = edge(request)
    body = await request.read()
    who = (await identify(request, body)).principal
    req = decode(body, AddPayoutAccount)
    target = await _acting_for(request, who, req.entity, "withdrawals:create")
    details = msgspec.to_builtins(req)
    details.pop("entity", None)
    async with e.pg.acquire() as conn, conn.transaction():
        row = await withdrawals.add_account(conn, e.box, target, req.kind, details)
        await audit.append(
            conn,
            actor(request, who),
            "payout_account.add",
            row["id"],
            after={"entity": target.id, "kind": req.kind, "last4": row["last4"]},
        )
    return json_answer(_account_view(row), 201)


async def _read_for(request: web.Request, who: Principal) -> Entity:
    """Whose list is read: `?entity=`, else the caller's own merchant or agent."""
    entity_id = request.query.get("entity") or who.org_id
    if entity_id is None:
        await require(request, who, "settlements:read")
        raise invalid("missing_parameter", "entity is required for platform users", "entity")
    return await entity_target(request, who, entity_id, "settlements:read", "entity")


async def list_payout_accounts(request: web.Request) -> web.Response:
    e = edge(request)
    target = await _read_for(request, (await identify(request, b"")).principal)
    rows = await withdrawals.accounts(e.pg, target.id)
    return json_answer(PayoutAccountList("list", [_account_view(r) for r in rows], False))


async def create_withdrawal(request: web.Request) -> web.Response:
    """Hold amount + fee and queue the payout (or wait for approval). The Idempotency-Key is
    required: a repeat answers the first withdrawal, a different body under it is 409. The
    live risk rules judge it: `reject` is 400 `risk_rejected` (nothing held), `review` waits
    for approval."""
    e = edge(request)
    body = await request.read()
    who = (await identify(request, body)).principal
    key = idempotency_key(request)
    req = decode(body, CreateWithdrawal)
    target = await _acting_for(request, who, req.entity, "withdrawals:create")
    if key is None:
        raise invalid(
            "missing_idempotency_key", "a withdrawal needs an Idempotency-Key", "Idempotency-Key"
        )
    amount = _amount(e, req.amount, req.currency, "amount")
    if amount <= 0:
        raise invalid("invalid_amount", "amount must be positive", "amount")
    fp = fingerprint(request.method, request.path, body)
    risk = withdrawals.RiskCheck(e.risk.book.rules, await e.risk.usd(amount, req.currency))
    async with e.pg.acquire() as conn:
        account = await conn.fetchval(
            "SELECT 1 FROM payout_accounts WHERE id = $1 AND entity_id = $2",
            req.payout_account_id,
            target.id,
        )
        if account is None:
            raise invalid(
                "resource_missing", "no such payout account", "payout_account_id", status=404
            )
        try:
            async with conn.transaction():
                row, new = await withdrawals.request(
                    conn,
                    e.settings,
                    target,
                    account_id=req.payout_account_id,
                    currency=req.currency,
                    amount=amount,
                    key=key,
                    fingerprint=fp,
                    requested_by=who.id,
                    request_id=request.get(REQUEST_ID),
                    settlement_id=req.settlement_id,
                    risk=risk,
                )
                if new:
                    await audit.append(
                        conn,
                        actor(request, who),
                        "withdrawal.request",
                        row["id"],
                        after={
                            "status": row["status"],
                            "amount": str(amount),
                            "fee": str(row["fee"]),
                        },
                    )
        except Refused as exc:
            status = {"resource_missing": 404, "settlement_not_payable": 409}.get(exc.code, 400)
            raise invalid(exc.code, exc.message, exc.param, status) from None
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "withdrawals_settlement_once":
                raise invalid(
                    "settlement_not_payable",
                    "another withdrawal is paying this statement",
                    "settlement_id",
                    409,
                ) from None
            raise idempotency_conflict() from None
    if row["fingerprint"] != fp:
        raise idempotency_conflict()
    if new and row["status"] == WithdrawalStatus.REQUESTED:
        await hand_over(e, row["id"], row["request_id"])
    return json_answer(withdrawals.view(row), 201)


async def hand_over(e: Edge, withdrawal_id: str, request_id: str | None = None) -> None:
    """To the pool of the channel its currency pays out through, once; if this is lost, the
    scheduler re-drives it."""
    currency = await e.pg.fetchval("SELECT currency FROM withdrawals WHERE id = $1", withdrawal_id)
    channel = e.settings.withdrawals.channel_for(currency)
    task = ChannelTask(
        kind="payout", id=withdrawal_id, channel=channel, request_id=request_id or ""
    )
    await e.intake.hand_over(f"payout:{withdrawal_id}", encode(task))


async def _visible(e: Edge, who: Principal, row: asyncpg.Record) -> bool:
    if row["entity_kind"] == "merchant":
        return await visible(e, who, row["entity_id"])
    return owns(who, Owner(Realm.AGENT, row["entity_id"]))


async def get_withdrawal(request: web.Request) -> web.Response:
    e = edge(request)
    who = (await identify(request, b"")).principal
    await require(request, who, "settlements:read")
    row = await withdrawals.fetch(e.pg, request.match_info["id"])
    if row is None or not await _visible(e, who, row):
        raise _not_found()
    return json_answer(withdrawals.view(row))


async def list_withdrawals(request: web.Request) -> web.Response:
    e = edge(request)
    target = await _read_for(request, (await identify(request, b"")).principal)
    limit = page_limit(request, 20)
    after = await known_cursor(
        request, e.pg, "SELECT 1 FROM withdrawals WHERE id = $1 AND entity_id = $2", target.id
    )
    rows = await withdrawals.listing(
        e.pg,
        target.id,
        after,
        limit + 1,
        request.query.get("status"),
        request.query.get("currency"),
    )
    return page_answer(rows, limit, withdrawals.view)


async def _decide(request: web.Request, approve: bool) -> web.Response:
    """Maker–checker: the checker is a platform user with `settlements:approve` who did not
    request it, and gives a reason; audited. Approving queues the payout, rejecting gives the
    funds back."""
    e = edge(request)
    body = await request.read()
    who = (await identify(request, body)).principal
    await require(request, who, "settlements:approve")
    req = decode(body, Decide)
    row = await withdrawals.fetch(e.pg, request.match_info["id"])
    if row is None:
        raise _not_found()
    try:
        decide(row["status"], row["requested_by"], who.id, req.reason)
    except DecisionRefused as exc:
        kind = "permission_error" if exc.status == 403 else "invalid_request_error"
        raise ApiError(exc.status, kind, exc.code, exc.message, "id") from None
    step = (
        Step(WithdrawalStatus.REQUESTED, None, None)
        if approve
        else Step(WithdrawalStatus.REJECTED, RELEASE, "withdrawal.failed")
    )
    changes = {"decided_by": who.id, "decision_reason": req.reason}
    if not approve:
        changes["failure_code"] = "rejected"
    async with e.pg.acquire() as conn, conn.transaction():
        moved, _ = await withdrawals.move(conn, row["id"], step, due_now=True, **changes)
        if moved is None:
            raise invalid("not_pending_approval", "the withdrawal was decided already", status=409)
        await audit.append(
            conn,
            actor(request, who),
            "withdrawal.approve" if approve else "withdrawal.reject",
            row["id"],
            before={"status": row["status"]},
            after={"status": moved["status"], "reason": req.reason},
        )
    if approve:
        await hand_over(e, moved["id"], moved["request_id"])
    return json_answer(withdrawals.view(moved))


async def approve_withdrawal(request: web.Request) -> web.Response:
    return await _decide(request, approve=True)


async def reject_withdrawal(request: web.Request) -> web.Response:
    return await _decide(request, approve=False)


async def put_rules(request: web.Request) -> web.Response:
    """An entity's minimum, fee, daily limit and approval threshold in one currency; audited."""
    e = edge(request)
    body = await request.read()
    who = (await identify(request, body)).principal
    target = await entity_target(
        request, who, request.match_info["entityId"], "settlements:approve", "entityId"
    )
    req = decode(body, PutRules)
    c = req.currency

    def optional(text: str | None, param: str) -> int | None:
        return None if text is None else _amount(e, text, c, param)

    try:
        rules = Rules(
            _amount(e, req.min_amount, c, "min_amount"),
            _amount(e, req.fee_fixed, c, "fee_fixed"),
            req.fee_bps,
            optional(req.daily_limit, "daily_limit"),
            optional(req.approval_above, "approval_above"),
        )
    except ValueError as exc:
        raise invalid("invalid_field", str(exc), "min_amount") from None
    async with e.pg.acquire() as conn, conn.transaction():
        before = await withdrawals.put_rules(conn, target.id, c, rules)
        await audit.append(
            conn,
            actor(request, who),
            "withdrawal.rules",
            target.id,
            before=before,
            after={"currency": c, **msgspec.to_builtins(rules)},
        )

    def shown(value: int | None) -> str | None:
        return None if value is None else format_amount(value, c)

    return json_answer(
        RulesView(
            "withdrawal_rules",
            target.id,
            c,
            format_amount(rules.min_amount, c),
            format_amount(rules.fee_fixed, c),
            rules.fee_bps,
            shown(rules.daily_limit),
            shown(rules.approval_above),
        )
    )


async def payout_callback(request: web.Request) -> web.Response:
    """A channel's word on a payout: verified by its adapter, then only a trigger: the channel
    pool asks the channel for the payout's state, so a callback cannot say more than the
    channel does."""
    e = edge(request)
    channel = request.match_info["channel"]
    adapter = e.channels.adapter(channel)
    if not isinstance(adapter, PayoutSending):
        raise invalid("unknown_channel", f"no payout channel {channel!r}", "channel", status=404)
    try:
        event_id, withdrawal_id = adapter.parse_payout_callback(
            request.headers, await request.read()
        )
    except CallbackRejected as exc:
        raise callback_refused(exc) from None
    task = ChannelTask(
        kind="payout", id=withdrawal_id, channel=channel, request_id=request[REQUEST_ID]
    )
    await e.intake.hand_over(f"payout:{channel}:{event_id}", encode(task))
    ack = adapter.callback_ack()  # type: ignore[attr-defined]
    return web.Response(status=ack.status, body=ack.body, content_type=ack.content_type)
