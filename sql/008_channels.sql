-- Channels are data, changed through the admin API or `juhe channels` without a restart.
-- `credentials` is AES-256-GCM sealed (infra/secretbox, the channel code bound as context);
-- `version` rises with every change so each process can tell which copy it holds.

CREATE TABLE channels (
    code                text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_]{1,31}$'),
    adapter             text NOT NULL,
    base_url            text NOT NULL,
    credentials         text NOT NULL,
    timeout_ms          integer NOT NULL DEFAULT 3000 CHECK (timeout_ms BETWEEN 50 AND 120000),
    retries             integer NOT NULL DEFAULT 3 CHECK (retries BETWEEN 1 AND 10),
    methods             text[] NOT NULL DEFAULT '{}',
    currencies          text[] NOT NULL DEFAULT '{}',
    min_amount_minor    bigint NOT NULL DEFAULT 0 CHECK (min_amount_minor >= 0),
    max_amount_minor    bigint CHECK (max_amount_minor IS NULL OR max_amount_minor >= min_amount_minor),
    daily_caps          jsonb NOT NULL DEFAULT '{}',
    fees                jsonb NOT NULL DEFAULT '[]',
    settlement_currency text,
    priority            integer NOT NULL DEFAULT 100,
    weight              integer NOT NULL DEFAULT 1 CHECK (weight >= 0),
    enabled             boolean NOT NULL DEFAULT true,
    version             integer NOT NULL DEFAULT 1,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- A manual switch-over: while it stands, traffic routed to `from_channel` goes to
-- `to_channel` instead, for one merchant or (merchant_id '*') for every merchant.
CREATE TABLE channel_switchovers (
    merchant_id  text NOT NULL,
    from_channel text NOT NULL REFERENCES channels (code),
    to_channel   text NOT NULL REFERENCES channels (code),
    reason       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, from_channel),
    CHECK (from_channel <> to_channel)
);

-- Bumped on every change to either table: one number says whether a process is current.
CREATE TABLE channel_config_version (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version  bigint NOT NULL
);
INSERT INTO channel_config_version VALUES (true, 0);
