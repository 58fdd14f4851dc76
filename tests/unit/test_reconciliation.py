"""The pure matcher: exactly the injected discrepancies, none missed, none invented."""

from __future__ import annotations

import csv
import io
import random
from dataclasses import replace
from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.ledger import Posting
from domain.reconciliation import (
    Action,
    Columns,
    Discrepancy,
    Kind,
    Line,
    StatementError,
    adjustment,
    due_days,
    outcome_of,
    parse_statement,
    reconcile,
    refused_action,
)


def line(n: int, **changes: object) -> Line:
    base = Line("payment", f"SIM{n}", f"pay_{n}", 1000 + n, "USD", "succeeded", 12)
    return replace(base, **changes)  # type: ignore[arg-type]


def found(channel: list[Line], juhe: list[Line]) -> set[tuple[Kind, str]]:
    return {(d.kind, d.juhe_id) for d in reconcile(channel, juhe).discrepancies}


def test_agreeing_sides_match_with_their_totals() -> None:
    records = [line(1), line(2, type="refund", fee=0), line(3, currency="JPY")]
    out = reconcile(records, records)
    assert out.discrepancies == []
    assert out.matched.count == out.channel.count == out.juhe.count == 3
    assert out.matched.amounts == {"USD": 2003, "JPY": 1003}


def test_each_mismatch_is_one_discrepancy_with_both_values() -> None:
    juhe = [line(1)]
    channel = [line(1, amount=999, fee=30)]
    assert reconcile(channel, juhe).discrepancies == [
        Discrepancy(Kind.AMOUNT, "payment", "SIM1", "pay_1", "999", "1001"),
        Discrepancy(Kind.FEE, "payment", "SIM1", "pay_1", "30", "12"),
    ]


def test_missing_lines_on_either_side() -> None:
    assert found([line(2)], [line(1)]) == {
        (Kind.MISSING_IN_JUHE, "pay_2"),
        (Kind.MISSING_AT_CHANNEL, "pay_1"),
    }


def test_a_record_is_claimed_once() -> None:
    out = reconcile([line(1), line(1)], [line(1)])
    assert [d.kind for d in out.discrepancies] == [Kind.DUPLICATE]
    assert out.matched.count == 1 and out.channel.count == 2


def test_falls_back_to_juhe_id_and_finds_unexpected_records_by_reference() -> None:
    # Juhe never learnt the channel's order number; and one it thinks failed, outside the day.
    juhe = [line(1, reference=""), line(2, status="failed", expected=False)]
    assert found([line(1), line(2)], juhe) == {(Kind.STATUS, "pay_2")}
    assert found([], juhe) == {(Kind.MISSING_AT_CHANNEL, "pay_1")}


def test_payment_and_refund_with_one_reference_are_separate() -> None:
    records = [line(1), line(1, type="refund", juhe_id="re_1", fee=0)]
    assert found(records, records) == set()


MUTATIONS = {
    Kind.AMOUNT: lambda r: replace(r, amount=r.amount + 1),
    Kind.CURRENCY: lambda r: replace(r, currency="EUR"),
    Kind.STATUS: lambda r: replace(r, status="failed"),
    Kind.FEE: lambda r: replace(r, fee=r.fee + 7),
}
INJECTIONS = st.sampled_from(
    [None, Kind.MISSING_AT_CHANNEL, Kind.DUPLICATE, *MUTATIONS]  # None: left alone
)


@given(
    st.lists(st.tuples(INJECTIONS, st.sampled_from(["payment", "refund"])), max_size=30),
    st.integers(min_value=0, max_value=5),
    st.randoms(use_true_random=False),
)
def test_finds_exactly_the_injected_discrepancies(
    plan: list[tuple[Kind | None, str]], extra: int, rnd: random.Random
) -> None:
    juhe = [line(n, type=t) for n, (_, t) in enumerate(plan)]
    channel: list[Line] = []
    injected: set[tuple[Kind, str]] = set()
    for record, (kind, _) in zip(juhe, plan, strict=True):
        if kind is Kind.MISSING_AT_CHANNEL:
            injected.add((kind, record.juhe_id))
            continue
        channel.append(MUTATIONS[kind](record) if kind in MUTATIONS else record)
        if kind is Kind.DUPLICATE:
            channel.append(record)
        if kind is not None:
            injected.add((kind, record.juhe_id))
    for n in range(extra):  # lines Juhe never heard of
        channel.append(line(1000 + n))
        injected.add((Kind.MISSING_IN_JUHE, f"pay_{1000 + n}"))
    rnd.shuffle(channel)
    out = reconcile(channel, juhe)
    assert len(out.discrepancies) == len(injected)
    assert {(d.kind, d.juhe_id) for d in out.discrepancies} == injected
    assert out.channel.count == len(channel)
    assert out.juhe.count == len(juhe)
    untouched = [r for r, (k, _) in zip(juhe, plan, strict=True) if k in (None, Kind.DUPLICATE)]
    assert out.matched.count == len(untouched)


def test_statuses_in_a_statements_words() -> None:
    assert [outcome_of(s) for s in ("refunded", "processing", "expired")] == [
        "succeeded",
        "pending",
        "failed",
    ]


def test_an_adjustment_is_balanced_between_two_accounts() -> None:
    assert adjustment("channel:sim:clearing", "platform:recon", "USD", 5) == [
        Posting("channel:sim:clearing", "USD", 5),
        Posting("platform:recon", "USD", -5),
    ]
    for debit, amount in (("platform:recon", 5), ("channel:sim:clearing", 0)):
        with pytest.raises(ValueError):
            adjustment(debit, "platform:recon", "USD", amount)


def test_a_statement_file_read_through_its_column_mapping() -> None:
    text = "no,ref,kind,minor,ccy,cost,state\nSIM1,pay_1,payment,1001,USD,12,OK\n"
    text += "SIMR1,re_1,refund,100,USD,0,NOPE\n"
    mapping = Columns("no", "ref", "kind", "minor", "ccy", "cost", "state", ("OK",))
    assert parse_statement(text, mapping) == (
        line(1),
        Line("refund", "SIMR1", "re_1", 100, "USD", "failed", 0),
    )
    header = "order_no,merchant_ref,type,amount_minor,currency,fee_minor,status\n"
    assert parse_statement(header + "SIM1,pay_1,payment,1001,USD,12,SUCCESS\n") == (line(1),)
    for bad in (
        "SIM1,pay_1,charge,1001,USD,12,SUCCESS",
        "SIM1,pay_1,payment,10.01,USD,12,SUCCESS",
        "SIM1,pay_1,payment,0,USD,12,SUCCESS",
        "SIM1,pay_1,payment,1_001,USD,12,SUCCESS",
        "SIM1,pay_1,payment,1001,USD,-1,SUCCESS",
        ",pay_1,payment,1001,USD,12,SUCCESS",
        "SIM1,pay_1,payment",
    ):
        with pytest.raises(StatementError, match="line 2"):
            parse_statement(header + bad + "\n")
    with pytest.raises(StatementError, match="no column 'fee_minor'"):
        parse_statement("order_no,merchant_ref,type,amount_minor,currency,status\n")


TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\r\n\x00"), min_size=1)


@given(
    st.lists(
        st.builds(
            Line,
            type=st.sampled_from(["payment", "refund"]),
            reference=TEXT,
            juhe_id=TEXT,
            amount=st.integers(min_value=1, max_value=10**30),
            currency=st.sampled_from(["USD", "JPY", "ETH"]),
            status=st.sampled_from(["succeeded", "failed"]),
            fee=st.integers(min_value=0, max_value=10**6),
        ),
        max_size=10,
    )
)
def test_a_written_statement_reads_back_as_its_lines(lines: list[Line]) -> None:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["order_no", "merchant_ref", "type", "amount_minor", "currency", "fee_minor", "status"]
    )
    for x in lines:
        status = "SUCCESS" if x.status == "succeeded" else "FAILED"
        writer.writerow([x.reference, x.juhe_id, x.type, x.amount, x.currency, x.fee, status])
    assert parse_statement(out.getvalue()) == tuple(lines)


def test_a_days_statement_is_due_its_delay_after_the_day_ends() -> None:
    at = datetime(2026, 12, 1, 0, 59, 59, tzinfo=UTC)
    assert due_days(at, 3600, 3) == [date(2026, 11, 29), date(2026, 11, 28)]
    assert due_days(at.replace(minute=59, second=59, hour=1), 3600, 3) == [
        date(2026, 11, 30),
        date(2026, 11, 29),
        date(2026, 11, 28),
    ]
    exactly = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
    assert due_days(exactly, 3600, 1) == [date(2026, 11, 30)], "due at the very second"
    assert due_days(datetime(2026, 12, 1, tzinfo=UTC), 0, 2) == [
        date(2026, 11, 30),
        date(2026, 11, 29),
    ]
    assert due_days(datetime(2026, 12, 1, 23, tzinfo=UTC), 86_400, 1) == []


@pytest.mark.parametrize(
    ("action", "type_", "juhe", "channel", "refused"),
    [
        (Action.REFUND, "payment", "canceled", "paid", None),
        (Action.REFUND, "payment", "expired", "paid", None),
        (Action.REFUND, "payment", "failed", "paid", None),
        (Action.REFUND, "payment", "rejected", "paid", None),
        (Action.REFUND, "payment", "expired", "refunded", "not_paid_at_channel"),
        (Action.REFUND, "payment", "expired", None, "not_paid_at_channel"),
        (Action.REFUND, "payment", "succeeded", "paid", "refund_through_api"),
        (Action.REFUND, "payment", "partially_refunded", "paid", "refund_through_api"),
        (Action.REFUND, "payment", "awaiting_payment", "paid", "payment_not_ended"),
        (Action.REFUND, "refund", "expired", "paid", "not_a_payment"),
        (Action.REFUND, "payment", None, "paid", "not_a_payment"),
        (Action.ACCEPT_CHANNEL, "payment", "expired", "paid", None),
        (Action.ACCEPT_CHANNEL, "payment", "awaiting_payment", "paid", None),
        (Action.ACCEPT_CHANNEL, "payment", "pending", "failed", None),
        (Action.ACCEPT_CHANNEL, "payment", "expired", "failed", "nothing_to_accept"),
        (Action.ACCEPT_CHANNEL, "payment", "succeeded", "paid", "nothing_to_accept"),
        (Action.ACCEPT_CHANNEL, "payment", "succeeded", "failed", "cannot_reverse"),
        (Action.ACCEPT_CHANNEL, "payment", "rejected", "paid", "payment_rejected"),
        (Action.ACCEPT_CHANNEL, "payment", "expired", "pending", "channel_undecided"),
        (Action.ACCEPT_CHANNEL, "payment", "expired", None, "channel_undecided"),
        (Action.ACCEPT_CHANNEL, "refund", "expired", "paid", "not_a_payment"),
    ],
)
def test_refund_and_accept_fit_only_their_discrepancies(
    action: Action, type_: str, juhe: str | None, channel: str | None, refused: str | None
) -> None:
    assert refused_action(action, type_, juhe, channel) == refused
