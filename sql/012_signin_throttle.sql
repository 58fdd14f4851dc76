-- Sign-ins are no longer locked per account (a stranger could lock anyone out): failures are
-- throttled in Redis per client, per client and account, and per account for unknown clients
-- (domain/signin.py). users.failed_logins stays, to flag a burst of failures.
ALTER TABLE users DROP COLUMN locked_until;
