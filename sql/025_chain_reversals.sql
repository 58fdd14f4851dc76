-- A crypto payment credited and then taken off the chain by a reorg is reversed (issue 15):
-- its reversal entry's agent lines are kept as commission rows like a refund's.
ALTER TABLE commissions DROP CONSTRAINT commissions_kind_check;
ALTER TABLE commissions ADD CONSTRAINT commissions_kind_check
    CHECK (kind IN ('payment', 'refund', 'reversal'));
