"""Issue 13: reconciliation finds exactly the discrepancies injected into a 10,000-line
simulator statement, none missed and none invented, and the same file again changes nothing.

The run is the benchmark's (`benchmarks.settlement.reconcile`): a throwaway database seeded
with a day of payments and refunds, the simulator's own statement writer with one fault of each
kind, the adapter's parser and `infra.reconciliation.run`; its checks are the assertions."""

from __future__ import annotations

import pytest

from benchmarks.settlement import reconcile

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_ten_thousand_line_statement_yields_exactly_its_injected_discrepancies() -> None:
    figures = await reconcile(10_000)
    assert figures["lines"] >= 10_000
    assert figures["discrepancies"] == 7
    # the file has every record but the two omitted, plus the extra line and the duplicate;
    # the omitted two and the three changed ones do not match
    assert figures["matched"] == figures["lines"] - 5
