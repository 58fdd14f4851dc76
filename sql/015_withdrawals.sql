-- Withdrawals and payouts (issue 13, part B). The money is in ledger accounts: a withdrawal
-- holds amount + fee in the entity's reserve (`withdrawal_hold`), then pays it out
-- (`withdrawal_paid`), gives it back (`withdrawal_release`) or takes a returned payout back
-- (`withdrawal_return`); each entry is unique per (kind, withdrawal id).

-- Where an entity's withdrawals go: a bank account or a crypto wallet, its details sealed
-- (context `payout_account:<id>`), the last four characters shown.
CREATE TABLE payout_accounts (
    id           text PRIMARY KEY,
    entity_kind  text NOT NULL CHECK (entity_kind IN ('merchant', 'agent')),
    entity_id    text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('bank_account', 'crypto_wallet')),
    details      text NOT NULL,
    last4        text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payout_accounts_entity ON payout_accounts (entity_id, id DESC);

-- An entity's own rules in a currency, over the configured defaults (withdrawals.*).
CREATE TABLE withdrawal_rules (
    entity_id       text NOT NULL,
    currency        text NOT NULL,
    min_amount      minor_units NOT NULL CHECK (min_amount >= 1),
    fee_fixed       minor_units NOT NULL CHECK (fee_fixed >= 0),
    fee_bps         integer NOT NULL CHECK (fee_bps BETWEEN 0 AND 10000),
    daily_limit     minor_units CHECK (daily_limit >= 0),
    approval_above  minor_units CHECK (approval_above >= 0),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entity_id, currency)
);

CREATE TABLE withdrawals (
    id                 text PRIMARY KEY,
    entity_kind        text NOT NULL CHECK (entity_kind IN ('merchant', 'agent')),
    entity_id          text NOT NULL,
    payout_account_id  text NOT NULL REFERENCES payout_accounts (id),
    currency           text NOT NULL,
    amount             minor_units NOT NULL CHECK (amount > 0),
    fee                minor_units NOT NULL CHECK (fee >= 0),
    status             text NOT NULL CHECK (status IN ('pending_approval', 'requested', 'sending',
                           'sent', 'succeeded', 'failed', 'rejected', 'returned')),
    idempotency_key    text NOT NULL,
    fingerprint        text NOT NULL,
    requested_by       text NOT NULL,
    decided_by         text,
    decision_reason    text,
    channel            text,
    channel_payout_id  text,
    failure_code       text,
    failure_message    text,
    request_id         text,
    version            integer NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (entity_id, idempotency_key)
);
CREATE INDEX withdrawals_entity ON withdrawals (entity_id, id DESC);
-- What the scheduler hands back to the payout pool when a message or callback was lost.
CREATE INDEX withdrawals_open ON withdrawals (updated_at)
    WHERE status IN ('requested', 'sending', 'sent');
