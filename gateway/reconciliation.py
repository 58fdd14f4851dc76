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

from adapters.base import (
    AddressRefunding,
    ChainSending,
    ChannelDeclined,
    ChannelError,
    RefundRequest,
    Statement,
)
from domain.access import Owner, Principal, Realm
from domain.ledger import Posting
from domain.messages import ChannelCallback, encode
from domain.money import format_amount
from domain.reconciliation import (
    Action,
    Columns,
    Kind,
    StatementError,
    adjustment,
    parse_statement,
    refused_action,
)
from gateway.access import actor, identify, require
from gateway.errors import ApiError, invalid
from gateway.payments import amount_of
from gateway.reconciliation_schemas import (
    DiscrepancyView,
    ResolveDiscrepancy,
    Returned,
    RunReconciliation,
    RunView,
    StatementColumns,
    Tally,
)
from gateway.refunds import check_address
from gateway.state import (
    Edge,
    decode,
    edge,
    json_answer,
    known_cursor,
    page_answer,
    page_limit,
)
from infra import deposits, reconciliation, store

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
        channel=r["channel"],
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
        channel_ref=r["channel_ref"],
        returned=None
        if r["returned_amount"] is None
        else Returned(
            format_amount(int(r["returned_amount"]), r["returned_currency"]),
            r["returned_currency"],
        ),
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
    """Close an open discrepancy with an action and a reason, audited: 409 when it is no
    longer open or the action does not fit it (see `domain.reconciliation.refused_action`)."""
    e = edge(request)
    body = await request.read()
    who = (await identify(request, body)).principal
    await require(request, who, "settlements:approve", _PLATFORM)
    req = decode(body, ResolveDiscrepancy)
    postings: list[Posting] = []
    if (req.action is Action.ADJUST) != (req.adjustment is not None):
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
    discrepancy_id = request.match_info["id"]
    found = await reconciliation.get_discrepancy(e.pg, discrepancy_id)
    if found is None:
        raise invalid("resource_missing", "no such discrepancy", "id", status=404)
    if found["status"] != "open":
        raise _closed(found["status"])
    at_channel = None
    if req.action in (Action.REFUND, Action.ACCEPT_CHANNEL):
        at_channel = await _at_channel(e, found, req.action, req.destination)
    try:
        row = await reconciliation.resolve(
            e.pg, discrepancy_id, req.action, req.reason, postings, actor(request, who), at_channel
        )
    except reconciliation.NotOpen as exc:
        raise _closed(str(exc)) from None
    assert row is not None  # it was found above, and discrepancies are never deleted
    return json_answer(discrepancy_view(row))


def _closed(status: str) -> ApiError:
    return invalid("discrepancy_closed", f"the discrepancy is {status} already", status=409)


async def _at_channel(
    e: Edge, discrepancy: asyncpg.Record, action: Action, destination: str | None = None
) -> reconciliation.AtChannel:
    """Do at the channel what `refund` or `accept_channel` asks, after checking it fits: the
    channel is asked about the order first, and its answer, not the statement's, decides.
    Either is safe to repeat: the return's refund id at the channel is the discrepancy's id,
    the accepted word's event id is derived from it."""
    channel, payment_id = discrepancy["channel"], discrepancy["juhe_id"]
    payment = await store.fetch_payment(e.pg, payment_id)
    adapter = e.channels.adapter(channel)
    if adapter is None:
        raise invalid("unknown_channel", f"no channel {channel!r}", "channel", status=409)
    if discrepancy["kind"] in (Kind.CRYPTO_SURPLUS, Kind.CRYPTO_UNDERPAID):
        assert payment is not None  # the watcher raises them for its own payments only
        return await _crypto_resolution(e, adapter, discrepancy, payment, action, destination)
    order = (payment["channel_order_id"] if payment else None) or discrepancy["reference"]
    state = None
    if payment is not None and discrepancy["type"] == "payment":
        try:
            state = await adapter.query_order(payment_id, order)
        except ChannelDeclined:
            state = None  # the channel has no such order
        except ChannelError as exc:
            raise statement_refused(exc) from None
    refused = refused_action(
        action,
        discrepancy["type"],
        payment["status"] if payment else None,
        state.status if state else None,
    )
    if refused is not None or state is None:
        raise invalid(refused or "not_paid_at_channel", _REFUSED[refused], "action", status=409)
    if action is Action.REFUND:
        if isinstance(adapter, ChainSending):
            taken = state.received or state.amount
            return await _send_back(adapter, discrepancy, destination, taken, state.currency)
        ask = RefundRequest(
            discrepancy["id"], payment_id, state.channel_order_id, state.amount, state.currency
        )
        try:
            done = await adapter.refund(ask)
        except ChannelError as exc:
            raise statement_refused(exc) from None
        return reconciliation.AtChannel(done.channel_refund_id, state.amount, state.currency)
    event_id = f"recon:{discrepancy['id']}"
    word = ChannelCallback(
        channel=channel,
        event_id=event_id,
        payment_id=payment_id,
        channel_order_id=state.channel_order_id,
        outcome="paid" if state.status == "paid" else "failed",
        amount=str(state.amount),
        currency=state.currency,
        received=None if state.received in (None, state.amount) else str(state.received),
        failure_code=None if state.status == "paid" else "failed_at_channel",
        failure_message=None
        if state.status == "paid"
        else "reconciliation took the channel's word",
        reconciled=True,
    )
    await e.intake.callback(channel, event_id, encode(word))
    return reconciliation.AtChannel(event_id)


async def _send_back(
    adapter: object,
    discrepancy: asyncpg.Record,
    destination: str | None,
    amount: int,
    asset: str,
) -> reconciliation.AtChannel:
    """A crypto discrepancy's money back to the address operations name, from the hot wallet
    (the discrepancy's id is the transfer's idempotency key: a retry sends nothing twice)."""
    if not isinstance(adapter, ChainSending) or not isinstance(adapter, AddressRefunding):
        raise invalid("refund_unsupported", "this channel sends nothing back", "action", 409)
    check_address(adapter, destination)
    assert destination is not None
    try:
        sent = await adapter.send_out(discrepancy["id"], "return", asset, destination, amount)
    except ChannelDeclined as exc:
        raise invalid(exc.code, exc.message, "action", status=409) from None
    except ChannelError as exc:
        raise statement_refused(exc) from None
    return reconciliation.AtChannel(str(sent["tx_hash"]), amount, asset)


async def _crypto_resolution(
    e: Edge,
    adapter: object,
    discrepancy: asyncpg.Record,
    payment: asyncpg.Record,
    action: Action,
    destination: str | None,
) -> reconciliation.AtChannel:
    """A crypto deposit's surplus or shortfall: `refund` returns what it holds to the address
    named (`destination`); `accept_channel` (a shortfall only) credits the ended payment with
    what arrived, the difference from what was due going to the platform's crypto tolerance
    account."""
    held = await deposits.of_payment(e.pg, payment["id"])
    assert held is not None
    amount, asset = int(discrepancy["channel_value"]), held["asset"]
    if action is Action.REFUND:
        return await _send_back(adapter, discrepancy, destination, amount, asset)
    if discrepancy["kind"] == Kind.CRYPTO_SURPLUS:
        raise invalid("nothing_to_accept", _REFUSED["nothing_to_accept"], "action", status=409)
    refused = refused_action(action, "payment", payment["status"], "paid")
    if refused is not None:
        raise invalid(refused, _REFUSED[refused], "action", status=409)
    event_id = f"recon:{discrepancy['id']}"
    word = ChannelCallback(
        channel=discrepancy["channel"],
        event_id=event_id,
        payment_id=payment["id"],
        channel_order_id=discrepancy["reference"],
        outcome="paid",
        amount=discrepancy["juhe_value"],
        currency=asset,
        received=str(amount),
        reconciled=True,
    )
    await deposits.accept_short(e.pg, payment["id"], amount)
    await e.intake.callback(discrepancy["channel"], event_id, encode(word))
    return reconciliation.AtChannel(event_id)


_REFUSED = {
    None: "the channel has no such order",
    "not_a_payment": "only a payment Juhe has can be refunded or take the channel's status",
    "refund_through_api": "the payment's money is in Juhe's books: refund it with POST /refunds",
    "payment_not_ended": "the payment is still open: accept the channel's status instead",
    "not_paid_at_channel": "the channel does not hold this payment's money",
    "channel_undecided": "the channel has not decided the payment yet",
    "nothing_to_accept": "the payment already has the channel's outcome",
    "cannot_reverse": "a payment Juhe took cannot be unpaid here: refund it or adjust",
    "payment_rejected": "risk rejected this payment: return its money with refund",
}
