"""Realistic load mixes for a running Juhe node, for headless locust runs against any deployment.

Run from the repository root, here against ``make run`` with its demo merchant's key::

    export JUHE_LOCUST_KEY_ID=key_… JUHE_LOCUST_SECRET=sk_…
    .venv/bin/locust -f benchmarks/locustfile.py --headless -u 50 -r 10 -t 1m --host http://127.0.0.1:8080 --csv /tmp/juhe-locust

``--host`` is the gateway's root URL (no path: the path is part of what is signed). Environment:

``JUHE_LOCUST_KEY_ID``, ``JUHE_LOCUST_SECRET``
    A merchant's API key, e.g. the demo merchant ``make run`` prints. Required by `MerchantUser`
    and `RefundBurst`; the merchant must have the currency enabled.
``JUHE_LOCUST_CHANNEL_SECRET``
    The ``sim`` channel's secret (``[channels.sim] secret``), for `CallbackStorm`. Default
    ``sim_secret_demo``.
``JUHE_LOCUST_CURRENCY``
    The currency of every payment and callback. Default ``USD``.

User classes (name some on the command line to run only those):

- `MerchantUser`: creates, reads, looks up by merchant_order_id, replays creates and cancels
  never-paid payments, all signed;
- `CallbackStorm`: signed simulator ``order.paid`` callbacks for unknown payments, some of them
  exact duplicates; measures the callback intake;
- `RefundBurst`: waits for a payment to succeed, then fires concurrent partial refunds.

Amounts avoid the simulator's test endings (minor units ``% 100`` in 51–58), except the ``56``
("never paid") that `MerchantUser` uses on purpose for cancels. Stats are grouped by route.
"""  # noqa: E501

from __future__ import annotations

import os
import random
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec
import orjson
from gevent.pool import Group
from locust import FastHttpUser, between, events, task
from locust.contrib.fasthttp import ResponseContextManager
from locust.env import Environment

from adapters.simulator import wire
from adapters.simulator.server import TEST_AMOUNTS
from domain.money import format_amount
from gateway.client import signed_headers

KEY_ID = os.environ.get("JUHE_LOCUST_KEY_ID", "")
SECRET = os.environ.get("JUHE_LOCUST_SECRET", "")
CHANNEL_SECRET = os.environ.get("JUHE_LOCUST_CHANNEL_SECRET", "sim_secret_demo")
CURRENCY = os.environ.get("JUHE_LOCUST_CURRENCY", "USD")

PAYMENTS = "/api/v1/payments"
REFUNDS = "/api/v1/refunds"
CALLBACK = "/api/v1/payments/callback/sim"
SAFE_ENDINGS = [c for c in range(100) if c not in TEST_AMOUNTS]
NEVER_PAID = 56
UNPAID = frozenset({"pending", "in_review", "processing", "awaiting_payment"})


class Reply(NamedTuple):
    """An answer with the expected status: its raw body and its decoded JSON."""

    raw: bytes
    doc: Any


# Looks at an answer that has the expected status; returns what is wrong with it, or None.
Check = Callable[[Reply], str | None]


class Created(NamedTuple):
    """A payment this user created, with what it takes to replay the create."""

    id: str
    merchant_order_id: str
    idempotency_key: str
    body: bytes
    answer: bytes


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def safe_amount(low: int, high: int) -> int:
    """A minor-unit amount in about [low, high) that the simulator pays normally."""
    return random.randrange(low, high) // 100 * 100 + random.choice(SAFE_ENDINGS)


def field_is(key: str, value: Any) -> Check:
    def check(reply: Reply) -> str | None:
        got = reply.doc.get(key)
        return None if got == value else f"{key} is {got!r}, expected {value!r}"

    return check


def settled(final: bool) -> Check:
    """Succeeded, or still on its way to it unless this is the last look."""

    def check(reply: Reply) -> str | None:
        status = reply.doc.get("status")
        if status == "succeeded" or (status in UNPAID and not final):
            return None
        return f"payment is {status}, expected succeeded"

    return check


def judge(response: ResponseContextManager, expect: int, check: Check | None) -> Reply | None:
    """Mark the response a success or a failure; return it when it is a success."""
    raw = response.content or b""
    if response.status_code != expect:
        response.failure(f"HTTP {response.status_code}, expected {expect}: {raw[:300]!r}")
        return None
    try:
        reply = Reply(raw, orjson.loads(raw))
    except orjson.JSONDecodeError:
        response.failure(f"not JSON: {raw[:300]!r}")
        return None
    if check and (problem := check(reply)):
        response.failure(problem)
        return None
    response.success()
    return reply


@events.init.add_listener
def require_api_key(environment: Environment, **_: Any) -> None:
    if {MerchantUser, RefundBurst} & set(environment.user_classes) and not (KEY_ID and SECRET):
        raise SystemExit("set JUHE_LOCUST_KEY_ID and JUHE_LOCUST_SECRET to a merchant's API key")


class SignedMerchant(FastHttpUser):
    """Base for users of the merchant API: every request is signed with the merchant's key."""

    abstract = True

    def call(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        name: str,
        expect: int,
        idempotency_key: str | None = None,
        check: Check | None = None,
    ) -> Reply | None:
        """One signed request, a failure unless it answers `expect` and passes `check`."""
        headers = signed_headers(KEY_ID, SECRET, method, path, body)
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        with self.client.request(
            method, path, data=body, headers=headers, name=name, catch_response=True
        ) as response:
            return judge(response, expect, check)

    def create_payment(self, amount: int) -> Created | None:
        order_id = unique("locust")
        key = unique("idem")
        body = orjson.dumps(
            {
                "amount": format_amount(amount, CURRENCY),
                "currency": CURRENCY,
                "merchant_order_id": order_id,
                "description": "locust order",
                "customer": {"email": f"{order_id}@example.com", "ip": "203.0.113.7"},
                "metadata": {"source": "locust"},
            }
        )
        reply = self.call(
            "POST",
            PAYMENTS,
            body,
            name=PAYMENTS,
            expect=201,
            idempotency_key=key,
            check=field_is("status", "pending"),
        )
        return Created(reply.doc["id"], order_id, key, body, reply.raw) if reply else None

    def get_payment(self, payment_id: str, check: Check | None = None) -> Reply | None:
        return self.call(
            "GET",
            f"{PAYMENTS}/{payment_id}",
            name=f"{PAYMENTS}/{{id}}",
            expect=200,
            check=check or field_is("id", payment_id),
        )


class MerchantUser(SignedMerchant):
    """A merchant's checkout backend: mostly creates and status reads."""

    weight = 6
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.created: deque[Created] = deque(maxlen=50)

    def known(self) -> Created | None:
        """A payment created earlier; when there is none yet, creates one for next time."""
        if self.created:
            return random.choice(self.created)
        self.create()
        return None

    @task(10)
    def create(self) -> None:
        if payment := self.create_payment(safe_amount(500, 50_000)):
            self.created.append(payment)

    @task(6)
    def read(self) -> None:
        if payment := self.known():
            self.get_payment(payment.id)

    @task(2)
    def lookup(self) -> None:
        if not (payment := self.known()):
            return

        def found_it(reply: Reply) -> str | None:
            ids = [p["id"] for p in reply.doc.get("data", [])]
            return None if ids == [payment.id] else f"found {ids}, expected [{payment.id!r}]"

        self.call(
            "GET",
            f"{PAYMENTS}?merchant_order_id={payment.merchant_order_id}",
            name=f"{PAYMENTS}?merchant_order_id={{id}}",
            expect=200,
            check=found_it,
        )

    @task(1)
    def replay(self) -> None:
        """The same create with the same Idempotency-Key answers the first 201, byte for byte."""
        if not (payment := self.known()):
            return
        self.call(
            "POST",
            PAYMENTS,
            payment.body,
            name=f"{PAYMENTS} (replay)",
            expect=201,
            idempotency_key=payment.idempotency_key,
            check=lambda reply: None if reply.raw == payment.answer else "replay differs",
        )

    @task(1)
    def cancel(self) -> None:
        """Create a payment the simulator never pays (cents 56), then cancel it."""
        if not (payment := self.create_payment(random.randrange(5, 500) * 100 + NEVER_PAID)):
            return
        self.call(
            "POST",
            f"{PAYMENTS}/{payment.id}/cancel",
            name=f"{PAYMENTS}/{{id}}/cancel",
            expect=200,
            idempotency_key=unique("cancel"),
            check=field_is("status", "canceled"),
        )


class RefundBurst(SignedMerchant):
    """A merchant settling returns: once a payment has succeeded, several partial refunds at
    once, which race their reservations against each other."""

    weight = 1
    wait_time = between(2.0, 5.0)
    polls = 20
    poll_interval_s = 0.25
    refunds = 4  # each a fifth of the amount, so the whole burst fits

    @task
    def refund_burst(self) -> None:
        amount = safe_amount(10_000, 100_000)
        if not (payment := self.create_payment(amount)) or not self.wait_succeeded(payment.id):
            return

        def refund(n: int) -> Reply | None:
            # Refunds of their own: the same signed request again would be a replay (401).
            body = orjson.dumps(
                {
                    "payment_id": payment.id,
                    "amount": format_amount(amount // 5, CURRENCY),
                    "reason": f"locust burst {n}",
                }
            )
            return self.call(
                "POST", REFUNDS, body, name=REFUNDS, expect=201, idempotency_key=unique("refund")
            )

        for reply in Group().map(refund, range(self.refunds)):
            if reply:
                self.call(
                    "GET",
                    f"{REFUNDS}/{reply.doc['id']}",
                    name=f"{REFUNDS}/{{id}}",
                    expect=200,
                    check=field_is("payment_id", payment.id),
                )

    def wait_succeeded(self, payment_id: str) -> bool:
        """Poll until the payment succeeds; a poll is a failure once it cannot or did not."""
        for attempt in range(1, self.polls + 1):
            reply = self.get_payment(payment_id, settled(final=attempt == self.polls))
            if reply is None:
                return False
            if reply.doc["status"] == "succeeded":
                return True
            time.sleep(self.poll_interval_s)
        return False


class CallbackStorm(FastHttpUser):
    """The simulator channel calling back: signed ``order.paid`` events for payments the gateway
    does not know (still answered 200 ``success``), some of them exact repeats."""

    weight = 3
    wait_time = between(0.05, 0.3)
    duplicate_share = 0.2

    def on_start(self) -> None:
        self.sent: deque[bytes] = deque(maxlen=20)

    @task
    def callback(self) -> None:
        if self.sent and random.random() < self.duplicate_share:
            body, name = random.choice(self.sent), f"{CALLBACK} (duplicate)"
        else:
            token = uuid.uuid4().hex
            event = wire.CallbackEvent(
                event_id=f"evt_locust{token}",
                event="order.paid",
                order_no=f"SIMlocust{token}",
                merchant_ref=f"pay_locust{token}",
                amount_minor=str(safe_amount(500, 50_000)),
                currency=CURRENCY,
                ts=int(time.time()),
            )
            body, name = msgspec.json.encode(event), CALLBACK
            self.sent.append(body)
        headers = {
            "Content-Type": "application/json",
            **wire.callback_headers(CHANNEL_SECRET, body, time.time()),
        }
        with self.client.post(
            CALLBACK, data=body, headers=headers, name=name, catch_response=True
        ) as response:
            text = (response.text or "").strip()
            if response.status_code == 200 and text == "success":
                response.success()
            else:
                response.failure(f"HTTP {response.status_code}: {text[:300]}")
