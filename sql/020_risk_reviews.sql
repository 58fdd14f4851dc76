-- The manual review queue (issue 14): one review per payment sent to review, claimed by one
-- reviewer at a time, decided once (approve: routed as if approved; reject: `rejected`), or
-- by the configured default once `due_at` passes.
CREATE TABLE risk_reviews (
    payment_id   text PRIMARY KEY REFERENCES payments (id),
    merchant_id  text NOT NULL,
    status       text NOT NULL CHECK (status IN ('open', 'claimed', 'approved', 'rejected')),
    score        integer NOT NULL,
    version      integer,
    claimed_by   text,
    claimed_at   timestamptz,
    decided_by   text,
    decided_at   timestamptz,
    reason       text,
    by_default   boolean NOT NULL DEFAULT false,  -- decided by the default at its due time
    due_at       timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX risk_reviews_due ON risk_reviews (due_at) WHERE status IN ('open', 'claimed');
CREATE INDEX risk_reviews_listed ON risk_reviews (created_at DESC, payment_id DESC);
