-- Settlement (issue 13, part A): releases from pending to available, rolling reserves, and
-- statements whose lines are fixed by the journal. Balances themselves are ledger accounts
-- (`<merchant|agent>:<id>:pending|available|reserve|paid_out`, an agent's pending being its
-- `commission` account); nothing here holds money.

-- How an entity is settled beyond its defaults: the agent's cycle (a merchant's own is in
-- merchants.config.settlement, this overrides it), and a merchant's rolling reserve.
CREATE TABLE settlement_terms (
    entity_id     text PRIMARY KEY,
    cycle         text CHECK (cycle ~ '^(T\+[0-7]|daily|weekly|monthly|manual)$'),
    reserve_bps   integer NOT NULL DEFAULT 0 CHECK (reserve_bps BETWEEN 0 AND 10000),
    reserve_days  integer NOT NULL DEFAULT 0 CHECK (reserve_days BETWEEN 0 AND 365),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- One row per release entry: the source entry it released for the entity (once: unique), and
-- the reserve it held until when, and the entry that gave that back.
CREATE TABLE settlement_releases (
    entry_id          bigint PRIMARY KEY REFERENCES journal_entries (id),
    entity_kind       text NOT NULL CHECK (entity_kind IN ('merchant', 'agent')),
    entity_id         text NOT NULL,
    currency          text NOT NULL,
    source_entry_id   bigint NOT NULL REFERENCES journal_entries (id),
    held              minor_units NOT NULL DEFAULT 0 CHECK (held >= 0),
    hold_until        timestamptz,
    hold_released_by  bigint REFERENCES journal_entries (id),
    UNIQUE (entity_id, source_entry_id)
);
CREATE INDEX settlement_releases_held ON settlement_releases (hold_until)
    WHERE held > 0 AND hold_released_by IS NULL;

-- A closed period of one entity in one currency; never updated but for its status.
CREATE TABLE settlement_statements (
    id            text PRIMARY KEY,
    entity_kind   text NOT NULL CHECK (entity_kind IN ('merchant', 'agent')),
    entity_id     text NOT NULL,
    currency      text NOT NULL,
    cycle         text NOT NULL,
    period_start  timestamptz NOT NULL,
    period_end    timestamptz NOT NULL,
    status        text NOT NULL CHECK (status IN ('closed', 'carried', 'paid')),
    gross         minor_units NOT NULL,
    refunds       minor_units NOT NULL,
    fees          minor_units NOT NULL,
    commission    minor_units NOT NULL,
    reserve       minor_units NOT NULL,
    adjustments   minor_units NOT NULL,
    carried       minor_units NOT NULL,
    net           minor_units NOT NULL,
    carried_from  text REFERENCES settlement_statements (id),
    line_count    integer NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (entity_id, currency, period_start)
);
CREATE INDEX settlement_statements_entity ON settlement_statements (entity_id, id DESC);

-- A statement's lines: each journal entry in at most one statement per entity and currency
-- (the carried line of a previous negative balance has no entry of its own).
CREATE TABLE settlement_lines (
    id            bigserial PRIMARY KEY,
    statement_id  text NOT NULL REFERENCES settlement_statements (id),
    entity_id     text NOT NULL,
    currency      text NOT NULL,
    entry_id      bigint REFERENCES journal_entries (id),
    kind          text NOT NULL,
    ref           text NOT NULL,
    at            timestamptz NOT NULL,
    gross         minor_units NOT NULL,
    refunds       minor_units NOT NULL,
    fees          minor_units NOT NULL,
    commission    minor_units NOT NULL,
    reserve       minor_units NOT NULL,
    adjustments   minor_units NOT NULL,
    carried       minor_units NOT NULL,
    net           minor_units NOT NULL,
    payment_id    text,
    merchant_id   text,
    UNIQUE (entity_id, currency, entry_id)
);
CREATE INDEX settlement_lines_statement ON settlement_lines (statement_id, id);
