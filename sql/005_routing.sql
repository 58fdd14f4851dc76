-- Every attempt to open a payment's order at a channel: the first, and each failover to the
-- next eligible channel after a decline or a missing order (before money moved).

CREATE TABLE payment_attempts (
    payment_id    text NOT NULL REFERENCES payments (id),
    attempt       integer NOT NULL,
    channel       text NOT NULL,
    outcome       text NOT NULL CHECK (outcome IN ('opened', 'declined', 'unavailable')),
    failure_code  text,
    at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (payment_id, attempt)
);
