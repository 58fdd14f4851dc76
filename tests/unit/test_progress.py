"""The horizon re-drive uses (infra.progress): before it, a message can no longer be waiting in
its queue or in a consumer's hands, so work not done by then was lost."""

from __future__ import annotations

from infra.progress import STALE_S, Report, horizon

NOW = 1_000_000.0


def test_an_idle_queue_holds_nothing() -> None:
    assert horizon([], waiting=0, now=NOW) == NOW
    assert horizon([Report(NOW - 50, None, NOW)], waiting=0, now=NOW) == NOW


def test_a_backlog_waits_behind_the_newest_delivery() -> None:
    reports = [Report(NOW - 300, None, NOW), Report(NOW - 280, None, NOW - 1)]
    assert horizon(reports, waiting=5_000, now=NOW) == NOW - 280


def test_what_a_consumer_holds_unfinished_is_not_lost() -> None:
    reports = [Report(NOW - 10, NOW - 400, NOW), Report(NOW - 5, None, NOW)]
    assert horizon(reports, waiting=0, now=NOW) == NOW - 400
    assert horizon(reports, waiting=10, now=NOW) == NOW - 400


def test_a_queue_with_messages_and_no_consumer_may_hold_anything() -> None:
    assert horizon([], waiting=1, now=NOW) == 0.0


def test_a_consumer_gone_quiet_no_longer_counts() -> None:
    gone = Report(NOW - 900, NOW - 900, NOW - STALE_S - 1)
    assert horizon([gone], waiting=0, now=NOW) == NOW


def test_reports_round_trip() -> None:
    for report in (Report(1.5, None, 2.5), Report(1.5, 0.25, 3.0)):
        assert Report.decode(report.encode().encode()) == report
