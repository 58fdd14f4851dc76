"""The ledger invariants of DESIGN.md, checked against the database."""

from __future__ import annotations

import asyncpg


async def assert_ledger_invariants(pg: asyncpg.Pool) -> None:
    unbalanced = await pg.fetch(
        """SELECT e.id, a.currency, sum(p.amount) AS total FROM journal_entries e
           JOIN postings p ON p.entry_id = e.id JOIN ledger_accounts a ON a.id = p.account_id
           GROUP BY e.id, a.currency HAVING sum(p.amount) <> 0"""
    )
    assert unbalanced == [], f"entries that do not balance: {unbalanced}"
    drift = await pg.fetch(
        """SELECT a.name, a.currency, a.balance, COALESCE(sum(p.amount), 0) AS posted
           FROM ledger_accounts a LEFT JOIN postings p ON p.account_id = a.id
           GROUP BY a.id HAVING a.balance <> COALESCE(sum(p.amount), 0)"""
    )
    assert drift == [], f"balances that differ from their postings: {drift}"
    twice = await pg.fetch(
        "SELECT kind, ref, count(*) FROM journal_entries GROUP BY kind, ref HAVING count(*) > 1"
    )
    assert twice == [], f"posted more than once: {twice}"
    succeeded_unposted = await pg.fetch(
        """SELECT p.id FROM payments p
           LEFT JOIN journal_entries e ON e.kind = 'payment' AND e.ref = p.id
           WHERE p.status IN ('succeeded', 'partially_refunded', 'refunded') AND e.id IS NULL"""
    )
    assert succeeded_unposted == [], f"paid but never posted: {succeeded_unposted}"
    posted_unpaid = await pg.fetch(
        """SELECT e.ref FROM journal_entries e JOIN payments p ON p.id = e.ref
           WHERE e.kind = 'payment'
             AND p.status NOT IN ('succeeded', 'partially_refunded', 'refunded')
             AND NOT (p.status = 'reversed' AND EXISTS (SELECT 1 FROM journal_entries r
                                                        WHERE r.kind = 'reversal'
                                                          AND r.ref = p.id))"""
    )
    assert posted_unpaid == [], f"posted but not paid: {posted_unpaid}"
    refunds = await pg.fetch(
        """SELECT p.id FROM payments p
           WHERE p.refunded_amount <> COALESCE((SELECT sum(amount) FROM refunds r
                                               WHERE r.payment_id = p.id
                                                 AND r.status = 'succeeded'), 0)"""
    )
    assert refunds == [], f"refunded totals that differ from succeeded refunds: {refunds}"
