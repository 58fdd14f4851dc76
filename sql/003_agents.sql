-- Agents (resellers) in a tree of any depth, merchants placed under them, and versioned
-- commission policies. The tree is stored as an ltree path of agent ids, so a subtree and an
-- ancestor chain are each one indexed query, and moving a subtree is one UPDATE.

CREATE EXTENSION IF NOT EXISTS ltree;

CREATE TABLE agents (
    id          text PRIMARY KEY CHECK (id ~ '^[a-z0-9_]+$'),
    name        text NOT NULL,
    email       text NOT NULL,
    parent_id   text REFERENCES agents (id),
    path        ltree NOT NULL UNIQUE,
    status      text NOT NULL DEFAULT 'submitted'
                CHECK (status IN ('submitted', 'under_review', 'approved', 'rejected',
                                  'active', 'suspended')),
    -- what the parent lets this agent do with its own children
    grants      text[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((parent_id IS NULL) = (nlevel(path) = 1))
);
CREATE INDEX agents_path ON agents USING gist (path);
CREATE INDEX agents_parent ON agents (parent_id);

ALTER TABLE merchants ADD COLUMN agent_id text REFERENCES agents (id);
CREATE INDEX merchants_agent ON merchants (agent_id);

-- One row per change: a payment uses the newest version in force when it succeeded.
-- `rate` is what the agent's parent charges it (for a top agent, the platform's price).
CREATE TABLE commission_policies (
    agent_id        text NOT NULL REFERENCES agents (id),
    method          text NOT NULL DEFAULT '*',  -- a payment method or '*'
    currency        text NOT NULL,  -- or '*'
    mode            text NOT NULL CHECK (mode IN ('markup', 'percentage', 'fixed')),
    rate_bps        integer NOT NULL CHECK (rate_bps BETWEEN 0 AND 10000),
    rate_fixed      minor_units NOT NULL DEFAULT 0 CHECK (rate_fixed >= 0),
    share_bps       integer NOT NULL DEFAULT 0 CHECK (share_bps BETWEEN 0 AND 10000),
    share_fixed     minor_units NOT NULL DEFAULT 0 CHECK (share_fixed >= 0),
    effective_from  timestamptz NOT NULL,
    version         integer NOT NULL,
    set_by          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, method, currency, version)
);
CREATE INDEX commission_policies_in_force
    ON commission_policies (agent_id, method, currency, effective_from DESC);
CREATE INDEX commission_policies_effective ON commission_policies (effective_from);

-- Each payment's commissions, one row per agent, written with its journal entry: what the
-- commissions endpoint reads (the ledger postings remain the money's record).
CREATE TABLE commissions (
    payment_id   text NOT NULL REFERENCES payments (id),
    agent_id     text NOT NULL REFERENCES agents (id),
    merchant_id  text NOT NULL,
    currency     text NOT NULL,
    amount       minor_units NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('payment', 'refund')),
    ref          text NOT NULL,  -- the payment or refund id
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ref, agent_id)
);
CREATE INDEX commissions_agent ON commissions (agent_id, created_at DESC);

-- Bumped with every tree or policy change, in the same transaction: processes that cache
-- chains and policies compare it to know when to drop their copy.
CREATE TABLE agents_version (version bigint NOT NULL);
INSERT INTO agents_version VALUES (0);
