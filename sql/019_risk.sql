-- Risk control (issue 14): block and allow lists, versioned rule sets with one live version,
-- and each payment's decision.

-- A list entry matches a payment's value of its kind (an IP entry may be a CIDR range) until
-- it expires. Values are normalised (infra.risk, domain.risk.lists).
CREATE TABLE risk_list_entries (
    id          text PRIMARY KEY,
    list        text NOT NULL CHECK (list IN ('block', 'allow')),
    kind        text NOT NULL CHECK (kind IN
                    ('ip', 'email', 'domain', 'device', 'card', 'bin', 'country', 'customer')),
    value       text NOT NULL,
    reason      text,
    expires_at  timestamptz,
    actor       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (list, kind, value)
);
CREATE INDEX risk_list_entries_listed ON risk_list_entries (created_at DESC, id DESC);

-- A version is immutable once written: a draft is validated when saved, published by moving
-- the live pointer to it, and rolling back is publishing an earlier one again.
CREATE TABLE risk_rule_versions (
    version       integer PRIMARY KEY,
    rules         jsonb NOT NULL,
    review_at     integer NOT NULL,
    reject_at     integer NOT NULL,
    note          text,
    actor         text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);

-- One row: the live version, and a counter every list change bumps, so a risk process that
-- missed an announcement still notices at its next check.
CREATE TABLE risk_state (
    one            boolean PRIMARY KEY DEFAULT true CHECK (one),
    live_version   integer REFERENCES risk_rule_versions (version),
    lists_version  bigint NOT NULL DEFAULT 0
);
INSERT INTO risk_state DEFAULT VALUES;

-- The decision a payment was judged by (score, outcome, version, fired rules with the values
-- they saw): written once, so a redelivered payment keeps its first decision.
ALTER TABLE payments ADD COLUMN risk jsonb;
