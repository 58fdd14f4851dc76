-- Reconciliation, second part (issue 13): payments paid at the channel after Juhe ended them
-- are discrepancies too (no run found them: the channel said so when asked); a discrepancy can
-- be resolved by returning the money at the channel (`refund`) or by taking the channel's word
-- (`accept_channel`); and agents' commission records keep the terms they were earned under.

ALTER TABLE recon_discrepancies ALTER COLUMN run_id DROP NOT NULL;
ALTER TABLE recon_discrepancies ADD COLUMN channel text;
UPDATE recon_discrepancies d SET channel = r.channel FROM recon_runs r WHERE r.id = d.run_id;
ALTER TABLE recon_discrepancies ALTER COLUMN channel SET NOT NULL;
-- what a resolution did at the channel: the refund's id there, or the event that took its word
ALTER TABLE recon_discrepancies ADD COLUMN channel_ref text;
ALTER TABLE recon_discrepancies ADD COLUMN returned_amount minor_units;
ALTER TABLE recon_discrepancies ADD COLUMN returned_currency text;
ALTER TABLE recon_discrepancies DROP CONSTRAINT recon_discrepancies_action_check;
ALTER TABLE recon_discrepancies ADD CONSTRAINT recon_discrepancies_action_check
    CHECK (action IN ('ignore', 'adjust', 'refund', 'accept_channel'));
ALTER TABLE recon_discrepancies ADD CONSTRAINT recon_discrepancies_found
    CHECK ((run_id IS NULL) = (kind = 'paid_after_end'));
-- one per payment, however often the channel's word is redelivered
CREATE UNIQUE INDEX recon_discrepancies_paid_after_end
    ON recon_discrepancies (juhe_id) WHERE kind = 'paid_after_end';
-- returns made at the channel are Juhe's records in later statements
CREATE INDEX recon_discrepancies_returned
    ON recon_discrepancies (channel, channel_ref) WHERE action = 'refund';

-- Level 1 is the agent at the top of the merchant's chain. `rate_bps` / `fixed_minor` are the
-- agent's rate in mark-up mode and its share in percentage or fixed mode. NULL on records made
-- before this migration.
ALTER TABLE commissions ADD COLUMN level smallint;
ALTER TABLE commissions ADD COLUMN mode text;
ALTER TABLE commissions ADD COLUMN rate_bps integer;
ALTER TABLE commissions ADD COLUMN fixed_minor minor_units;
