-- The payment engine spine: merchants, payments, refunds, channel events, the double-entry
-- ledger and the webhook outbox. Amounts are exact integers in the currency's minor unit;
-- numeric(78,0) because an ETH amount in wei does not fit in bigint.

CREATE DOMAIN minor_units AS numeric(78, 0);

CREATE TABLE merchants (
    id               text PRIMARY KEY,
    name             text NOT NULL,
    notify_url       text NOT NULL,
    currencies       text[] NOT NULL,
    fee_bps          integer NOT NULL CHECK (fee_bps BETWEEN 0 AND 10000),
    fee_fixed_minor  minor_units NOT NULL DEFAULT 0 CHECK (fee_fixed_minor >= 0),
    min_amount       jsonb NOT NULL DEFAULT '{}',
    max_amount       jsonb NOT NULL DEFAULT '{}',
    webhook_secret   text NOT NULL,
    status           text NOT NULL DEFAULT 'active',
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    key_id       text PRIMARY KEY,
    merchant_id  text NOT NULL REFERENCES merchants (id),
    secret       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
CREATE INDEX api_keys_merchant ON api_keys (merchant_id);

CREATE TABLE payments (
    id                 text PRIMARY KEY,
    merchant_id        text NOT NULL REFERENCES merchants (id),
    merchant_order_id  text NOT NULL,
    amount             minor_units NOT NULL CHECK (amount > 0),
    currency           text NOT NULL,
    status             text NOT NULL,
    version            integer NOT NULL DEFAULT 1,
    channel            text,
    channel_order_id   text,
    pay_url            text,
    qr_payload         text,
    description        text,
    customer_email     text,
    customer_ip        text,
    notify_url         text,
    return_url         text,
    metadata           jsonb,
    fee                minor_units,
    refund_reserved    minor_units NOT NULL DEFAULT 0,
    refunded_amount    minor_units NOT NULL DEFAULT 0,
    failure_code       text,
    failure_message    text,
    request_id         text,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL,
    UNIQUE (merchant_id, merchant_order_id),
    CHECK (refunded_amount <= refund_reserved AND refund_reserved <= amount)
);
CREATE INDEX payments_unpaid_expiry ON payments (expires_at)
    WHERE status IN ('pending', 'processing', 'awaiting_payment');
CREATE INDEX payments_merchant_created ON payments (merchant_id, created_at DESC, id DESC);

CREATE TABLE refunds (
    id                 text PRIMARY KEY,
    payment_id         text NOT NULL REFERENCES payments (id),
    merchant_id        text NOT NULL REFERENCES merchants (id),
    amount             minor_units NOT NULL CHECK (amount > 0),
    currency           text NOT NULL,
    status             text NOT NULL,
    version            integer NOT NULL DEFAULT 1,
    reason             text,
    channel_refund_id  text,
    failure_code       text,
    failure_message    text,
    request_id         text,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refunds_payment ON refunds (payment_id);

-- Every channel notification we took, once: the guard that makes callbacks exactly-once.
CREATE TABLE channel_events (
    channel      text NOT NULL,
    event_id     text NOT NULL,
    payment_id   text NOT NULL,
    outcome      text NOT NULL,
    result       text NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, event_id)
);

CREATE TABLE ledger_accounts (
    id        bigserial PRIMARY KEY,
    name      text NOT NULL,
    currency  text NOT NULL,
    balance   minor_units NOT NULL DEFAULT 0,
    UNIQUE (name, currency)
);

-- (kind, ref) is unique: a payment or refund is posted once, whatever is redelivered.
CREATE TABLE journal_entries (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL,
    ref         text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, ref)
);

CREATE TABLE postings (
    entry_id    bigint NOT NULL REFERENCES journal_entries (id),
    account_id  bigint NOT NULL REFERENCES ledger_accounts (id),
    amount      minor_units NOT NULL CHECK (amount <> 0),
    PRIMARY KEY (entry_id, account_id)
);
CREATE INDEX postings_account ON postings (account_id);

-- The webhook outbox: written in the same transaction as the state change it reports.
CREATE TABLE webhook_events (
    id               text PRIMARY KEY,
    merchant_id      text NOT NULL REFERENCES merchants (id),
    type             text NOT NULL,
    url              text NOT NULL,
    payload          bytea NOT NULL,
    status           text NOT NULL DEFAULT 'pending',
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    request_id       text
);
CREATE INDEX webhook_events_due ON webhook_events (next_attempt_at) WHERE status = 'pending';

CREATE TABLE webhook_attempts (
    id           bigserial PRIMARY KEY,
    event_id     text NOT NULL REFERENCES webhook_events (id),
    attempt      integer NOT NULL,
    status_code  integer,
    error        text,
    duration_ms  integer NOT NULL,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_attempts_event ON webhook_attempts (event_id);
