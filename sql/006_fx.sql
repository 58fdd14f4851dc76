-- A payment charged at its channel in another currency carries the locked quote it was
-- converted at (domain.fx.Conversion): target currency, converted amount, exact rates.
ALTER TABLE payments ADD COLUMN fx jsonb;
