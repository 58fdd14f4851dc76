-- Crypto deposits paid short or over (issue 15, domain.chain): what a deposit was credited
-- (the amount due, give or take the tolerance), how much of what arrived beyond that was left
-- to operations, whether it was left short when its payment ended, and whether transfers came
-- to it after it was credited; and the discrepancies operations resolve for them.
ALTER TABLE deposit_addresses ADD COLUMN credited numeric(78, 0) CHECK (credited > 0);
ALTER TABLE deposit_addresses ADD COLUMN surplus numeric(78, 0) NOT NULL DEFAULT 0
    CHECK (surplus >= 0);
ALTER TABLE deposit_addresses ADD COLUMN short_at_end boolean NOT NULL DEFAULT false;
ALTER TABLE deposit_addresses ADD COLUMN recheck boolean NOT NULL DEFAULT false;
-- the watcher looks only at credited deposits that received something since
CREATE INDEX deposit_addresses_recheck ON deposit_addresses (channel) WHERE recheck;

ALTER TABLE recon_discrepancies DROP CONSTRAINT recon_discrepancies_found;
ALTER TABLE recon_discrepancies ADD CONSTRAINT recon_discrepancies_found
    CHECK ((run_id IS NULL) = (kind IN ('paid_after_end', 'crypto_surplus', 'crypto_underpaid')));
-- one per payment: a deposit is left short at its payment's end once
CREATE UNIQUE INDEX recon_discrepancies_crypto_underpaid
    ON recon_discrepancies (juhe_id) WHERE kind = 'crypto_underpaid';
