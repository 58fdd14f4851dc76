-- Merchant onboarding (KYC/AML review), payment configuration, and API key lifecycle.

ALTER TABLE merchants
    ADD COLUMN email text,
    ADD COLUMN return_url text,
    ADD COLUMN config jsonb NOT NULL DEFAULT '{}';

-- Merchants opened before onboarding existed, by the CLI or an agent, are `active`.
ALTER TABLE merchants ADD CONSTRAINT merchants_status CHECK (
    status IN ('submitted', 'under_review', 'approved', 'rejected', 'active', 'suspended'));

-- KYC as submitted: the bank account is stored encrypted (AES-GCM, infra.secretbox) and shown
-- only by its last four digits.
CREATE TABLE merchant_kyc (
    merchant_id        text PRIMARY KEY REFERENCES merchants (id),
    legal              jsonb NOT NULL,
    owners             jsonb NOT NULL,
    documents          jsonb NOT NULL,
    bank_account       text NOT NULL,
    bank_account_last4 text NOT NULL,
    submitted_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE merchant_reviews (
    merchant_id  text NOT NULL REFERENCES merchants (id),
    at           timestamptz NOT NULL DEFAULT now(),
    reviewer     text NOT NULL,
    from_status  text NOT NULL,
    to_status    text NOT NULL,
    reason       text
);
CREATE INDEX merchant_reviews_merchant ON merchant_reviews (merchant_id, at);

-- The payment method a merchant asked for (card, ewallet, bank_transfer, crypto), if any:
-- commission policies may differ by method.
ALTER TABLE payments ADD COLUMN method text;

ALTER TABLE api_keys
    ADD COLUMN expires_at timestamptz,  -- set when a rotation gives the old key an overlap
    ADD COLUMN last_used_at timestamptz;
