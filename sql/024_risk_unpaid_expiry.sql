-- A payment in review is unpaid and expires like one (domain.states UNPAID): the expiry job's
-- partial index must cover it, or its query stops using the index.
DROP INDEX payments_unpaid_expiry;
CREATE INDEX payments_unpaid_expiry ON payments (expires_at)
    WHERE status IN ('pending', 'in_review', 'processing', 'awaiting_payment');
