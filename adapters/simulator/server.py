"""A payment channel simulator: a sandbox PSP with its own protocol (see `wire`), for development,
demos and tests, so every path of the gateway can be exercised without a real provider.

It knows the merchant accounts of the channels configured with ``adapter = "simulator"``. An order
is paid ``simulator.pay_delay_ms`` after creation and an ``order.paid`` callback is sent to its
notify_url; a customer can also pay at once on the page ``GET /pay/{order_no}``. Callbacks are
redelivered until the receiver answers 200 ``success`` (at most 5 retries, after 0.2, 0.5, 1, 2
and 4 s). Every API response is delayed by ``simulator.latency_ms``. State lives in memory, and
in ``simulator.state_file`` across a clean restart (orders not yet paid are paid after it,
callbacks not yet taken are sent again).
Reusing a merchant_ref or refund_ref for a different amount answers 409 ``DUPLICATE_REF``.

Test amounts, chosen by ``int(amount_minor) % 100`` (this sandbox's "test cards"):

=====  ====================================================================================
 %100  behaviour
=====  ====================================================================================
 51    create is declined: HTTP 402 ``DECLINED`` "insufficient funds"
 52    create answers only after ``simulator.timeout_delay_ms`` (the order is still created)
 53    the first create for a merchant_ref answers 503 ``UNAVAILABLE``; later ones succeed
 54    the ``order.paid`` callback is delivered twice, with the same event_id
 55    ``order.paid`` is delivered, then a stale ``order.pending`` (own event_id, older ts)
 56    never paid automatically: no callback unless the customer pays on the pay page
 57    the payment fails: ``order.failed`` instead of ``order.paid``
 58    create always answers 503 ``UNAVAILABLE``
 59    paid, but the callback is lost: only asking (``GET /v1/orders/…``) shows it is paid
=====  ====================================================================================

Each merchant account has a personality (``simulator.personalities``, by api_key): ``card``
answers with a card payment page, ``ewallet`` (the default) adds a QR payload, and
``bank_transfer`` gives a virtual account to transfer to.

Payouts (``POST /v1/payouts``, ``GET /v1/payouts?payout_ref=…``; `payout_ref` is the idempotency
key) are paid ``simulator.pay_delay_ms`` after they are taken, announced by a signed
``payout.paid`` callback; their test amounts, by ``int(amount_minor) % 100``:

=====  ====================================================================================
 61    the account is refused: HTTP 402 ``ACCOUNT_REJECTED``, no payout
 62    the answer comes only after ``simulator.timeout_delay_ms`` (the payout is still taken)
 63    taken, then fails: ``payout.failed``
 64    paid, then returned by the bank ``simulator.pay_delay_ms`` later: ``payout.returned``
=====  ====================================================================================

``GET /_sim/payouts`` lists every payout with the number of requests that created or repeated
it, so tests can tell a payout was sent once.

``PUT /_sim/outages/{api_key}`` makes every create for that merchant account answer 503 until
``DELETE /_sim/outages/{api_key}``: a channel made to fail, for failover demos and tests.

``GET /v1/statements/{YYYY-MM-DD}`` is the account's daily statement (CSV,
`wire.STATEMENT_COLUMNS`): its paid orders and refunds created that day (UTC), each order's fee
the channel's configured cost (`cost_bps`, `cost_fixed_minor`).
``PUT /_sim/statements/{api_key}/discrepancies`` (a JSON list of `wire.StatementFault`) puts
discrepancies into the account's statements, for reconciliation tests; ``DELETE`` removes them.
"""

from __future__ import annotations

import asyncio
import csv
import html
import io
import logging
import os
import secrets
import signal
import time
import zlib
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from aiohttp import web

from adapters.simulator import wire
from config.settings import Settings, Simulator
from domain.fees import Rate
from domain.money import AmountError, format_amount
from infra.httpserver import hide_versions, protect

log = logging.getLogger(__name__)

RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 4.0)
CALLBACK_TIMEOUT_S = 10.0

# The amount endings (cents) with a behaviour of their own; load generators avoid them.
TEST_AMOUNTS = range(51, 60)
DECLINED, SLOW, FLAKY, TWICE, OUT_OF_ORDER, NEVER_PAID, FAILS, DOWN, SILENT = TEST_AMOUNTS
PAYOUT_TEST_AMOUNTS = range(61, 65)
ACCOUNT_REJECTED, PAYOUT_SLOW, PAYOUT_FAILS, PAYOUT_RETURNED = PAYOUT_TEST_AMOUNTS


@dataclass(slots=True)
class Order:
    order_no: str
    api_key: str
    merchant_ref: str
    amount: int
    currency: str
    notify_url: str
    return_url: str | None
    subject: str | None
    created_at: int
    status: wire.OrderStatus = "PENDING"
    refunded: int = 0
    notified: bool = False  # its final callback was taken (by a 200 `success`)
    paid_at: int | None = None

    @property
    def magic(self) -> int:
        return self.amount % 100

    def view(self) -> wire.OrderView:
        return wire.OrderView(
            order_no=self.order_no,
            merchant_ref=self.merchant_ref,
            status=self.status,
            amount_minor=str(self.amount),
            currency=self.currency,
            refunded_minor=str(self.refunded),
        )


@dataclass(frozen=True, slots=True)
class Refund:
    refund_no: str
    order_no: str
    amount: int
    created_at: int = 0


@dataclass(slots=True)
class Payout:
    payout_no: str
    api_key: str
    payout_ref: str
    amount: int
    currency: str
    notify_url: str
    status: wire.PayoutStatus = "PROCESSING"
    requests: int = 1

    def view(self) -> wire.PayoutView:
        return wire.PayoutView(
            payout_no=self.payout_no,
            payout_ref=self.payout_ref,
            status=self.status,
            amount_minor=str(self.amount),
            currency=self.currency,
            failure_code="payout_failed" if self.status == "FAILED" else None,
        )


@dataclass(slots=True)
class Sandbox:
    """All simulator state, plus the background tasks that must not outlive the app."""

    settings: Simulator
    accounts: dict[str, str]  # api_key → secret
    orders: dict[str, Order] = field(default_factory=dict)
    order_refs: dict[tuple[str, str], str] = field(default_factory=dict)  # (api_key, ref) → no
    refunds: dict[tuple[str, str], Refund] = field(default_factory=dict)  # (api_key, ref)
    payouts: dict[tuple[str, str], Payout] = field(default_factory=dict)  # (api_key, ref)
    failed_once: set[tuple[str, str]] = field(default_factory=set)
    outages: set[str] = field(default_factory=set)  # accounts whose creates answer 503
    costs: dict[str, Rate] = field(default_factory=dict)  # api_key → the channel's fee
    faults: dict[str, list[wire.StatementFault]] = field(default_factory=dict)  # by api_key
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    session: aiohttp.ClientSession | None = None

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def settle(self, order: Order) -> None:
        """Finish a pending payment the way its test amount says, and announce it."""
        if order.status != "PENDING":
            return
        order.status = "FAILED" if order.magic == FAILS else "PAID"
        order.paid_at = int(time.time())
        event = _final_event(order)
        events = [] if order.magic == SILENT else [event]
        if order.magic == TWICE:
            events.append(event)
        elif order.magic == OUT_OF_ORDER:
            stale = msgspec.structs.replace(
                event, event_id=_new_id("evt_"), event="order.pending", ts=order.created_at - 1
            )
            events.append(stale)
        self.spawn(self._announce(order, events))

    async def _announce(self, order: Order, events: list[wire.CallbackEvent]) -> None:
        delivered = [
            await self._deliver(order.api_key, order.notify_url, order.order_no, event)
            for event in events
        ]
        order.notified = all(delivered)

    async def pay_out(self, payout: Payout) -> None:
        """Pay (or fail) a payout after the delay, and a returned one back after another."""
        await asyncio.sleep(self.settings.pay_delay_ms / 1000)
        payout.status = "FAILED" if payout.amount % 100 == PAYOUT_FAILS else "PAID"
        await self._payout_event(payout)
        if payout.amount % 100 == PAYOUT_RETURNED:
            await asyncio.sleep(self.settings.pay_delay_ms / 1000)
            payout.status = "RETURNED"
            await self._payout_event(payout)

    async def _payout_event(self, payout: Payout) -> None:
        event = wire.PayoutEvent(
            event_id=_new_id("evt_"),
            event=f"payout.{payout.status.lower()}",  # type: ignore[arg-type]
            payout_no=payout.payout_no,
            payout_ref=payout.payout_ref,
            amount_minor=str(payout.amount),
            currency=payout.currency,
            ts=int(time.time()),
        )
        await self._deliver(payout.api_key, payout.notify_url, payout.payout_no, event)

    async def _deliver(
        self, api_key: str, url: str, about: str, event: wire.CallbackEvent | wire.PayoutEvent
    ) -> bool:
        """Send a callback until it is taken; False once the retries are spent."""
        assert self.session is not None, "callbacks are sent only while the app runs"
        body = msgspec.json.encode(event)
        secret = self.accounts[api_key]
        for attempt, delay in enumerate((0.0, *RETRY_DELAYS_S), start=1):
            await asyncio.sleep(delay)
            headers = {
                "Content-Type": "application/json",
                **wire.callback_headers(secret, body, time.time()),
            }
            try:
                async with self.session.post(url, data=body, headers=headers) as resp:
                    if resp.status == 200 and (await resp.text()).strip() == "success":
                        return True
                    outcome = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                outcome = type(exc).__name__
            log.info(
                "callback %s for %s attempt %d: %s",
                event.event_id,
                about,
                attempt,
                outcome,
            )
        log.warning("giving up callback %s (%s) for %s", event.event_id, event.event, about)
        return False

    def schedule_payment(self, order: Order) -> None:
        self.spawn(self._pay_after_delay(order))

    async def _pay_after_delay(self, order: Order) -> None:
        await asyncio.sleep(self.settings.pay_delay_ms / 1000)
        self.settle(order)

    async def start(self, _app: web.Application) -> None:
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT_S)
        )
        if self.settings.state_file:
            self.resume(self.settings.state_file)

    async def stop(self, _app: web.Application) -> None:
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()
        if self.settings.state_file:
            self.save(self.settings.state_file)

    def save(self, path: str) -> None:
        """Keep the state for the next start, written atomically (a torn file loses it all).

        A real channel keeps its orders while the gateway in front of it restarts; the simulator
        runs under the node's own supervisor, so without this a node stopped and started again
        would find every order its customers had not paid yet forgotten, and those payments
        could only expire. A crash loses what happened since the last start, as a sandbox may."""
        snapshot = Snapshot(
            orders=list(self.orders.values()),
            refunds=[(key, ref, refund) for (key, ref), refund in self.refunds.items()],
            payouts=list(self.payouts.values()),
            failed_once=sorted(self.failed_once),
            outages=sorted(self.outages),
        )
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        partial.write_bytes(msgspec.json.encode(snapshot))
        os.replace(partial, target)

    def resume(self, path: str) -> None:
        """Take the saved state back and carry on where the stop cut in: pay what was due to
        be paid, announce what was not yet taken, finish payouts under way."""
        try:
            snapshot = msgspec.json.decode(Path(path).read_bytes(), type=Snapshot)
        except FileNotFoundError:
            return
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("simulator state unreadable, starting empty: %s", exc)
            return
        for order in snapshot.orders:
            self.orders[order.order_no] = order
            self.order_refs[(order.api_key, order.merchant_ref)] = order.order_no
            if order.status == "PENDING" and order.magic != NEVER_PAID:
                self.schedule_payment(order)
            elif order.status in ("PAID", "FAILED") and not order.notified:
                # a silent order's callback is lost on purpose, before or after a restart
                events = [] if order.magic == SILENT else [_final_event(order)]
                self.spawn(self._announce(order, events))
        self.refunds.update({(key, ref): refund for key, ref, refund in snapshot.refunds})
        for payout in snapshot.payouts:
            self.payouts[(payout.api_key, payout.payout_ref)] = payout
            if payout.status == "PROCESSING":
                self.spawn(self.pay_out(payout))
        self.failed_once.update((key, ref) for key, ref in snapshot.failed_once)
        self.outages.update(snapshot.outages)
        log.info(
            "simulator state resumed: %d orders, %d payouts", len(self.orders), len(self.payouts)
        )


class Snapshot(msgspec.Struct, frozen=True):
    orders: list[Order]
    refunds: list[tuple[str, str, Refund]]  # (api_key, refund_ref, refund)
    payouts: list[Payout]
    failed_once: list[tuple[str, str]]
    outages: list[str]


def _final_event(order: Order) -> wire.CallbackEvent:
    return wire.CallbackEvent(
        event_id=_new_id("evt_"),
        event="order.failed" if order.status == "FAILED" else "order.paid",
        order_no=order.order_no,
        merchant_ref=order.merchant_ref,
        amount_minor=str(order.amount),
        currency=order.currency,
        ts=int(time.time()),
    )


SANDBOX = web.AppKey("sandbox", Sandbox)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def _account(request: web.Request) -> str:
    """The merchant's api_key; `api_middleware` has verified it before any /v1 handler runs."""
    return request.headers["Authorization"].partition(" ")[2]


def _json(status: int, payload: msgspec.Struct) -> web.Response:
    return web.Response(
        status=status, body=msgspec.json.encode(payload), content_type="application/json"
    )


def _error(status: int, code: str, message: str) -> web.Response:
    return _json(status, wire.Error(code=code, message=message))


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Latency, authentication and JSON errors for ``/v1``; the pay pages are public."""
    if not request.path.startswith("/v1/"):
        return await handler(request)
    sandbox = request.app[SANDBOX]
    await asyncio.sleep(sandbox.settings.latency_ms / 1000)
    scheme, _, api_key = request.headers.get("Authorization", "").partition(" ")
    secret = sandbox.accounts.get(api_key) if scheme == "Bearer" else None
    if secret is None:
        return _error(401, "AUTH_FAILED", "unknown or missing API key")
    try:
        body = await request.read()
    except ConnectionResetError:  # the client went away mid-request (its pool was stopped)
        return _error(400, "BAD_REQUEST", "the request was cut off")
    try:
        wire.verify_api(
            secret, request.headers, request.method, request.raw_path, body, time.time()
        )
    except wire.SignatureInvalid as exc:
        return _error(401, "AUTH_FAILED", str(exc))
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return _error(exc.status, exc.reason.upper().replace(" ", "_"), exc.reason)


async def create_order(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    try:
        body = msgspec.json.decode(await request.read(), type=wire.CreateOrder)
    except msgspec.DecodeError as exc:
        return _error(400, "BAD_REQUEST", str(exc))
    api_key = _account(request)
    key = (api_key, body.merchant_ref)
    amount = int(body.amount_minor)
    magic = amount % 100
    if magic == FLAKY and key not in sandbox.failed_once:
        sandbox.failed_once.add(key)
        return _error(503, "UNAVAILABLE", "service temporarily unavailable")
    if magic == DOWN or api_key in sandbox.outages:
        return _error(503, "UNAVAILABLE", "service temporarily unavailable")
    if magic == DECLINED:
        return _error(402, "DECLINED", "insufficient funds")
    order_no = sandbox.order_refs.get(key)
    order = sandbox.orders[order_no] if order_no else None
    if order is None:
        order = Order(
            order_no=_new_id("SIM"),
            api_key=api_key,
            merchant_ref=body.merchant_ref,
            amount=amount,
            currency=body.currency,
            notify_url=body.notify_url,
            return_url=body.return_url,
            subject=body.subject,
            created_at=int(time.time()),
        )
        sandbox.orders[order.order_no] = order
        sandbox.order_refs[key] = order.order_no
        if magic != NEVER_PAID:
            sandbox.schedule_payment(order)
    elif (order.amount, order.currency) != (amount, body.currency):
        return _error(409, "DUPLICATE_REF", "merchant_ref was used for a different order")
    if magic == SLOW:
        await asyncio.sleep(sandbox.settings.timeout_delay_ms / 1000)
    host, port = sandbox.settings.host, sandbox.settings.port
    pay_url = f"http://{host}:{port}/pay/{order.order_no}"
    personality = sandbox.settings.personalities.get(api_key, "ewallet")
    return _json(
        200,
        wire.OrderCreated(
            order_no=order.order_no,
            status=order.status,
            pay_url=pay_url,
            qr_code=f"simpay://{order.order_no}" if personality == "ewallet" else None,
            virtual_account=wire.VirtualAccount(
                bank_code="SIMB",
                account_no="9" + str(zlib.crc32(order.order_no.encode())).zfill(11),
                reference=order.order_no,
            )
            if personality == "bank_transfer"
            else None,
        ),
    )


def _owned_order(request: web.Request, order_no: str) -> Order | None:
    order = request.app[SANDBOX].orders.get(order_no)
    return order if order is not None and order.api_key == _account(request) else None


async def get_order(request: web.Request) -> web.Response:
    order = _owned_order(request, request.match_info["order_no"])
    if order is None:
        return _error(404, "NOT_FOUND", "no such order")
    return _json(200, order.view())


async def cancel_order(request: web.Request) -> web.Response:
    """Close an unpaid order so that it can no longer be paid; 409 ``ALREADY_PAID`` once the
    customer has paid. Canceling a canceled or failed order again answers it as it is."""
    order = _owned_order(request, request.match_info["order_no"])
    if order is None:
        return _error(404, "NOT_FOUND", "no such order")
    if order.status == "PENDING":
        order.status = "CANCELED"
    elif order.status not in ("CANCELED", "FAILED"):
        return _error(409, "ALREADY_PAID", "the order is paid; refund it instead")
    return _json(200, order.view())


async def find_order(request: web.Request) -> web.Response:
    merchant_ref = request.query.get("merchant_ref")
    if not merchant_ref:
        return _error(400, "BAD_REQUEST", "merchant_ref is required")
    sandbox = request.app[SANDBOX]
    order_no = sandbox.order_refs.get((_account(request), merchant_ref))
    if order_no is None:
        return _error(404, "NOT_FOUND", "no such order")
    return _json(200, sandbox.orders[order_no].view())


async def create_refund(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    try:
        body = msgspec.json.decode(await request.read(), type=wire.CreateRefund)
    except msgspec.DecodeError as exc:
        return _error(400, "BAD_REQUEST", str(exc))
    amount = int(body.amount_minor)
    key = (_account(request), body.refund_ref)
    refund = sandbox.refunds.get(key)
    if refund is not None:
        if (refund.order_no, refund.amount) != (body.order_no, amount):
            return _error(409, "DUPLICATE_REF", "refund_ref was used for a different refund")
        return _json(200, wire.RefundCreated(refund_no=refund.refund_no, status="SUCCESS"))
    order = _owned_order(request, body.order_no)
    if order is None:
        return _error(404, "NOT_FOUND", "no such order")
    if order.status not in ("PAID", "PARTIALLY_REFUNDED", "REFUNDED"):
        return _error(422, "NOT_PAID", "only paid orders can be refunded")
    if amount > order.amount - order.refunded:
        return _error(422, "REFUND_EXCEEDS", "refund exceeds the amount left to refund")
    order.refunded += amount
    order.status = "REFUNDED" if order.refunded == order.amount else "PARTIALLY_REFUNDED"
    refund = Refund(_new_id("SIMR"), order.order_no, amount, int(time.time()))
    sandbox.refunds[key] = refund
    return _json(200, wire.RefundCreated(refund_no=refund.refund_no, status="SUCCESS"))


async def create_payout(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    try:
        body = msgspec.json.decode(await request.read(), type=wire.CreatePayout)
    except msgspec.DecodeError as exc:
        return _error(400, "BAD_REQUEST", str(exc))
    amount = int(body.amount_minor)
    if amount % 100 == ACCOUNT_REJECTED:
        return _error(402, "ACCOUNT_REJECTED", "the bank refused the account")
    key = (_account(request), body.payout_ref)
    payout = sandbox.payouts.get(key)
    if payout is None:
        payout = Payout(
            _new_id("SIMP"), key[0], body.payout_ref, amount, body.currency, body.notify_url
        )
        sandbox.payouts[key] = payout
        sandbox.spawn(sandbox.pay_out(payout))
    elif (payout.amount, payout.currency) != (amount, body.currency):
        return _error(409, "DUPLICATE_REF", "payout_ref was used for a different payout")
    else:
        payout.requests += 1
    if amount % 100 == PAYOUT_SLOW:
        await asyncio.sleep(sandbox.settings.timeout_delay_ms / 1000)
    return _json(200, payout.view())


async def find_payout(request: web.Request) -> web.Response:
    payout = request.app[SANDBOX].payouts.get(
        (_account(request), request.query.get("payout_ref", ""))
    )
    if payout is None:
        return _error(404, "NOT_FOUND", "no such payout")
    return _json(200, payout.view())


async def list_payouts(request: web.Request) -> web.Response:
    """Every payout taken, by payout_ref, with how many requests asked for it (tests)."""
    return web.json_response(
        {
            p.payout_ref: {"payout_no": p.payout_no, "status": p.status, "requests": p.requests}
            for p in request.app[SANDBOX].payouts.values()
        }
    )


SETTLED = ("PAID", "PARTIALLY_REFUNDED", "REFUNDED")


def statement_rows(sandbox: Sandbox, api_key: str, day: datetime) -> Iterator[list[str]]:
    """The account's statement lines for the UTC day starting at `day`, with its faults."""
    start, end = day.timestamp(), (day + timedelta(days=1)).timestamp()
    cost = sandbox.costs.get(api_key, Rate(0))
    rows: list[tuple[str, list[str]]] = []  # (merchant_ref, row)
    for o in sandbox.orders.values():
        if o.api_key == api_key and start <= o.created_at < end and o.status in SETTLED:
            row = [o.order_no, o.merchant_ref, "payment", str(o.amount), o.currency]
            row += [str(cost.fee(o.amount)), "SUCCESS", str(o.created_at), str(o.paid_at or "")]
            rows.append((o.merchant_ref, row))
    for (key, ref), r in sandbox.refunds.items():
        if key == api_key and start <= r.created_at < end:
            currency = sandbox.orders[r.order_no].currency
            row = [r.refund_no, ref, "refund", str(r.amount), currency, "0", "SUCCESS"]
            rows.append((ref, [*row, str(r.created_at), str(r.created_at)]))
    faults = sandbox.faults.get(api_key, [])
    for ref, row in rows:
        mine = {f.kind: f for f in faults if f.merchant_ref == ref}
        if "omit" in mine:
            continue
        if "amount" in mine:
            row[3] = str(int(row[3]) + mine["amount"].delta)
        if "fee" in mine:
            row[5] = str(int(row[5]) + mine["fee"].delta)
        if "status" in mine:
            row[6] = "FAILED"
        yield from [row, row] if "duplicate" in mine else [row]
    for f in (f for f in faults if f.kind == "extra"):  # a stable order_no: the same file
        order_no = f"SIMX{zlib.crc32(f'{api_key}:{f.merchant_ref}'.encode()):010d}"
        row = [order_no, f.merchant_ref, "payment", f.amount_minor, f.currency]
        fee = str(cost.fee(int(f.amount_minor)))
        yield [*row, fee, "SUCCESS", str(int(start)), str(int(start))]


async def get_statement(request: web.Request) -> web.Response:
    try:
        day = datetime.strptime(request.match_info["day"], "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return _error(400, "BAD_REQUEST", "the day is YYYY-MM-DD")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(wire.STATEMENT_COLUMNS)
    writer.writerows(statement_rows(request.app[SANDBOX], _account(request), day))
    return web.Response(text=out.getvalue(), content_type="text/csv")


async def put_statement_faults(request: web.Request) -> web.Response:
    """Put discrepancies into an account's statements (tests); they replace earlier ones."""
    try:
        faults = msgspec.json.decode(await request.read(), type=list[wire.StatementFault])
    except msgspec.DecodeError as exc:
        return _error(400, "BAD_REQUEST", str(exc))
    request.app[SANDBOX].faults[request.match_info["api_key"]] = faults
    return web.json_response({"discrepancies": len(faults)})


async def delete_statement_faults(request: web.Request) -> web.Response:
    request.app[SANDBOX].faults.pop(request.match_info["api_key"], None)
    return web.json_response({"discrepancies": 0})


# The pay page's one stylesheet, allowed by its hash in the Content-Security-Policy
# (infra.httpserver.protect): no inline style attributes, no script.
STYLE = "body{font-family:sans-serif;max-width:28em;margin:3em auto}.amount{font-size:2em}"
_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>SimPay {order_no}</title><style>{style}</style></head>
<body>
<h1>SimPay</h1>
<p>{subject}</p>
<p class="amount">{amount} {currency}</p>
<p>Order {order_no}: <strong>{status}</strong></p>
{action}
</body></html>
"""


async def pay_page(request: web.Request) -> web.Response:
    order = request.app[SANDBOX].orders.get(request.match_info["order_no"])
    if order is None:
        raise web.HTTPNotFound(text="no such order")
    try:
        amount = format_amount(order.amount, order.currency)
    except AmountError:
        amount = f"{order.amount} (minor units)"
    if order.status == "PENDING":
        action = (
            f'<form method="post" action="/pay/{order.order_no}/confirm">'
            "<button>Pay</button></form>"
        )
    elif order.return_url:
        action = f'<p><a href="{html.escape(order.return_url)}">Back to the merchant</a></p>'
    else:
        action = ""
    page = _PAGE.format(
        order_no=order.order_no,
        subject=html.escape(order.subject or ""),
        amount=html.escape(amount),
        currency=html.escape(order.currency),
        status=order.status,
        action=action,
        style=STYLE,
    )
    return web.Response(text=page, content_type="text/html")


async def confirm_payment(request: web.Request) -> web.Response:
    """The customer pays now (test amounts still apply: 57 fails); a no-op unless pending."""
    sandbox = request.app[SANDBOX]
    order = sandbox.orders.get(request.match_info["order_no"])
    if order is None:
        raise web.HTTPNotFound(text="no such order")
    sandbox.settle(order)
    raise web.HTTPSeeOther(f"/pay/{order.order_no}")


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


WEBHOOKS_SEEN = web.AppKey("webhooks_seen", dict)


async def merchant_webhook(request: web.Request) -> web.Response:
    """Plays a merchant's webhook receiver for demos and load tests: takes Juhe's webhooks and
    counts them by type. It does not check Juhe's signature (it knows no merchant's secret)."""
    event = await request.json()
    seen = request.app[WEBHOOKS_SEEN]
    seen[event.get("type", "unknown")] = seen.get(event.get("type", "unknown"), 0) + 1
    return web.json_response({"received": True})


async def merchant_webhook_counts(request: web.Request) -> web.Response:
    return web.json_response(request.app[WEBHOOKS_SEEN])


async def start_outage(request: web.Request) -> web.Response:
    """Make one merchant account's creates answer 503 until the outage ends: a channel made to
    fail, for failover and breaker tests and demos."""
    request.app[SANDBOX].outages.add(request.match_info["api_key"])
    return web.json_response({"outage": request.match_info["api_key"]})


async def end_outage(request: web.Request) -> web.Response:
    request.app[SANDBOX].outages.discard(request.match_info["api_key"])
    return web.json_response({"outage": None})


def create_app(settings: Settings) -> web.Application:
    accounts = {
        channel.api_key: channel.secret
        for channel in settings.channels.values()
        if channel.adapter == "simulator"
    }
    if not accounts:
        raise ValueError('no channel with adapter = "simulator" is configured')
    costs = {
        channel.api_key: Rate(channel.cost_bps, channel.cost_fixed_minor)
        for channel in settings.channels.values()
        if channel.adapter == "simulator"
    }
    sandbox = Sandbox(settings=settings.simulator, accounts=accounts, costs=costs)
    app = web.Application(middlewares=[api_middleware])
    app[SANDBOX] = sandbox
    app.on_startup.append(sandbox.start)
    app.on_cleanup.append(sandbox.stop)
    app.router.add_post("/v1/orders", create_order)
    app.router.add_get("/v1/orders", find_order)
    app.router.add_get("/v1/orders/{order_no}", get_order)
    app.router.add_post("/v1/orders/{order_no}/cancel", cancel_order)
    app.router.add_post("/v1/refunds", create_refund)
    app.router.add_post("/v1/payouts", create_payout)
    app.router.add_get("/v1/payouts", find_payout)
    app.router.add_get("/_sim/payouts", list_payouts)
    app.router.add_get("/v1/statements/{day}", get_statement)
    app.router.add_put("/_sim/statements/{api_key}/discrepancies", put_statement_faults)
    app.router.add_delete("/_sim/statements/{api_key}/discrepancies", delete_statement_faults)
    app.router.add_get("/pay/{order_no}", pay_page)
    app.router.add_post("/pay/{order_no}/confirm", confirm_payment)
    app.router.add_get("/_sim/health", health)
    app[WEBHOOKS_SEEN] = {}
    app.router.add_post("/_sim/webhooks", merchant_webhook)
    app.router.add_get("/_sim/webhooks", merchant_webhook_counts)
    app.router.add_put("/_sim/outages/{api_key}", start_outage)
    app.router.add_delete("/_sim/outages/{api_key}", end_outage)
    return protect(hide_versions(app), styles=(STYLE,))


async def serve(settings: Settings) -> None:
    """Run the simulator on ``simulator.host:port`` until SIGTERM or SIGINT, then stop cleanly
    (which is when its state is saved)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.simulator.host, settings.simulator.port)
        await site.start()
        log.info("simulator listening on %s:%d", settings.simulator.host, settings.simulator.port)
        await stop.wait()
    finally:
        await runner.cleanup()
