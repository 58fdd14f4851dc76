-- A withdrawal may pay a closed settlement statement (its net, in its currency): the statement
-- becomes `paid` when the payout succeeds. One live withdrawal per statement; a failed, rejected
-- or returned one frees it.
ALTER TABLE withdrawals ADD COLUMN settlement_id text REFERENCES settlement_statements (id);
CREATE UNIQUE INDEX withdrawals_settlement_once ON withdrawals (settlement_id)
    WHERE settlement_id IS NOT NULL AND status NOT IN ('failed', 'rejected', 'returned');
