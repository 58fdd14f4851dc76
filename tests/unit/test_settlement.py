"""Settlement's functional core (domain/settlement.py): availability, releases, reserves,
statements, and a property test of the whole over random histories."""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import withdrawals
from domain.fees import rate_fee
from domain.ledger import Posting, ensure_balanced, payment_succeeded, proportional_reversal
from domain.settlement import (
    CYCLES,
    INTERNAL,
    RELEASE,
    Balance,
    CycleError,
    Draft,
    Entity,
    Movement,
    Previous,
    Source,
    StatementStatus,
    Terms,
    account_of,
    available_on,
    balances,
    check_cycle,
    close,
    due,
    line_of,
    period,
    redirect_released,
    release,
    reserve_release,
    statement_sources,
)

WITHDRAWN = (withdrawals.HOLD, withdrawals.PAID, withdrawals.RELEASE, withdrawals.RETURN)
FRI = datetime(2026, 5, 8, 15, 30, tzinfo=UTC)  # a Friday afternoon
SAT = FRI + timedelta(days=1)
SHOP, AGENT = Entity("merchant", "mch_1"), Entity("agent", "agt_1")


def test_business_day_cycles_skip_weekends() -> None:
    assert available_on("T+0", FRI) == FRI  # on a business day, at once
    assert available_on("T+0", SAT) == datetime(2026, 5, 11, tzinfo=UTC)
    assert available_on("T+1", FRI) == datetime(2026, 5, 11, tzinfo=UTC)
    assert available_on("T+2", SAT) == datetime(2026, 5, 13, tzinfo=UTC)
    assert available_on("T+7", FRI) == datetime(2026, 5, 19, tzinfo=UTC)


def test_calendar_cycles_and_manual() -> None:
    assert available_on("daily", FRI) == datetime(2026, 5, 9, tzinfo=UTC)
    assert available_on("weekly", FRI) == datetime(2026, 5, 11, tzinfo=UTC)
    assert available_on("monthly", FRI) == datetime(2026, 6, 1, tzinfo=UTC)
    assert available_on("manual", FRI) is None
    assert period("monthly", datetime(2026, 12, 31, 23, tzinfo=UTC))[1] == datetime(
        2027, 1, 1, tzinfo=UTC
    )
    assert period("weekly", FRI) == (
        datetime(2026, 5, 4, tzinfo=UTC),
        datetime(2026, 5, 11, tzinfo=UTC),
    )


@pytest.mark.parametrize("bad", ["T+8", "T-1", "yearly", "", "t+1"])
def test_unknown_cycles_are_refused(bad: str) -> None:
    with pytest.raises(CycleError):
        check_cycle(bad)


def test_account_names() -> None:
    assert SHOP.account("pending") == "merchant:mch_1:pending"
    assert AGENT.account("pending") == "agent:agt_1:commission"
    assert account_of("agent:agt_1:commission") == (AGENT, "pending")
    assert account_of("merchant:mch_1:reserve") == (SHOP, "reserve")
    assert account_of("merchant:mch_1:commission") is None
    assert account_of("platform:fee_revenue") is None
    rows = [("merchant:mch_1:pending", "USD", -500), ("merchant:mch_1:available", "USD", 20)]
    assert balances(SHOP, rows) == {"USD": Balance(pending=500, available=-20)}


def test_release_holds_the_reserve_and_gives_it_back() -> None:
    src = Source(7, SHOP, "USD", -10_000, FRI)
    r = release(src, Terms("T+0", reserve_bps=1000, reserve_days=30), FRI)
    assert r.ref == "mch_1:7" and r.held == 1_000 and r.hold_until == FRI + timedelta(days=30)
    assert set(r.postings) == {
        Posting("merchant:mch_1:available", "USD", -9_000),
        Posting("merchant:mch_1:pending", "USD", 10_000),
        Posting("merchant:mch_1:reserve", "USD", -1_000),
    }
    back = reserve_release(SHOP, "USD", 99, r.held)
    assert back.ref == "mch_1:99"
    assert {p.account: p.amount for p in back.postings}["merchant:mch_1:available"] == -1_000
    refund = release(Source(8, SHOP, "USD", 3_000, FRI), Terms("T+0", 1000, 30), FRI)
    assert refund.held == 0  # nothing is held back from a debit


def test_a_refund_after_release_draws_on_available() -> None:
    reversal = [
        Posting("merchant:mch_1:pending", "USD", 300),
        Posting("agent:agt_1:commission", "USD", 10),
        Posting("channel:sim:clearing", "USD", -310),
    ]
    moved = redirect_released(reversal, [SHOP])
    assert Posting("merchant:mch_1:available", "USD", 300) in moved
    assert Posting("agent:agt_1:commission", "USD", 10) in moved  # the agent's is not released


def test_a_manual_entity_settles_only_when_an_operators_run_names_it() -> None:
    terms = {SHOP: Terms("manual"), AGENT: Terms("daily")}
    early = Source(1, SHOP, "USD", -975, FRI)
    late = Source(2, SHOP, "USD", -100, SAT)
    later = SAT + timedelta(days=40)
    assert due([early, late], terms, later) == [], "never by the clock alone"
    assert due([early, late], terms, later, "agt_1") == [], "nor by a run for someone else"
    assert due([early, late], terms, FRI, "mch_1") == [early], "what was captured by then"
    assert due([early, late], terms, later, "mch_1") == [early, late]

    one = Movement(7, RELEASE, "mch_1:1", later, 975, 0, "payment", "pay_1", 1000)
    lines = [line_of(SHOP, one)]
    assert close(SHOP, "USD", "manual", lines, None, later + timedelta(days=90), str) == []
    (stmt,) = close(SHOP, "USD", "manual", lines, None, later, lambda: "s1", settling=True)
    assert (stmt.start, stmt.end, stmt.net) == (datetime(2026, 6, 18, tzinfo=UTC), later, 975)
    before = Previous("s1", later, 975, StatementStatus.CLOSED)
    again = close(SHOP, "USD", "manual", [], before, later, str, settling=True)
    assert again == [], "a repeat finds nothing new to close"
    two = Movement(8, "adjustment", "adj_1", later + timedelta(hours=1), 5, 0)
    (nxt,) = close(
        SHOP, "USD", "manual", [line_of(SHOP, two)], before, later + timedelta(hours=2), str, True
    )
    assert (nxt.start, nxt.net) == (later, 5), "the next starts where the last one ended"


def test_a_withdrawal_shows_what_it_paid_out_beside_net_and_its_fee_in_it() -> None:
    """Available moves by net + paid_out on each line; a payout never makes a statement
    negative, its fee does."""
    at = datetime(2026, 5, 4, 10, tzinfo=UTC)
    moves = {  # kind: (available, reserve) as the entry moves them, for 150.00 + 1.00 fee
        "withdrawal_hold": (-15_100, 15_100),
        "withdrawal_paid": (0, -15_100),
        "withdrawal_release": (15_100, -15_100),
        "withdrawal_return": (15_000, 0),
    }
    want = {  # (paid_out, fees, net)
        "withdrawal_hold": (-15_000, 100, -100),
        "withdrawal_paid": (0, 0, 0),
        "withdrawal_release": (15_000, -100, 100),
        "withdrawal_return": (15_000, 0, 0),
    }
    for n, (kind, (available, reserve)) in enumerate(moves.items()):
        m = Movement(n, kind, "wd_1", at, available, reserve, amount=15_000, fee=100)
        line = line_of(SHOP, m)
        assert (line.kind, line.paid_out, line.fees, line.net) == (kind, *want[kind])
        assert line.net + line.paid_out == available
    hold = Movement(1, "withdrawal_hold", "wd_1", at, -15_100, 15_100, amount=15_000, fee=100)
    paid = Movement(2, "withdrawal_paid", "wd_1", at, 0, -15_100, amount=15_000, fee=100)
    lines = [line_of(SHOP, hold), line_of(SHOP, paid)]
    (stmt,) = close(SHOP, "USD", "daily", lines, None, at + timedelta(days=1), str)
    assert (stmt.net, stmt.totals["paid_out"]) == (-100, -15_000)
    assert stmt.status is StatementStatus.CARRIED, "the fee is carried, never lost"


def test_statement_status_machine() -> None:
    assert statement_sources(StatementStatus.PAID) == ["closed"]
    assert statement_sources(StatementStatus.CARRIED) == ["open"]
    assert statement_sources(StatementStatus.CLOSED) == ["open"]


def test_a_negative_statement_is_carried_into_the_next() -> None:
    day = datetime(2026, 5, 4, 10, tzinfo=UTC)  # a Monday
    refund = Movement(1, "refund", "re_1", day, available=-500, reserve=0, amount=520)
    drafts = close(SHOP, "USD", "daily", [line_of(SHOP, refund)], None, day, lambda: "s0")
    assert drafts == []  # the day has not ended
    ids = iter(["s1", "s2"])
    paid = Movement(2, RELEASE, "mch_1:9", day + timedelta(days=1), 900, 100, "payment", "p", 1000)
    lines = [line_of(SHOP, refund), line_of(SHOP, paid)]
    first, second = close(SHOP, "USD", "daily", lines, None, day + timedelta(days=3), ids.__next__)
    assert first.status is StatementStatus.CARRIED and first.net == -500
    assert first.totals["refunds"] == -520 and first.totals["fees"] == -20
    assert second.lines[0].kind == "carried" and second.lines[0].ref == "s1"
    assert second.totals == {
        "gross": 1000,
        "refunds": 0,
        "fees": 0,
        "commission": 0,
        "reserve": 100,
        "adjustments": 0,
        "carried": -500,
        "paid_out": 0,
    }
    assert second.net == 400 and second.status is StatementStatus.CLOSED


# --- the whole, over random histories ---------------------------------------------------------


@dataclass
class Book:
    """An in-memory ledger run the way infra/settlement.py runs the database."""

    terms: dict[Entity, Terms]
    entries: list[tuple[int, str, str, datetime, list[Posting]]] = field(default_factory=list)
    anchors: dict[int, datetime] = field(default_factory=dict)
    released: dict[tuple[str, int], int] = field(default_factory=dict)  # → release entry
    holds: dict[int, tuple[Entity, str, int, datetime]] = field(default_factory=dict)
    stated: dict[tuple[str, str, int], str] = field(default_factory=dict)
    statements: list[Draft] = field(default_factory=list)
    facts: dict[tuple[str, str], int] = field(default_factory=dict)
    fees: dict[str, int] = field(default_factory=dict)  # by withdrawal
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def post(self, kind: str, ref: str, at: datetime, postings: list[Posting]) -> int:
        ensure_balanced(postings)
        entry_id = next(self.ids)
        self.entries.append((entry_id, kind, ref, at, postings))
        return entry_id

    def run(self, now: datetime) -> None:
        sources = [
            Source(eid, owner[0], p.currency, p.amount, self.anchors[eid])
            for eid, kind, _, _, postings in self.entries
            if kind not in INTERNAL
            for p in postings
            if (owner := account_of(p.account)) and owner[1] == "pending"
            if (owner[0].id, eid) not in self.released
        ]
        for s in due(sources, self.terms, now):
            r = release(s, self.terms[s.entity], now)
            entry_id = self.post(r.kind, r.ref, now, list(r.postings))
            self.released[(s.entity.id, s.entry_id)] = entry_id
            if r.held:
                assert r.hold_until is not None
                self.holds[entry_id] = (s.entity, s.currency, r.held, r.hold_until)
        for held_by, (who, currency, held, until) in list(self.holds.items()):
            if until <= now:
                back = reserve_release(who, currency, held_by, held)
                self.post(back.kind, back.ref, now, list(back.postings))
                del self.holds[held_by]
        moved: dict[tuple[Entity, str], list[Movement]] = defaultdict(list)
        sources_of = {v: k for k, v in self.released.items()}
        kinds = {eid: (kind, ref) for eid, kind, ref, _, _ in self.entries}
        for eid, kind, ref, at, postings in self.entries:
            per: dict[tuple[Entity, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
            for p in postings:
                owner = account_of(p.account)
                if owner and owner[1] in ("available", "reserve"):
                    per[(owner[0], p.currency)][owner[1]] -= p.amount
            for (who, currency), m in per.items():
                if (who.id, currency, eid) in self.stated:
                    continue
                src = sources_of.get(eid)
                skind, sref = kinds[src[1]] if src and kind == RELEASE else (None, None)
                amount = self.facts.get((skind or kind, sref or ref), 0)
                moved[(who, currency)].append(
                    Movement(
                        eid,
                        kind,
                        ref,
                        at,
                        m["available"],
                        m["reserve"],
                        skind,
                        sref,
                        amount,
                        fee=self.fees.get(ref, 0),
                    )
                )
        for (who, currency), movements in sorted(moved.items()):
            mine = [d for d in self.statements if d.entity == who and d.currency == currency]
            last = mine[-1] if mine else None
            prev = Previous(last.id, last.end, last.net, last.status) if last else None
            lines = [line_of(who, m) for m in movements]
            cycle = self.terms[who].cycle
            for d in close(who, currency, cycle, lines, prev, now, lambda: f"stl{next(self.ids)}"):
                self.statements.append(d)
                for line in d.lines:
                    if line.kind != "carried":
                        key = (who.id, currency, line.entry_id)
                        assert key not in self.stated, "a line in two statements"
                        self.stated[key] = d.id

    def balance(self, who: Entity) -> dict[str, Balance]:
        totals: dict[tuple[str, str], int] = defaultdict(int)
        for *_, postings in self.entries:
            for p in postings:
                totals[(p.account, p.currency)] += p.amount
        return balances(who, [(a, c, v) for (a, c), v in totals.items()])


MERCHANTS = [Entity("merchant", f"mch_{i}") for i in range(3)]
AGENTS = [Entity("agent", f"agt_{i}") for i in range(2)]
step = st.one_of(
    st.tuples(
        st.just("pay"),
        st.integers(0, 2),  # merchant
        st.sampled_from(["USD", "JPY", "BTC"]),
        st.integers(1, 10**7),
        st.integers(0, 1000),  # fee bps
        st.integers(0, 2),  # agents in the chain
    ),
    st.tuples(st.just("refund"), st.integers(0, 50), st.integers(1, 100)),  # payment, % of rest
    st.tuples(st.just("wait"), st.integers(1, 24 * 9)),  # hours
    st.tuples(st.just("settle")),
    # days later, after a settlement run: entity, % of its available, fee, outcome (paid,
    # failed and released, paid then returned)
    st.tuples(
        st.just("withdraw"),
        st.integers(0, 9),
        st.integers(0, 4),
        st.integers(1, 100),
        st.integers(0, 500),
        st.integers(0, 2),
    ),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(CYCLES), min_size=5, max_size=5),
    st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 40)), min_size=3, max_size=3),
    st.lists(step, min_size=10, max_size=40),
)
def test_statements_and_balances_account_for_every_minor_unit(
    cycles: list[str], reserves: list[tuple[int, int]], steps: list[tuple]
) -> None:
    entities = [*MERCHANTS, *AGENTS]
    terms = {e: Terms(c) for e, c in zip(entities, cycles, strict=True)}
    for m, (bps, days) in zip(MERCHANTS, reserves, strict=True):
        terms[m] = Terms(terms[m].cycle, bps, days)
    book = Book(terms)
    now = datetime(2026, 5, 7, 9, tzinfo=UTC)
    payments: list[tuple[str, int, str, int, list[Posting]]] = []  # id, entry, cur, amount
    refunded: dict[str, int] = defaultdict(int)
    fees_charged: dict[tuple[Entity, str], int] = defaultdict(int)
    for s in steps:
        if s[0] == "pay":
            _, m, currency, amount, bps, depth = s
            fee = rate_fee(amount, bps, 0)
            chain = [(a.id, fee // (2 + i)) for i, a in enumerate(AGENTS[:depth])]
            pid = f"pay_{len(payments)}"
            postings = payment_succeeded(
                merchant_id=MERCHANTS[m].id,
                channel="sim",
                currency=currency,
                amount=amount,
                fee=fee,
                channel_cost_amount=fee // 3,
                commissions=[(a, c) for a, c in chain if c],
            )
            eid = book.post("payment", pid, now, postings)
            book.anchors[eid] = now
            book.facts[("payment", pid)] = amount
            payments.append((pid, eid, currency, amount, postings))
        elif s[0] == "refund" and payments:
            pid, eid, currency, amount, postings = payments[s[1] % len(payments)]
            rest = amount - refunded[pid]
            part = max(1, rest * s[2] // 100) if rest else 0
            if not part:
                continue
            reversal = proportional_reversal(postings, part, amount, refunded[pid])
            released = [who for who in entities if (who.id, eid) in book.released]
            rid = f"re_{pid}_{refunded[pid]}"
            refunded[pid] += part
            ref_eid = book.post("refund", rid, now, redirect_released(reversal, released))
            book.anchors[ref_eid] = book.anchors[eid]
            book.facts[("refund", rid)] = part
            # A refund draws on whatever holds its payment's money: pending never goes below 0.
            assert all(b.pending >= 0 for e in entities for b in book.balance(e).values())
        elif s[0] == "withdraw":
            _, days, n, pct, fee, outcome = s
            now += timedelta(days=days)
            book.run(now)
            who = entities[n]
            funded = [(c, b.available) for c, b in sorted(book.balance(who).items())]
            funded = [(c, a) for c, a in funded if a * pct // 100 > fee]
            if not funded:
                continue
            currency, available = funded[0]
            amount = available * pct // 100 - fee
            wid = f"wd_{len(book.fees)}"
            book.fees[wid] = fee
            steps = [(withdrawals.HOLD, withdrawals.hold(who, currency, amount, fee))]
            if outcome == 1:
                steps.append((withdrawals.RELEASE, withdrawals.release(who, currency, amount, fee)))
            else:
                steps.append((withdrawals.PAID, withdrawals.paid(who, currency, amount, fee)))
                fees_charged[(who, currency)] += fee
            if outcome == 2:
                steps.append((withdrawals.RETURN, withdrawals.returned(who, currency, amount)))
            for kind, entry in steps:
                book.facts[(kind, wid)] = amount
                book.post(kind, wid, now, list(entry))
        elif s[0] == "wait":
            now += timedelta(hours=s[1])
        elif s[0] == "settle":
            book.run(now)
            entries = len(book.entries), len(book.statements)
            book.run(now)  # a re-run at the same clock changes nothing
            assert (len(book.entries), len(book.statements)) == entries
    # Far enough ahead that every cycle but manual has released, then that every reserve is
    # back, then past the month those last entries fall in, so every line is in a statement.
    for days in (60, 100, 140):
        book.run(now + timedelta(days=days))
    for who in entities:
        earned: dict[str, int] = defaultdict(int)
        for _, kind, _, _, postings in book.entries:
            for p in postings:
                owner = account_of(p.account)
                if owner and owner[0] == who:
                    assert kind in ("payment", "refund", RELEASE, "reserve_release", *WITHDRAWN)
                    if kind in ("payment", "refund"):
                        earned[p.currency] -= p.amount
        mine = [d for d in book.statements if d.entity == who]
        for currency, b in book.balance(who).items():
            ours = [d for d in mine if d.currency == currency]
            stated = sum(d.net - d.totals["carried"] for d in ours)
            paid_out = sum(d.totals["paid_out"] for d in ours)
            assert b.total == earned[currency] - fees_charged[(who, currency)]
            assert stated + b.pending + b.reserved == b.total, "statements miss nothing owed"
            assert b.available == stated + paid_out
            assert paid_out == -b.paid_out, "statements show every payout and return"
            assert b.reserved == 0
            if terms[who].cycle != "manual":
                assert b.pending == 0
        for d in mine:
            assert d.net == sum(line.net for line in d.lines)
            assert d.status is (StatementStatus.CARRIED if d.net < 0 else StatementStatus.CLOSED)
