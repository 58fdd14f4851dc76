-- Shadow mode (issue 14): a version judged beside the live one on live traffic, its decisions
-- kept on each payment (payments.risk -> 'shadow') and never applied.
ALTER TABLE risk_state ADD COLUMN shadow_version integer REFERENCES risk_rule_versions (version);
