"""The adapter against a running simulator over loopback HTTP, callbacks included."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import aiohttp
import msgspec
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from adapters.base import (
    CallbackRejected,
    ChannelDeclined,
    ChannelTransientError,
    OrderRequest,
    RefundRequest,
)
from adapters.registry import build_adapter
from adapters.simulator import SimulatorAdapter, create_app, wire
from config import Settings, load_settings
from domain.channels import ChannelSpec, Credentials
from infra.channels import spec_from_config

ENV = {
    "JUHE_SIMULATOR__HOST": "127.0.0.1",
    "JUHE_SIMULATOR__PORT": "0",
    "JUHE_SIMULATOR__PAY_DELAY_MS": "50",
    "JUHE_SIMULATOR__LATENCY_MS": "0",
    "JUHE_SIMULATOR__TIMEOUT_DELAY_MS": "400",
    "JUHE_CHANNELS__SIM__TIMEOUT_MS": "2000",
}


@dataclass(frozen=True, slots=True)
class Delivery:
    headers: CIMultiDict[str]
    body: bytes


class Receiver:
    """Our side of the callbacks: records each delivery by merchant_ref and says `success`."""

    def __init__(self) -> None:
        self.url = ""
        self.deliveries: defaultdict[str, list[Delivery]] = defaultdict(list)
        self.refuse_first: set[str] = set()
        self._arrived = asyncio.Condition()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        ref = orjson.loads(body)["merchant_ref"]
        async with self._arrived:
            self.deliveries[ref].append(Delivery(request.headers.copy(), body))
            self._arrived.notify_all()
        if ref in self.refuse_first and len(self.deliveries[ref]) == 1:
            return web.Response(status=500, text="busy")
        return web.Response(text="success")

    async def wait(self, ref: str, count: int) -> list[Delivery]:
        """The deliveries for `ref` once there are `count` of them (at most 3 s from now)."""
        async with asyncio.timeout(3), self._arrived:
            await self._arrived.wait_for(lambda: len(self.deliveries[ref]) >= count)
        return self.deliveries[ref]


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(ENV)


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/cb", receiver.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        receiver.url = str(server.make_url("/cb"))
        yield receiver


@pytest.fixture(scope="module")
async def simulator(settings: Settings) -> AsyncIterator[TestServer]:
    async with TestServer(create_app(settings), host="127.0.0.1") as server:
        yield server


@pytest.fixture(scope="module")
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="module")
def channel(settings: Settings, simulator: TestServer) -> ChannelSpec:
    return replace(
        spec_from_config("sim", settings.channels["sim"]), base_url=str(simulator.make_url("/"))
    )


@pytest.fixture(scope="module")
def adapter(channel: ChannelSpec, session: aiohttp.ClientSession) -> SimulatorAdapter:
    return SimulatorAdapter(channel, session)


def order(
    receiver: Receiver, amount: int, currency: str = "USD", payment_id: str | None = None
) -> OrderRequest:
    return OrderRequest(
        payment_id=payment_id or f"pay_{uuid.uuid4().hex}",
        amount=amount,
        currency=currency,
        description="a test order",
        callback_url=receiver.url,
        return_url="http://127.0.0.1:1/done",
        expires_at=time.time() + 900,
    )


async def paid_order(adapter: SimulatorAdapter, receiver: Receiver, amount: int) -> OrderRequest:
    request = order(receiver, amount)
    await adapter.create_order(request)
    await receiver.wait(request.payment_id, 1)
    return request


async def test_create_is_idempotent_and_paid_once(
    adapter: SimulatorAdapter, receiver: Receiver
) -> None:
    request = order(receiver, 1000)
    created = await adapter.create_order(request)
    again = await adapter.create_order(request)
    assert again.channel_order_id == created.channel_order_id
    assert created.channel_order_id.startswith("SIM")
    assert created.pay_url is not None and created.pay_url.endswith(
        f"/pay/{created.channel_order_id}"
    )
    assert created.qr_payload == f"simpay://{created.channel_order_id}"

    [delivery] = await receiver.wait(request.payment_id, 1)
    callback = adapter.parse_callback(delivery.headers, delivery.body)
    assert callback.channel == "sim"
    assert callback.outcome == "paid"
    assert callback.payment_id == request.payment_id
    assert callback.channel_order_id == created.channel_order_id
    assert (callback.amount, callback.currency) == ("1000", "USD")
    assert callback.event_id.startswith("evt_")

    await asyncio.sleep(0.15)  # a second payment timer would have fired by now
    assert len(receiver.deliveries[request.payment_id]) == 1
    state = await adapter.query_order(request.payment_id, created.channel_order_id)
    assert (state.status, state.amount, state.currency) == ("paid", 1000, "USD")


async def test_amounts_beyond_64_bits_survive_the_round_trip(
    adapter: SimulatorAdapter, receiver: Receiver
) -> None:
    wei = 12 * 10**18 + 300  # 12 ETH and change: % 100 == 0, an ordinary amount
    request = order(receiver, wei, currency="ETH")
    created = await adapter.create_order(request)
    [delivery] = await receiver.wait(request.payment_id, 1)
    assert adapter.parse_callback(delivery.headers, delivery.body).amount == str(wei)
    state = await adapter.query_order(request.payment_id, created.channel_order_id)
    assert state.amount == wei


async def test_query_by_merchant_ref_with_awkward_characters(
    adapter: SimulatorAdapter, receiver: Receiver
) -> None:
    request = order(receiver, 556, payment_id=f"pay ü/&?={uuid.uuid4().hex}")
    created = await adapter.create_order(request)
    state = await adapter.query_order(request.payment_id, None)
    assert (state.channel_order_id, state.status) == (created.channel_order_id, "pending")
    with pytest.raises(ChannelDeclined) as missing:
        await adapter.query_order("pay_never_created", None)
    assert missing.value.code == "not_found"


async def test_callbacks_are_verified(
    adapter: SimulatorAdapter, receiver: Receiver, channel: ChannelSpec
) -> None:
    request = await paid_order(adapter, receiver, 2000)
    [delivery] = receiver.deliveries[request.payment_id]
    plain = {name.lower(): value for name, value in delivery.headers.items()}
    assert adapter.parse_callback(plain, delivery.body).outcome == "paid"

    tampered = delivery.body.replace(b'"2000"', b'"2"')
    assert tampered != delivery.body
    with pytest.raises(CallbackRejected) as rejected:
        adapter.parse_callback(delivery.headers, tampered)
    assert rejected.value.code == "invalid_signature"

    stale = wire.callback_headers(channel.credentials["secret"], delivery.body, time.time() - 301)
    with pytest.raises(CallbackRejected, match="off"):
        adapter.parse_callback(stale, delivery.body)

    garbage = b'{"event": "order.paid"}'
    signed = wire.callback_headers(channel.credentials["secret"], garbage, time.time())
    with pytest.raises(CallbackRejected) as malformed:
        adapter.parse_callback(signed, garbage)
    assert malformed.value.code == "invalid_payload"


async def test_callback_is_redelivered_until_acknowledged(
    adapter: SimulatorAdapter, receiver: Receiver
) -> None:
    request = order(receiver, 3000)
    receiver.refuse_first.add(request.payment_id)
    await adapter.create_order(request)
    first, second = await receiver.wait(request.payment_id, 2)
    assert first.body == second.body


async def test_declined_amount(adapter: SimulatorAdapter, receiver: Receiver) -> None:
    with pytest.raises(ChannelDeclined) as declined:
        await adapter.create_order(order(receiver, 1051))
    assert (declined.value.code, declined.value.message) == ("declined", "insufficient funds")


async def test_unavailable_once_then_created(adapter: SimulatorAdapter, receiver: Receiver) -> None:
    request = order(receiver, 1053)
    with pytest.raises(ChannelTransientError) as unavailable:
        await adapter.create_order(request)
    assert unavailable.value.code == "channel_unavailable"
    created = await adapter.create_order(request)
    [delivery] = await receiver.wait(request.payment_id, 1)
    assert adapter.parse_callback(delivery.headers, delivery.body).channel_order_id == (
        created.channel_order_id
    )


async def test_always_unavailable(adapter: SimulatorAdapter, receiver: Receiver) -> None:
    request = order(receiver, 1058)
    for _ in range(2):
        with pytest.raises(ChannelTransientError) as unavailable:
            await adapter.create_order(request)
        assert unavailable.value.code == "channel_unavailable"


async def test_slow_answer_times_out(
    channel: ChannelSpec, session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    impatient = SimulatorAdapter(replace(channel, timeout_ms=150), session)
    started = time.monotonic()
    with pytest.raises(ChannelTransientError) as timed_out:
        await impatient.create_order(order(receiver, 1052))
    assert timed_out.value.code == "channel_timeout"
    assert time.monotonic() - started < 0.4


async def test_duplicate_callback(adapter: SimulatorAdapter, receiver: Receiver) -> None:
    request = order(receiver, 1054)
    await adapter.create_order(request)
    deliveries = await receiver.wait(request.payment_id, 2)
    first, second = (adapter.parse_callback(d.headers, d.body) for d in deliveries)
    assert first.event_id == second.event_id
    assert first.outcome == second.outcome == "paid"


async def test_out_of_order_callbacks(adapter: SimulatorAdapter, receiver: Receiver) -> None:
    request = order(receiver, 1055)
    await adapter.create_order(request)
    deliveries = await receiver.wait(request.payment_id, 2)
    paid, pending = (adapter.parse_callback(d.headers, d.body) for d in deliveries)
    assert (paid.outcome, pending.outcome) == ("paid", "pending")
    assert paid.event_id != pending.event_id
    assert orjson.loads(deliveries[1].body)["ts"] < orjson.loads(deliveries[0].body)["ts"]


async def test_failed_payment(adapter: SimulatorAdapter, receiver: Receiver) -> None:
    request = order(receiver, 1057)
    created = await adapter.create_order(request)
    [delivery] = await receiver.wait(request.payment_id, 1)
    assert adapter.parse_callback(delivery.headers, delivery.body).outcome == "failed"
    state = await adapter.query_order(request.payment_id, created.channel_order_id)
    assert state.status == "failed"


async def test_never_paid_until_the_customer_pays_by_hand(
    adapter: SimulatorAdapter,
    receiver: Receiver,
    simulator: TestServer,
    session: aiohttp.ClientSession,
) -> None:
    request = order(receiver, 1056)
    created = await adapter.create_order(request)
    await asyncio.sleep(0.15)
    assert not receiver.deliveries[request.payment_id]
    with pytest.raises(ChannelDeclined) as not_paid:
        await adapter.refund(
            RefundRequest("ref_1056", request.payment_id, created.channel_order_id, 1056, "USD")
        )
    assert not_paid.value.code == "not_paid"

    page_url = simulator.make_url(f"/pay/{created.channel_order_id}")
    async with session.get(page_url) as page:
        text = await page.text()
    assert "10.56 USD" in text and "PENDING" in text and "/confirm" in text
    async with session.post(page_url / "confirm", allow_redirects=False) as confirmed:
        assert confirmed.status == 303
    [delivery] = await receiver.wait(request.payment_id, 1)
    assert adapter.parse_callback(delivery.headers, delivery.body).outcome == "paid"


async def test_a_lost_callback_shows_only_when_asked(
    adapter: SimulatorAdapter, receiver: Receiver
) -> None:
    request = order(receiver, 1059)
    created = await adapter.create_order(request)
    for _ in range(50):
        state = await adapter.query_order(request.payment_id, created.channel_order_id)
        if state.status == "paid":
            break
        await asyncio.sleep(0.05)
    assert state.status == "paid"
    await asyncio.sleep(0.3)
    assert not receiver.deliveries[request.payment_id], "no callback was sent"


async def test_a_canceled_order_cannot_be_paid(
    adapter: SimulatorAdapter,
    receiver: Receiver,
    simulator: TestServer,
    session: aiohttp.ClientSession,
) -> None:
    request = order(receiver, 1156)
    created = await adapter.create_order(request)
    await adapter.cancel_order(request.payment_id, created.channel_order_id)
    await adapter.cancel_order(request.payment_id, created.channel_order_id)  # again: done
    page_url = simulator.make_url(f"/pay/{created.channel_order_id}")
    async with session.post(page_url / "confirm", allow_redirects=False) as confirmed:
        assert confirmed.status == 303
    state = await adapter.query_order(request.payment_id, created.channel_order_id)
    assert state.status == "failed"
    assert not receiver.deliveries[request.payment_id]
    with pytest.raises(ChannelDeclined) as elsewhere:
        await adapter.cancel_order("pay_someone_else", created.channel_order_id)
    assert elsewhere.value.code == "order_mismatch"

    paid = await paid_order(adapter, receiver, 1200)
    order_no = (await adapter.query_order(paid.payment_id, None)).channel_order_id
    with pytest.raises(ChannelDeclined) as refused:
        await adapter.cancel_order(paid.payment_id, order_no)
    assert refused.value.code == "already_paid"


async def test_refunds(adapter: SimulatorAdapter, receiver: Receiver) -> None:
    request = await paid_order(adapter, receiver, 1000)
    order_no = (await adapter.query_order(request.payment_id, None)).channel_order_id

    def refund(refund_id: str, amount: int) -> RefundRequest:
        return RefundRequest(refund_id, request.payment_id, order_no, amount, "USD")

    partial = await adapter.refund(refund("r1", 300))
    assert partial.channel_refund_id.startswith("SIMR")
    assert await adapter.refund(refund("r1", 300)) == partial
    assert (await adapter.query_order(request.payment_id, order_no)).status == "paid"

    with pytest.raises(ChannelDeclined) as exceeds:
        await adapter.refund(refund("r2", 701))
    assert exceeds.value.code == "refund_exceeds"

    rest = await adapter.refund(refund("r3", 700))
    assert rest != partial
    assert (await adapter.query_order(request.payment_id, order_no)).status == "refunded"
    with pytest.raises(ChannelDeclined, match="exceeds"):
        await adapter.refund(refund("r4", 1))


async def test_authentication_is_required(
    adapter: SimulatorAdapter,
    channel: ChannelSpec,
    session: aiohttp.ClientSession,
    simulator: TestServer,
    receiver: Receiver,
) -> None:
    impostor = SimulatorAdapter(
        replace(channel, credentials=Credentials({**channel.credentials, "secret": "wrong"})),
        session,
    )
    with pytest.raises(ChannelDeclined) as denied:
        await impostor.create_order(order(receiver, 1000))
    assert denied.value.code == "auth_failed"

    url = simulator.make_url("/v1/orders")
    stale = wire.api_headers(
        channel.credentials["api_key"],
        channel.credentials["secret"],
        "POST",
        "/v1/orders",
        b"{}",
        0,
    )
    async with session.post(url, data=b"{}", headers=stale) as resp:
        assert resp.status == 401
        assert (await resp.json())["code"] == "AUTH_FAILED"

    fresh = wire.api_headers(
        channel.credentials["api_key"],
        channel.credentials["secret"],
        "POST",
        "/v1/orders",
        b"{}",
        time.time(),
    )
    async with session.post(url, data=b"{}", headers=fresh) as resp:
        assert resp.status == 400
        assert (await resp.json())["code"] == "BAD_REQUEST"


async def test_unreachable_channel_is_transient(
    channel: ChannelSpec, session: aiohttp.ClientSession, receiver: Receiver
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    gone = replace(channel, base_url=f"http://127.0.0.1:{closed_port}")
    with pytest.raises(ChannelTransientError) as unavailable:
        await SimulatorAdapter(gone, session).create_order(order(receiver, 1000))
    assert unavailable.value.code == "channel_unavailable"


async def test_health(simulator: TestServer, session: aiohttp.ClientSession) -> None:
    async with session.get(simulator.make_url("/_sim/health")) as resp:
        assert await resp.json() == {"ok": True}


def test_registry(channel: ChannelSpec, session: aiohttp.ClientSession) -> None:
    adapter = build_adapter(channel, session)
    assert isinstance(adapter, SimulatorAdapter) and adapter.code == "sim"
    assert adapter.callback_ack().body == b"success"
    with pytest.raises(ValueError, match="unknown adapter 'nope'"):
        build_adapter(replace(channel, code="x", adapter="nope"), session)


@pytest.mark.parametrize(
    ("personality", "has_qr", "has_transfer"),
    [("card", False, False), ("ewallet", True, False), ("bank_transfer", False, True)],
)
async def test_personalities_show_the_customer_different_ways_to_pay(
    personality: str, has_qr: bool, has_transfer: bool, receiver: Receiver, session
) -> None:
    settings = load_settings(
        {**ENV, "JUHE_SIMULATOR__PERSONALITIES": f'{{"sim_key_demo": "{personality}"}}'}
    )
    async with TestServer(create_app(settings), host="127.0.0.1") as server:
        channel = replace(
            spec_from_config("sim", settings.channels["sim"]), base_url=str(server.make_url("/"))
        )
        created = await build_adapter(channel, session).create_order(order(receiver, 700))
    assert created.pay_url is not None
    assert (created.qr_payload is not None) is has_qr
    assert (created.bank_transfer is not None) is has_transfer
    if created.bank_transfer:
        assert created.bank_transfer.reference == created.channel_order_id
        assert created.bank_transfer.account_number.isdigit()


async def test_a_clean_restart_keeps_orders_and_pays_them_after(
    settings: Settings, receiver: Receiver, session: aiohttp.ClientSession, tmp_path
) -> None:
    """Stopped before an order was paid, the simulator takes it back from its state file and
    pays it after it starts again; an order paid but not yet announced is announced then, and
    an order never to be paid stays unpaid."""
    state_file = str(tmp_path / "sim.json")
    kept = msgspec.structs.replace(
        settings,
        simulator=msgspec.structs.replace(
            settings.simulator, state_file=state_file, pay_delay_ms=1000
        ),
    )
    first = TestServer(create_app(kept), host="127.0.0.1")
    await first.start_server()
    channel = replace(
        spec_from_config("sim", settings.channels["sim"]), base_url=str(first.make_url("/"))
    )
    waiting, never = order(receiver, 1000), order(receiver, 1056)
    created = await SimulatorAdapter(channel, session).create_order(waiting)
    await SimulatorAdapter(channel, session).create_order(never)
    port = first.port
    await first.close()  # a clean stop, before the pay delay
    assert (tmp_path / "sim.json").exists()
    assert receiver.deliveries[waiting.payment_id] == []

    second = TestServer(create_app(kept), host="127.0.0.1", port=port)
    await second.start_server()
    try:
        adapter = SimulatorAdapter(channel, session)
        state = await adapter.query_order(waiting.payment_id, created.channel_order_id)
        assert state.status == "pending"  # the order survived the restart
        [delivery] = await receiver.wait(waiting.payment_id, 1)
        assert adapter.parse_callback(delivery.headers, delivery.body).outcome == "paid"
        assert receiver.deliveries[never.payment_id] == []
    finally:
        await second.close()
