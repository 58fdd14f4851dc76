-- What routing needs to route a payment again after a lost message: the customer's country
-- (rules may match on it) and, once a channel has it, the channels it may still fail over to
-- (comma-separated codes, best first).

ALTER TABLE payments ADD COLUMN customer_country text;
ALTER TABLE payments ADD COLUMN fallbacks text NOT NULL DEFAULT '';
