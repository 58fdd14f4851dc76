"""PDF statements and reports (gateway/pdf.py): the document parses, embeds the configured
font and its text holds the Traditional Chinese labels and the amounts."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settlement
from domain.reports import AccountBalance, VolumeRow, daily_report
from gateway.errors import ApiError
from gateway.pdf import render
from gateway.reports import daily_pdf
from gateway.settlements import statement_pdf
from tests.pdf import pdf_text

FONT = Settlement.__struct_defaults__[0]  # the configured default
needs_font = pytest.mark.skipif(
    not Path(FONT).is_file(), reason="no font there; `make test` installs fonts-arphic-bsmi00lp"
)


def _statement() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    at = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    zero = dict.fromkeys(
        ("refunds", "commission", "reserve", "adjustments", "carried", "paid_out"), 0
    )
    row = {
        "id": "stl_test",
        "entity_id": "mch_test",
        "entity_kind": "merchant",
        "currency": "TWD",
        "cycle": "T+1",
        "period_start": at,
        "period_end": at,
        "status": "closed",
        **zero,
        "gross": 1_234_500,
        "fees": 30_862,
        "net": 1_203_638,
    }
    line = {"at": at, "kind": "payment", "ref": "pay_1", **{k: row[k] for k in row if k in zero}}
    return row, [{**line, "gross": 1_234_500, "fees": 30_862, "net": 1_203_638}]


@needs_font
def test_a_statement_pdf_holds_its_chinese_labels_and_net() -> None:
    text = pdf_text(statement_pdf(FONT, *_statement()))
    assert "結算單" in text and "淨額" in text
    assert "12036.38" in text and "stl_test" in text


@needs_font
def test_a_daily_report_pdf_holds_its_lines() -> None:
    volumes = [VolumeRow("sim", "card", "USD", 2, 14_000)]
    found = daily_report([AccountBalance("platform:fee_revenue", "USD", -325)], volumes, [])
    text = pdf_text(daily_pdf(FONT, date(2026, 12, 1), found))
    assert "每日財務報表" in text and "平台淨收入" in text and "2026-12-01" in text
    assert "140.00" in text and "3.25" in text


def test_a_missing_font_is_a_clear_503() -> None:
    with pytest.raises(ApiError) as caught:
        render("/nonexistent/font.ttf", "結算單", [], [], [])
    assert (caught.value.status, caught.value.code) == (503, "pdf_unavailable")
