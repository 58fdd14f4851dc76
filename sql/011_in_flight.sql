-- Re-drive looks for payments and refunds still in flight, oldest first, on every tick: a
-- partial index keeps that look cheap however many final rows the tables hold.

CREATE INDEX payments_in_flight ON payments (updated_at) WHERE status IN ('pending', 'processing');
CREATE INDEX refunds_in_flight ON refunds (updated_at) WHERE status IN ('pending', 'processing');
