-- Auto-settlement (issue 13): an entity whose terms name one of its payout accounts has each
-- closed statement withdrawn to it by the settlement job, through the same request as a
-- person's (rules, hold, approval), once per statement.
ALTER TABLE settlement_terms ADD COLUMN payout_account_id text REFERENCES payout_accounts (id);

-- What withdrawals paid out (−) or gave back (+) in a statement's period: shown, not in net,
-- since a payout pays what statements owed (its fee is a fee, and is in net).
ALTER TABLE settlement_statements ADD COLUMN paid_out minor_units NOT NULL DEFAULT 0;
ALTER TABLE settlement_lines ADD COLUMN paid_out minor_units NOT NULL DEFAULT 0;
