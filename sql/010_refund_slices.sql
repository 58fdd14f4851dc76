-- Which slice of its payment a refund returns: (reserved_before, reserved_before + amount], set
-- when the amount is reserved. A converted payment is refunded at the channel by the difference
-- of the slice's ends scaled to the charged amount, so a series of partial refunds returns the
-- charged amount exactly; NULL for refunds reserved before this column existed.

ALTER TABLE refunds ADD COLUMN reserved_before numeric;
