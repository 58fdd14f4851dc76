"""Reconciliation against a real node: payments and a refund through the simulator agree with
its statement; the discrepancies injected into it are found, exactly; the same file again
changes nothing; the command line runs the same; bad input is a 4xx that changes nothing.

The node is this module's own: a channel's statement covers every merchant on its account for
the day, so other tests' payments (failovers, late payments, rows written by hand) would be
discrepancies here, and this module's hand-written rows would break their ledger checks."""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio

from cli import recon
from domain.access import Realm
from infra import reconciliation
from tests.conftest import MerchantFactory, merchant_on, wait_status
from tests.portal import Portal, make_user
from tests.stack import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")
RUNS = "/api/v1/admin/reconciliation/runs"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack():
    # the scheduler reconciles every past day at once, checking every second
    node = Stack(
        "recon",
        {"JUHE_RECONCILIATION__DUE_AFTER_S": "0", "JUHE_RECONCILIATION__INTERVAL_S": "1"},
    )
    try:
        await node.start()
        yield node
    finally:
        await node.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def new_merchant(stack: Stack, http: aiohttp.ClientSession) -> MerchantFactory:
    async def make() -> Any:
        return await merchant_on(stack, http, "recon")

    return make


async def counts(stack: Stack) -> tuple[int, int, int]:
    assert stack.pg is not None
    row = await stack.pg.fetchrow(
        """SELECT (SELECT count(*) FROM recon_runs) AS runs,
                  (SELECT count(*) FROM recon_discrepancies) AS found,
                  (SELECT count(*) FROM audit_log WHERE action = 'reconciliation.run') AS audited"""
    )
    return row["runs"], row["found"], row["audited"]


async def found(finance: Portal, run_id: str) -> set[tuple[str, str]]:
    status, page = await finance.call(
        "GET", f"/api/v1/admin/reconciliation/discrepancies?run={run_id}&limit=100"
    )
    assert status == 200 and not page["has_more"], page
    return {(d["kind"], d["juhe_id"]) for d in page["data"]}


async def test_finds_exactly_the_injected_discrepancies(
    stack: Stack, http: aiohttp.ClientSession, new_merchant: MerchantFactory
) -> None:
    assert stack.pg is not None
    shop = await new_merchant()
    finance = await make_user(stack, http, Realm.PLATFORM, None, ["finance"])
    paid = []
    for n in range(6):
        _, pay = await shop.create_payment(
            amount=f"{10 + n}.0{n}", currency="USD", merchant_order_id=f"rc-{n}"
        )
        paid.append(pay["id"])
    for pid in paid:
        await wait_status(shop, pid, {"succeeded"})
    _, refund = await shop.request(
        "POST", "/api/v1/refunds", {"payment_id": paid[0], "amount": "1.00"}
    )
    for _ in range(300):
        settled = await stack.pg.fetchval(
            "SELECT count(*) FROM refunds WHERE id = $1 AND status = 'succeeded'", refund["id"]
        )
        posted = await stack.pg.fetchval(
            "SELECT count(*) FROM journal_entries WHERE kind = 'payment' AND ref = ANY($1)", paid
        )
        if settled and posted == len(paid):
            break
        await asyncio.sleep(0.05)
    day = datetime.now(UTC).date().isoformat()

    # Both sides agree: every line matched.
    status, clean = await finance.call("POST", RUNS, {"channel": "sim", "day": day})
    assert status == 201, clean
    assert clean["status"] == "matched" and clean["discrepancies"] == 0, clean
    assert clean["matched"] == clean["channel_lines"] == clean["juhe_records"], clean
    assert clean["matched"]["count"] >= 7  # six payments and the refund (and other tests')

    # The channel's file, with one discrepancy of each kind.
    sim = stack.settings.simulator
    api_key = stack.settings.channels["sim"].api_key
    injected = [
        {"kind": "extra", "merchant_ref": "pay_ghost", "amount_minor": "777", "currency": "USD"},
        {"kind": "omit", "merchant_ref": paid[1]},
        {"kind": "amount", "merchant_ref": paid[2], "delta": 5},
        {"kind": "status", "merchant_ref": paid[3]},
        {"kind": "fee", "merchant_ref": paid[4], "delta": 3},
        {"kind": "duplicate", "merchant_ref": paid[5]},
    ]
    url = f"http://{sim.host}:{sim.port}/_sim/statements/{api_key}/discrepancies"
    async with http.put(url, json=injected) as resp:
        assert resp.status == 200
    try:
        status, run = await finance.call("POST", RUNS, {"channel": "sim", "day": day})
        assert status == 201, run
        assert run["status"] == "discrepancies" and run["discrepancies"] == 6, run
        assert await found(finance, run["id"]) == {
            ("missing_in_juhe", "pay_ghost"),
            ("missing_at_channel", paid[1]),
            ("amount_mismatch", paid[2]),
            ("status_mismatch", paid[3]),
            ("fee_mismatch", paid[4]),
            ("duplicate", paid[5]),
        }
        # all but the four changed lines: paid[5] matched once, the ghost is no match
        assert run["matched"]["count"] == clean["matched"]["count"] - 4, run

        # The same file again: the same run, nothing written.
        before = await counts(stack)
        status, again = await finance.call("POST", RUNS, {"channel": "sim", "day": day})
        assert status == 200 and again["replayed"] and again["id"] == run["id"], again
        again_cli = argparse.Namespace(channel="sim", day=day, file=None)
        cli = await recon.run(stack.settings, again_cli)
        assert cli["id"] == run["id"] and cli["replayed"], cli
        assert await counts(stack) == before

        status, one = await finance.call("GET", f"{RUNS}/{run['id']}")
        assert status == 200 and one["file_sha256"] == run["file_sha256"], one
        status, listed = await finance.call("GET", f"{RUNS}?limit=2")
        assert status == 200 and [r["id"] for r in listed["data"]] == [run["id"], clean["id"]]
        status, still_open = await finance.call(
            "GET", f"/api/v1/admin/reconciliation/discrepancies?status=open&run={run['id']}"
        )
        assert status == 200 and len(still_open["data"]) == 6, still_open
        await resolve(stack, finance, run["id"], still_open["data"], paid[4], paid[5])
    finally:
        async with http.delete(url) as resp:
            assert resp.status == 200


async def resolve(
    stack: Stack,
    finance: Portal,
    run_id: str,
    open_: list[dict[str, Any]],
    fee_of: str,
    twice: str,
) -> None:
    """The fee mismatch adjusted by a balanced entry, the duplicate ignored, each once."""
    assert stack.pg is not None
    by_id = {d["juhe_id"]: d["id"] for d in open_}
    base = "/api/v1/admin/reconciliation/discrepancies"
    fee = {"debit": "channel:sim:cost", "credit": "channel:sim:clearing", "currency": "USD"}
    for body, code in (
        ({"action": "adjust", "reason": "r"}, "invalid_field"),
        ({"action": "ignore", "reason": "r", "adjustment": {**fee, "amount": "0.03"}}, None),
        ({"action": "adjust", "reason": "r", "adjustment": {**fee, "amount": "0.001"}}, None),
        (
            {
                "action": "adjust",
                "reason": "r",
                "adjustment": {**fee, "credit": fee["debit"], "amount": "0.03"},
            },
            None,
        ),
        ({"action": "close", "reason": "r"}, None),
        ({"action": "ignore", "reason": ""}, None),
    ):
        got, answer = await finance.call("POST", f"{base}/{by_id[fee_of]}/resolve", body)
        assert got == 400, (body, answer)
        assert code is None or answer["error"]["code"] == code, answer
    got, answer = await finance.call(
        "POST", f"{base}/rcd_nope/resolve", {"action": "ignore", "reason": "r"}
    )
    assert got == 404, answer
    adjust = {
        "action": "adjust",
        "reason": "the channel's fee",
        "adjustment": {**fee, "amount": "0.03"},
    }
    got, fixed = await finance.call("POST", f"{base}/{by_id[fee_of]}/resolve", adjust)
    assert got == 200 and fixed["status"] == "resolved" and fixed["entry_id"], fixed
    postings = await stack.pg.fetch(
        """SELECT a.name, p.amount FROM postings p JOIN ledger_accounts a ON a.id = p.account_id
            WHERE p.entry_id = $1 ORDER BY a.name""",
        fixed["entry_id"],
    )
    assert [(r["name"], r["amount"]) for r in postings] == [
        ("channel:sim:clearing", -3),
        ("channel:sim:cost", 3),
    ]
    got, ignored = await finance.call(
        "POST", f"{base}/{by_id[twice]}/resolve", {"action": "ignore", "reason": "a repeat"}
    )
    assert got == 200 and ignored["status"] == "ignored" and ignored["resolved_by"], ignored
    got, again = await finance.call("POST", f"{base}/{by_id[twice]}/resolve", adjust)
    assert got == 409 and again["error"]["code"] == "discrepancy_closed", again
    audited = await stack.pg.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'reconciliation.resolve'"
        " AND target = ANY($1)",
        [by_id[fee_of], by_id[twice]],
    )
    assert audited == 2
    got, left = await finance.call("GET", f"{base}?status=open&run={run_id}")
    assert got == 200 and len(left["data"]) == 4, left


async def test_an_uploaded_statement_through_its_column_mapping(
    stack: Stack, http: aiohttp.ClientSession, new_merchant: MerchantFactory, tmp_path: Path
) -> None:
    assert stack.pg is not None
    shop = await new_merchant()
    finance = await make_user(stack, http, Realm.PLATFORM, None, ["finance"])
    _, pay = await shop.create_payment(amount="3.21", currency="USD", merchant_order_id="up-1")
    await wait_status(shop, pay["id"], {"succeeded"})
    for _ in range(300):
        row = await stack.pg.fetchrow(
            """SELECT p.channel_order_id, po.amount AS cost FROM payments p
                 JOIN journal_entries e ON e.kind = 'payment' AND e.ref = p.id
                 JOIN postings po ON po.entry_id = e.id
                 JOIN ledger_accounts a ON a.id = po.account_id AND a.name = 'channel:sim:cost'
                WHERE p.id = $1""",
            pay["id"],
        )
        if row is not None:
            break
        await asyncio.sleep(0.05)
    assert row is not None
    # A day with no payments of Juhe's: the lines find their records by reference.
    rows = [
        [row["channel_order_id"], pay["id"], "payment", "321", "USD", str(row["cost"]), "paid"],
        ["GHOST1", "pay_ghost_upload", "payment", "500", "USD", "0", "paid"],
    ]
    csv = "Ref,Trade,Kind,Minor,Ccy,Cost,State\n" + "".join(",".join(r) + "\n" for r in rows)
    columns = {
        "reference": "Ref",
        "juhe_id": "Trade",
        "type": "Kind",
        "amount": "Minor",
        "currency": "Ccy",
        "fee": "Cost",
        "status": "State",
        "succeeded": ["paid"],
    }
    body = {"channel": "sim", "day": "2001-01-01", "csv": csv, "columns": columns}
    status, run = await finance.call("POST", RUNS, body)
    assert status == 201, run
    assert (run["matched"]["count"], run["channel_lines"]["count"]) == (1, 2), run
    assert run["juhe_records"]["count"] == 0  # none was expected that day
    assert await found(finance, run["id"]) == {("missing_in_juhe", "pay_ghost_upload")}
    before = await counts(stack)
    status, again = await finance.call("POST", RUNS, body)
    assert status == 200 and again["id"] == run["id"] and again["replayed"], again
    assert await counts(stack) == before
    # The command line reads a file with the default columns: the same lines, another file.
    saved = tmp_path / "statement.csv"
    header = "order_no,merchant_ref,type,amount_minor,currency,fee_minor,status\n"
    saved.write_text(header + "".join(",".join([*r[:-1], "SUCCESS"]) + "\n" for r in rows))
    args = argparse.Namespace(channel="sim", day="2001-01-01", file=str(saved))
    cli = await recon.run(stack.settings, args)
    assert not cli["replayed"] and cli["discrepancies"] == 1 and cli["id"] != run["id"], cli
    before = await counts(stack)
    assert (await recon.run(stack.settings, args))["id"] == cli["id"]
    for bad, code, param in (
        ({**body, "csv": csv.replace("321", "3.21")}, "invalid_statement", "csv"),
        ({**body, "columns": {**columns, "fee": "Fee"}}, "invalid_statement", "csv"),
        ({"channel": "sim", "day": "2001-01-01", "columns": columns}, "invalid_field", "columns"),
        ({**body, "channel": "nope"}, "unknown_channel", "channel"),
    ):
        got, answer = await finance.call("POST", RUNS, bad)
        assert got in (400, 404), answer
        assert (answer["error"]["code"], answer["error"]["param"]) == (code, param), answer
    assert await counts(stack) == before


async def test_a_converted_payment_is_compared_in_what_the_channel_charged(
    stack: Stack, new_merchant: MerchantFactory
) -> None:
    """EUR 10.00 charged as USD 10.91: the payment as USD 1091, its two half refunds as their
    slices, 546 and 545 (as the channel pool refunds them)."""
    assert stack.pg is not None
    shop = await new_merchant()
    pid, tag = f"pay_fx{time.time_ns()}", str(time.time_ns())
    at = datetime(2001, 1, 3, 12, tzinfo=UTC)
    fx = {"target": "USD", "converted": 1091, "rate": "10905/10000", "mid": "1/1"}
    fx |= {"spread_bps": 0, "expires_at": 0}
    await stack.pg.execute(
        """INSERT INTO payments (id, merchant_id, merchant_order_id, amount, currency, status,
               channel, channel_order_id, fx, refund_reserved, refunded_amount, created_at,
               expires_at)
           VALUES ($1, $2, $1, 1000, 'EUR', 'refunded', 'sim', $3, $4::jsonb, 1000, 1000, $5,
                   $5)""",
        pid,
        shop.merchant_id,  # type: ignore[attr-defined]
        f"FX{tag}",
        orjson.dumps(fx).decode(),
        at,
    )
    for n, before in enumerate((0, 500)):
        await stack.pg.execute(
            """INSERT INTO refunds (id, payment_id, merchant_id, amount, currency, status,
                   channel_refund_id, reserved_before, created_at)
               VALUES ($1, $2, $3, 500, 'EUR', 'succeeded', $4, $5, $6)""",
            f"re_fx{tag}{n}",
            pid,
            shop.merchant_id,  # type: ignore[attr-defined]
            f"FXR{tag}{n}",
            before,
            at,
        )
    lines = await reconciliation.juhe_lines(stack.pg, "sim", at.date(), [])
    mine = [x for x in lines if x.juhe_id == pid or x.juhe_id.startswith(f"re_fx{tag}")]
    assert sorted((x.type, x.amount, x.currency) for x in mine) == [
        ("payment", 1091, "USD"),
        ("refund", 545, "USD"),
        ("refund", 546, "USD"),
    ]


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"channel": "sim", "day": "2026-13-01"}, 400, "invalid_field", "day"),
        ({"channel": "sim", "day": "01/12/2026"}, 400, "invalid_field", "day"),
        ({"channel": "sim", "day": "2999-01-01"}, 400, "invalid_field", "day"),
        ({"day": "2026-01-01"}, 400, "invalid_field", "channel"),
        ({"channel": "sim", "day": "2026-01-01", "x": 1}, 400, None, None),
        ({"channel": "nope", "day": "2026-01-01"}, 404, "unknown_channel", "channel"),
    ],
)
async def test_bad_input_is_refused_and_changes_nothing(
    stack: Stack,
    http: aiohttp.ClientSession,
    body: dict[str, Any],
    status: int,
    code: str | None,
    param: str | None,
) -> None:
    finance = await make_user(stack, http, Realm.PLATFORM, None, ["finance"])
    before = await counts(stack)
    got, answer = await finance.call("POST", RUNS, body)
    assert got == status, answer
    error = answer["error"]
    assert error["type"] == "invalid_request_error", error
    if code is not None:
        assert (error["code"], error.get("param")) == (code, param), error
    assert await counts(stack) == before


async def test_lists_refuse_unknown_cursors_and_statuses(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    finance = await make_user(stack, http, Realm.PLATFORM, None, ["finance"])
    for path, param in (
        (f"{RUNS}?starting_after=rcn_nope", "starting_after"),
        ("/api/v1/admin/reconciliation/discrepancies?status=lost", "status"),
    ):
        got, answer = await finance.call("GET", path)
        assert got == 400 and answer["error"]["param"] == param, answer
    got, answer = await finance.call("GET", f"{RUNS}/rcn_nope")
    assert got == 404 and answer["error"]["code"] == "resource_missing", answer


async def test_the_scheduler_reconciles_each_past_day_once(stack: Stack) -> None:
    """Yesterday and the two days before, for both simulated channels, once each."""
    assert stack.pg is not None
    today = datetime.now(UTC).date()
    days = {today - timedelta(days=n) for n in (1, 2, 3)}
    want = {(channel, day) for channel in ("sim", "sim_b") for day in days}
    for _ in range(200):
        rows = await stack.pg.fetch(
            "SELECT channel, day FROM recon_runs WHERE actor = 'system:scheduler'"
        )
        if {(r["channel"], r["day"]) for r in rows} >= want:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(2)  # two more ticks of the job: nothing more
    rows = await stack.pg.fetch(
        "SELECT id, channel, day FROM recon_runs WHERE actor = 'system:scheduler'"
    )
    assert sorted((r["channel"], r["day"]) for r in rows) == sorted(want)
    audited = await stack.pg.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'reconciliation.run' AND target = ANY($1)",
        [r["id"] for r in rows],
    )
    assert audited == len(want)


async def _paid_after_cancel(stack: Stack, shop: Any, n: int) -> tuple[str, str]:
    """A payment the simulator takes without calling back (cents 59), canceled at Juhe: the
    channel, asked as its order is closed, says paid. Its payment and discrepancy ids."""
    assert stack.pg is not None
    _, pay = await shop.create_payment(
        amount=f"2{n}.59", currency="USD", merchant_order_id=f"late-{n}-{time.time_ns()}"
    )
    await wait_status(shop, pay["id"], {"awaiting_payment"})
    await asyncio.sleep(0.6)  # the simulator pays it 150 ms after the order
    status, body = await shop.request("POST", f"/api/v1/payments/{pay['id']}/cancel", {})
    assert status == 200 and body["status"] == "canceled", body
    for _ in range(300):
        found_id = await stack.pg.fetchval(
            """SELECT id FROM recon_discrepancies
                WHERE kind = 'paid_after_end' AND juhe_id = $1""",
            pay["id"],
        )
        if found_id:
            return pay["id"], found_id
        await asyncio.sleep(0.05)
    raise AssertionError("the paid-after-end payment was never recorded as a discrepancy")


async def test_paid_after_end_is_refunded_at_the_channel_or_takes_its_word(
    stack: Stack, http: aiohttp.ClientSession, new_merchant: MerchantFactory
) -> None:
    assert stack.pg is not None
    shop = await new_merchant()
    finance = await make_user(stack, http, Realm.PLATFORM, None, ["finance"])
    base = "/api/v1/admin/reconciliation/discrepancies"
    accepted_pid, accepted = await _paid_after_cancel(stack, shop, 1)
    returned_pid, returned = await _paid_after_cancel(stack, shop, 2)
    status, page = await finance.call("GET", f"{base}?status=open&limit=100")
    assert status == 200, page
    late = {d["id"]: d for d in page["data"] if d["kind"] == "paid_after_end"}
    assert {accepted, returned} <= set(late)
    assert (late[accepted]["run_id"], late[accepted]["channel"]) == (None, "sim")
    assert (late[accepted]["channel_value"], late[accepted]["juhe_value"]) == (
        "succeeded",
        "canceled",
    )

    # Take the channel's word: the canceled payment succeeds, posted once.
    body = {"action": "accept_channel", "reason": "the customer paid before the cancel"}
    got, done = await finance.call("POST", f"{base}/{accepted}/resolve", body)
    assert got == 200 and done["status"] == "resolved", done
    assert done["channel_ref"] == f"recon:{accepted}" and done["returned"] is None, done
    await wait_status(shop, accepted_pid, {"succeeded"})
    entries = await stack.pg.fetch(
        """SELECT e.id, sum(p.amount) AS total FROM journal_entries e
             JOIN postings p ON p.entry_id = e.id WHERE e.kind = 'payment' AND e.ref = $1
            GROUP BY e.id""",
        accepted_pid,
    )
    assert [r["total"] for r in entries] == [0], "one balanced entry"
    got, again = await finance.call("POST", f"{base}/{accepted}/resolve", body)
    assert got == 409 and again["error"]["code"] == "discrepancy_closed", again

    # Return the money at the channel: the payment stays canceled, nothing is posted.
    wrong = {"action": "refund", "reason": "r", "adjustment": {"debit": "platform:x"}}
    got, answer = await finance.call("POST", f"{base}/{returned}/resolve", wrong)
    assert got == 400, answer
    body = {"action": "refund", "reason": "the order was canceled"}
    got, done = await finance.call("POST", f"{base}/{returned}/resolve", body)
    assert got == 200 and done["status"] == "resolved", done
    assert done["returned"] == {"amount": "22.59", "currency": "USD"}, done
    assert done["channel_ref"], done
    got, payment = await shop.request("GET", f"/api/v1/payments/{returned_pid}")
    assert payment["status"] == "canceled", payment
    assert not await stack.pg.fetchval(
        "SELECT count(*) FROM journal_entries WHERE ref = $1", returned_pid
    )
    audited = await stack.pg.fetch(
        """SELECT after FROM audit_log WHERE action = 'reconciliation.resolve'
            AND target = ANY($1)""",
        [accepted, returned],
    )
    assert len(audited) == 2

    # The channel's word, not the statement's, decides: a payment paid on both sides that
    # the file calls failed has nothing to accept and is refunded through the API.
    _, fine = await shop.create_payment(
        amount="7.77", currency="USD", merchant_order_id=f"fine-{time.time_ns()}"
    )
    await wait_status(shop, fine["id"], {"succeeded"})
    sim = stack.settings.simulator
    api_key = stack.settings.channels["sim"].api_key
    url = f"http://{sim.host}:{sim.port}/_sim/statements/{api_key}/discrepancies"
    async with http.put(url, json=[{"kind": "status", "merchant_ref": fine["id"]}]) as resp:
        assert resp.status == 200
    try:
        day = datetime.now(UTC).date().isoformat()
        status, run = await finance.call("POST", RUNS, {"channel": "sim", "day": day})
        assert status == 201, run
        named = await found(finance, run["id"])
        mine = {accepted_pid, returned_pid, returned, fine["id"]}
        assert {juhe_id for _, juhe_id in named} & mine == {fine["id"]}, (
            "the accepted payment and the return match; the returned payment's status is "
            "already a discrepancy"
        )
        status, page = await finance.call("GET", f"{base}?run={run['id']}&limit=100")
        (flipped,) = [d for d in page["data"] if d["juhe_id"] == fine["id"]]
        assert flipped["kind"] == "status_mismatch"
        for action, code in (
            ("accept_channel", "nothing_to_accept"),
            ("refund", "refund_through_api"),
        ):
            got, answer = await finance.call(
                "POST", f"{base}/{flipped['id']}/resolve", {"action": action, "reason": "r"}
            )
            assert got == 409 and answer["error"]["code"] == code, answer
    finally:
        async with http.delete(url) as resp:
            assert resp.status == 200
